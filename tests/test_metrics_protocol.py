"""SharedBatch: shared protocol work gives the standalone metrics' values with the
documented number of model passes (a counting wrapper around the model), and the
evaluation engine adds nothing beyond the methods' own passes and that table."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from helpers import small_cnn_with_statistics
from torch import nn

import cleargrad as cg
from cleargrad.evaluation import engine
from cleargrad.evaluation.console import UI
from cleargrad.evaluation.engine import EvalPlan, run_evaluation
from cleargrad.evaluation.explainers import build_explainer, load_registries
from cleargrad.evaluation.images import ImageRecord, ImageSet, Preprocess
from cleargrad.evaluation.metric_runner import metric_runner
from cleargrad.metrics import SharedBatch
from cleargrad.models import SmallCNN
from cleargrad.store import ResultStore

MEAN, STD = (0.3,), (0.4,)


class Counting(nn.Module):
    """Counts the images sent through the wrapped model."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        return self.inner(x)


def _setup(n: int = 3, size: int = 12):
    torch.manual_seed(0)
    model = Counting(SmallCNN(in_channels=1, num_classes=5, width=4)).eval()
    x = torch.randn(n, 1, size, size)
    maps = {
        "saliency": cg.explain(model, x, method="saliency", target=[0, 1, 2][:n]),
        "gradcam": cg.explain(model, x, method="gradcam", target=[0, 1, 2][:n]),
    }
    maps["zero"] = torch.zeros_like(maps["saliency"])
    maps["zero"][1:] = maps["saliency"][1:]  # image 0: an all-zero map (NaN, no curve pass)
    return model, x, maps


def _gen(seed: int = 5) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shared_values_equal_the_standalone_metrics():
    model, x, maps = _setup()
    shared = SharedBatch(model, x, mean=MEAN, std=STD)
    t = shared.targets([4, 0, 2])
    opts = {"infidelity": {"n_perturb": 7}, "insertion": {"step": 10}, "deletion": {"step": 10, "substrate": "blur"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in ("insertion", "deletion", "average_drop", "average_gain", "average_increase", "infidelity",
                     "sparseness"):
            o = opts.get(name, {})
            got = shared.score(name, maps, t, o, _gen())
            assert got is not None and set(got) == set(maps)
            fn = cg.metrics.get_metric(name).fn
            for m, a in maps.items():
                if name == "sparseness":
                    want = fn(a, **o)
                elif name == "infidelity":  # the same draws for every method: a generator in the same state
                    want = fn(model, x, a, t, generator=_gen(), **o)
                elif name.startswith("average"):
                    want = fn(model, x, a, t, mean=MEAN, std=STD, **o)
                else:
                    want = fn(model, x, a, t, **o)
                torch.testing.assert_close(got[m], want, equal_nan=True, msg=f"{name} {m}")
    assert shared.score("insertion", maps, t, {"return_curves": True}) is None  # not shared: scored alone
    assert shared.score("max_sensitivity", maps, t) is None


def test_shared_pass_counts_equal_the_documented_numbers():
    n, size, step, n_perturb = 3, 12, 10, 7
    model, x, maps = _setup(n, size)
    inner = math.ceil(size * size / step) - 1  # curve points other than the clean image and the canvas
    model.images = 0
    shared = SharedBatch(model, x, mean=MEAN, std=STD)
    assert model.images == n  # the clean pass: once per batch
    t = shared.targets(None)
    assert model.images == n  # target resolution reads the clean pass
    m_full = 2  # saliency, gradcam; "zero" has one all-zero map (image 0: no curve)
    expected = {
        "insertion": (m_full * n + (n - 1)) * inner + n,  # + the blurred canvas, once for every method
        "deletion": (m_full * n + (n - 1)) * inner + n,  # + the zero canvas
        "average_drop": 3 * n,  # one masked pass per method feeds AD, AG and AI
        "average_gain": 0,
        "average_increase": 0,
        "infidelity": n * n_perturb,  # once for every method
        "sparseness": 0,
    }
    opts = {"infidelity": {"n_perturb": n_perturb}, "insertion": {"step": step}, "deletion": {"step": step}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, count in expected.items():
            before = model.images
            shared.score(name, maps, t, opts.get(name), _gen())
            assert model.images - before == count, name


def _plan(model, x, methods, metrics, store, settings, **kw):
    recs = [ImageRecord(f"img{i}", f"mem/{i}", None, None) for i in range(x.shape[0])]
    data = ImageSet(recs, Preprocess(x.shape[-1], True, MEAN, STD), tensors=x, description="mem")
    explainers = [build_explainer(model, m, options={"integrated_gradients": {"n_steps": 4}}) for m in methods]
    runners = [metric_runner(m, o) for m, o in metrics]
    return EvalPlan(
        model=model, images=data, explainers=explainers, metrics=runners, store=store, settings=settings,
        preprocess=data.preprocess, batch_size=4, gallery=0, **kw,
    )


@pytest.mark.parametrize("fold", [False, True])
def test_engine_protocol_costs_the_methods_plus_the_documented_metric_passes(tmp_path, monkeypatch, fold):
    """With batch-norm folding the metrics' passes run on the folded copy (through the
    engine's scorer wrapper): counted there, the protocol costs the same passes."""
    load_registries()
    scorer_images = []

    def counted(m, on=True, _fold=engine.folded_forward):
        f = _fold(m, on)
        if f is not m:
            f.register_forward_pre_hook(lambda _m, a: scorer_images.append(a[0].shape[0]))
        return f

    monkeypatch.setattr(engine, "folded_forward", counted)
    n, size, step, n_perturb = 6, 12, 16, 5
    torch.manual_seed(0)
    model = Counting(SmallCNN(in_channels=1, num_classes=5, width=4)).eval()
    x = torch.randn(n, 1, size, size)
    methods = ["saliency", "integrated_gradients", "gradcam"]
    metrics = [
        ("insertion", {"step": step}), ("deletion", {"step": step}), ("average_drop", None),
        ("average_gain", None), ("average_increase", None), ("infidelity", {"n_perturb": n_perturb}),
        ("sparseness", None),
    ]
    with ResultStore(tmp_path / "r.sqlite") as st:
        h = st.record_run({"x": 1}, {})
        plan = _plan(model, x, methods, metrics, st, h, fold_batchnorm=fold)
        # each method alone (fresh instances: a method caches its class count), batch by batch as the engine calls it
        method_cost = 0
        for e in _plan(model, x, methods, metrics, st, h).explainers:
            for sl in (slice(0, 4), slice(4, 6)):
                before = model.images
                e.fn(x[sl], model(x[sl]).argmax(1), torch.Generator().manual_seed(0))
                method_cost += model.images - before - (sl.stop - sl.start)
        model.images = 0
        written = run_evaluation(plan, UI(quiet=True))
        assert written == n * len(methods) * len(metrics)
    inner = math.ceil(size * size / step) - 1
    m = len(methods)
    # clean + 2 canvases per batch; ins+del inner points and AD/AG/AI per method; infidelity once
    metric_cost = 3 * n + m * (2 * n * inner + n) + n * n_perturb
    assert model.images + sum(scorer_images) == method_cost + metric_cost
    assert (sum(scorer_images) == metric_cost) if fold else not scorer_images


def test_engine_resumes_infidelity_rows_with_the_same_values(tmp_path):
    """Shared draws: a value does not depend on which other methods were scored with it."""
    load_registries()
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=5, width=4).eval()
    x = torch.randn(4, 1, 12, 12)
    metrics = [("infidelity", {"n_perturb": 5})]
    values = {}
    for methods in (["saliency", "gradcam"], ["gradcam"]):
        with ResultStore(tmp_path / f"{len(methods)}.sqlite") as st:
            h = st.record_run({"x": 1}, {})
            run_evaluation(_plan(model, x, methods, metrics, st, h), UI(quiet=True))
            values[len(methods)] = {(r.image_id, r.method): r.value for r in st.results(h) if r.method == "gradcam"}
    assert len(values[1]) == 4 and values[2] == values[1]


def test_engine_rows_with_folded_batch_norms_equal_unfolded_ones(tmp_path):
    """Folding changes only the rounding of the metrics' passes: every stored value agrees."""
    load_registries()
    model = small_cnn_with_statistics()
    x = torch.randn(5, 1, 12, 12)
    methods = ["saliency", "gradcam"]
    metrics = [("insertion", {"step": 16}), ("deletion", {"step": 16}), ("average_drop", None),
               ("infidelity", {"n_perturb": 4}), ("sparseness", None)]
    rows = {}
    for fold in (False, True):
        with ResultStore(tmp_path / f"{fold}.sqlite") as st:
            h = st.record_run({"x": 1}, {})
            run_evaluation(_plan(model, x, methods, metrics, st, h, fold_batchnorm=fold), UI(quiet=True))
            rows[fold] = {(r.image_id, r.method, r.metric): r.value for r in st.results(h)}
    assert rows[True].keys() == rows[False].keys() and len(rows[True]) == 5 * 2 * 5
    for k, v in rows[False].items():
        got = rows[True][k]
        assert (v is None) == (got is None), k
        if v is not None and not math.isnan(v):
            # average drop is 100 (y - o) / y: a float-rounding change of 1e-6 in a probability
            # moves it by up to 1e-4 points when y and o nearly cancel
            abs_tol = 1e-4 if k[2] == "average_drop" else 1e-6
            assert math.isclose(got, v, rel_tol=1e-4, abs_tol=abs_tol), (k, got, v)
    assert any(rows[True][k] != v for k, v in rows[False].items() if v is not None)  # really another path


@pytest.mark.parametrize("compile_, fold", [(False, True), (False, False), ("eager", True)])
def test_engine_scorer_is_folded_unless_compiled_or_turned_off(tmp_path, monkeypatch, compile_, fold):
    """Compiled runs compile the model itself: dynamo must not trace the folding wrapper."""
    from cleargrad.core import CompiledForward, FoldedForward

    load_registries()
    model = small_cnn_with_statistics()
    scorers = []
    real = engine.SharedBatch

    def spy(*a, **kw):
        scorers.append(kw["scorer"])
        return real(*a, **kw)

    monkeypatch.setattr(engine, "SharedBatch", spy)
    with ResultStore(tmp_path / "r.sqlite") as st:
        h = st.record_run({"x": 1}, {})
        plan = _plan(model, torch.randn(2, 1, 12, 12), ["saliency"], [("deletion", {"step": 48})], st, h,
                     compile=compile_, fold_batchnorm=fold)
        assert run_evaluation(plan, UI(quiet=True)) == 2
    (scorer,) = scorers
    if compile_:
        assert isinstance(scorer, CompiledForward) and scorer.model is model
    elif fold:
        assert isinstance(scorer, FoldedForward) and scorer.model is model and scorer.folded
    else:
        assert scorer is model
