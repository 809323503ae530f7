"""A/B of two code versions on one protocol batch: ours alone, resnet18 (random init) at 224².

    PYTHONPATH=/path/to/tree-A/src python benchmarks/protocol_ab.py A
    PYTHONPATH=/path/to/tree-B/src python benchmarks/protocol_ab.py B     # alternate, a fresh process each

The engine with the 5 methods x 7 metrics of evaluate_pipeline.py on one batch of 4 images,
one thread; prints the label, the seconds and which cleargrad was imported. For checking that a
change does not slow the 224² protocol (evaluate_pipeline.py needs about 20 minutes there).
The engine is built without options newer than both trees (fold_batchnorm: its default).
"""
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import evaluate_pipeline as ep  # noqa: E402

import cleargrad  # noqa: E402
from cleargrad.evaluation import EvaluationSettings  # noqa: E402
from cleargrad.evaluation.engine import EvalPlan  # noqa: E402
from cleargrad.evaluation.explainers import build_explainer, load_registries  # noqa: E402
from cleargrad.evaluation.metric_runner import metric_runner  # noqa: E402
from cleargrad.store import ResultStore  # noqa: E402

warnings.simplefilter("ignore")
torch.set_num_threads(1)
model, data, refs, layer, cfg = ep.resnet_setup(4)
load_registries()
opts = {"integrated_gradients": {"n_steps": 32}, "expected_gradcam": {"n_samples": 16}}
explainers = [build_explainer(model, m, options=opts, references=refs) for m in ep.METHODS]
mopts = {"insertion": {"step": cfg["step"], "substrate": "blur"}, "deletion": {"step": cfg["step"]},
         "infidelity": {"n_perturb": cfg["n_perturb"]}, "average_drop": {"space": "normalized"},
         "average_gain": {"space": "normalized"}, "average_increase": {"space": "normalized"}}
runners = [metric_runner(m, mopts.get(m)) for m in ep.METRICS]
st = ResultStore(tempfile.mktemp(suffix=".db"))
h = st.record_run({"b": 1}, {})
run = EvaluationSettings(model="resnet18", dataset=data.description, methods=",".join(ep.METHODS),
                         metrics=",".join(ep.METRICS), store=st.path, batch_size=4, gallery=0)
plan = EvalPlan(model=model, images=data, explainers=explainers, metrics=runners, store=st, settings=h,
                preprocess=data.preprocess, run=run)
t = time.perf_counter()
ep.run_ours(plan, [0, 1, 2, 3])
ru = resource.getrusage(resource.RUSAGE_SELF)
print(sys.argv[1] if len(sys.argv) > 1 else "run", f"{time.perf_counter() - t:.1f} s", cleargrad.__file__,
      f"peak RSS {ru.ru_maxrss / 2**20:.2f} GiB, minor page faults {ru.ru_minflt}", flush=True)
