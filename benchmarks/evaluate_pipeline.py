"""A whole evaluation protocol, two ways, in one sitting on the same images.

    python benchmarks/evaluate_pipeline.py                     # both parts (Fashion-MNIST 64, resnet18 224² 16)
    python benchmarks/evaluate_pipeline.py --part fmnist --compile
    python benchmarks/evaluate_pipeline.py --part memory       # peak memory of ours at 224², per batch setting
    python benchmarks/evaluate_pipeline.py --quick             # tiny sizes, checks the script end to end
    python benchmarks/evaluate_pipeline.py --part resnet --peer-process --host-reuse   # as the command runs

Protocol: methods {saliency, integrated_gradients (32 steps), gradcam, scorecam,
expected_gradcam (16 samples)} x metrics {insertion, deletion, average_drop,
average_gain, average_increase, infidelity, sparseness}, targets = the predicted class.

- **ours**: cleargrad's evaluation engine (``cleargrad.evaluation.engine.run_evaluation``, what
  ``cleargrad evaluate`` runs), results written to a SQLite store as the command does.
- **peer**: the script a careful user writes with the peer libraries: Captum
  ``Saliency``/``IntegratedGradients``, pytorch-grad-cam ``GradCAM``/``ScoreCAM``
  (batch_size raised to 64), an Expected Grad-CAM written with Captum's
  ``LayerGradientShap`` (same number of samples; a cost-equivalent stand-in, not the same
  map: no peer has the method), Captum ``infidelity`` (same draws count, Gaussian sigma
  0.1, normalised), Quantus ``Sparseness``, pytorch-grad-cam's
  ``CamMultImageConfidenceChange`` for the masked confidence of AD/AG/AI (one clean pass
  per batch computed once by the script), and insertion/deletion written by hand
  (batched: every step of an image in chunks of 64 images; no peer library scores an
  arbitrary map with insertion).

Both use the same settings: ``step`` pixels per insertion/deletion step (Fashion-MNIST:
28 = RISE's default of one row; 224²: 8 rows = 1792, the interpretable-gradient
protocol, so that the run fits in a loaded session), zero substrate for deletion, blur
(11, 5) for insertion, ``n_perturb`` infidelity draws (50 at 28², 10 at 224²), masks in
the normalised space (as pytorch-grad-cam).

Timing: batches of images alternate ours / peer (A B, B A, ...); each pipeline's time is
the sum over batches; images/s = images / time. **Pass bound**: the images ours sends
through the model, counted by a forward pre-hook and split into forward-only and
forward-with-gradient passes, x the measured per-image time of one batched pass of the model (the
faster input layout; median of 7): what the protocol costs if nothing but the model's own
passes took time. Ours runs the metrics' and Score-CAM's masked passes on a copy with batch
norms folded (faster than the model's passes), so it can come out below the bound. **Floor**:
the same passes if every convolution and linear layer ran as fast as it does alone (its own
input shape, channels-last, median of 5, measured in a fresh process with the host
allocator's reuse mode: no page faults) and every other operation were free; the peer's time
over it is the most any pipeline sending ours' passes could gain on this machine.

Options: ``--fold-ablation`` adds ours with ``fold_batchnorm=False`` (interleaved, ratio
paired per batch); ``--peer-channels-last`` gives the peer a copy of the model converted
with ``.to(memory_format=torch.channels_last)``, the one-line layout change a user who
knows it can make. ``--host-reuse`` turns on cleargrad's host-allocator reuse mode (what the
``cleargrad`` command runs with) in this process; ``--peer-process`` runs the peer in a child
process of its own with glibc's defaults (its compute time per batch is reported back), so
that ``--peer-process --host-reuse`` compares ours as the command runs against a user's script.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import paired_ratio  # noqa: E402

METHODS = ["saliency", "integrated_gradients", "gradcam", "scorecam", "expected_gradcam"]
METRICS = ["insertion", "deletion", "average_drop", "average_gain", "average_increase", "infidelity", "sparseness"]
CHUNK = 64


# --------------------------------------------------------------------------- setup
def fmnist_setup(n: int):
    from cleargrad.evaluation.images import fashion_mnist_set
    from cleargrad.models import small_cnn_fashion_mnist

    model = small_cnn_fashion_mnist(device="cpu", quiet=True).eval()
    data = fashion_mnist_set(n)
    refs = fashion_mnist_set(16, split="train").tensors
    layer = model.features[-1]
    return model, data, refs, layer, {"step": 28, "n_perturb": 50}


def resnet_setup(n: int, size: int = 224):
    import torchvision

    from cleargrad.evaluation.images import ImageRecord, ImageSet, Preprocess

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    g = torch.Generator().manual_seed(1)
    # smooth random "photos": low-resolution noise upsampled, ImageNet-normalised
    x = F.interpolate(torch.rand(n, 3, 14, 14, generator=g), size=size, mode="bilinear", align_corners=False)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    recs = [ImageRecord(f"img{i:03d}", f"mem/{i}", None, None) for i in range(n)]
    data = ImageSet(recs, Preprocess(size, False, mean, std), tensors=x, description="random 224")
    refs = x[: min(8, n)].clone()
    return model, data, refs, model.layer4[-1], {"step": 8 * size, "n_perturb": 10}


# --------------------------------------------------------------------------- ours
def ours_plan(model, data, refs, cfg, store, compile_=False, fold=True):
    from cleargrad.evaluation import EvaluationSettings
    from cleargrad.evaluation.engine import EvalPlan
    from cleargrad.evaluation.explainers import build_explainer, load_registries
    from cleargrad.evaluation.metric_runner import metric_runner

    load_registries()
    opts = {"integrated_gradients": {"n_steps": 32}, "expected_gradcam": {"n_samples": 16}}
    explainers = [build_explainer(model, m, options=opts, references=refs) for m in METHODS]
    mopts = {
        "insertion": {"step": cfg["step"], "substrate": "blur"},  # as the peer (the 28² default is zero)
        "deletion": {"step": cfg["step"]},
        "infidelity": {"n_perturb": cfg["n_perturb"]},
        "average_drop": {"space": "normalized"},
        "average_gain": {"space": "normalized"},
        "average_increase": {"space": "normalized"},
    }
    runners = [metric_runner(m, mopts.get(m)) for m in METRICS]
    h = store.record_run({"benchmark": "evaluate_pipeline", "compile": str(compile_), "fold": fold}, {})
    run = EvaluationSettings(
        model=type(model).__name__, dataset=data.description, methods=",".join(METHODS), metrics=",".join(METRICS),
        store=store.path, batch_size=len(data), gallery=0, compile=compile_, fold_batchnorm=fold,
    )
    return EvalPlan(
        model=model, images=data, explainers=explainers, metrics=runners, store=store, settings=h,
        preprocess=data.preprocess, run=run,
    )


def run_ours(plan, idx):
    from cleargrad.evaluation.console import UI
    from cleargrad.evaluation.images import ImageSet

    sub = ImageSet([plan.images.records[i] for i in idx], plan.images.preprocess,
                   tensors=plan.images.tensors[idx], description="batch")
    from cleargrad.evaluation.engine import run_evaluation

    return run_evaluation(plan.replace(images=sub, batch_size=len(idx)), UI(quiet=True))


# --------------------------------------------------------------------------- peer
def _unit(m: torch.Tensor) -> torch.Tensor:
    m = m.clamp(min=0)
    peak = m.flatten(1).amax(1).view(-1, 1, 1, 1)
    return torch.where(peak > 0, m / peak.clamp(min=1e-30), m)


def _blur(x):
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(x, kernel_size=11, sigma=5.0)


def peer_curve(model, x, m2d, t, start, finish, step):
    """Hand-written insertion/deletion AUC of one batch (prob of class t)."""
    n, _, h, w = x.shape
    n_steps = math.ceil(h * w / step)
    aucs = []
    for i in range(n):
        order = m2d[i].flatten().argsort(descending=True)
        probs = []
        imgs = []
        for k in range(n_steps + 1):
            mask = torch.zeros(h * w, dtype=torch.bool)
            mask[order[: k * step]] = True
            mask = mask.view(1, h, w)
            imgs.append(torch.where(mask, finish[i], start[i]))
            if len(imgs) == CHUNK or k == n_steps:
                with torch.no_grad():
                    probs.append(model(torch.stack(imgs)).softmax(1)[:, t[i]])
                imgs = []
        p = torch.cat(probs)
        aucs.append(((p.sum() - p[0] / 2 - p[-1] / 2) / n_steps).item())
    return torch.tensor(aucs)


def peer_pipeline(model, layer, refs, cfg):
    import quantus
    from captum.attr import IntegratedGradients, LayerGradientShap, Saliency
    from captum.metrics import infidelity
    from pytorch_grad_cam import GradCAM, ScoreCAM
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

    def egc(x, t):
        lgs = LayerGradientShap(model, layer)
        g = torch.Generator().manual_seed(0)
        base = refs[torch.randint(0, len(refs), (16,), generator=g)]
        attr = torch.cat([lgs.attribute(x[i : i + 1], baselines=base, n_samples=16, stdevs=0.0, target=int(t[i]))
                          for i in range(len(x))])
        w = attr.mean(dim=(2, 3), keepdim=True)
        with torch.no_grad():
            acts = []
            hook = layer.register_forward_hook(lambda mod, i, o: acts.append(o))
            model(x)
            hook.remove()
        cam = F.relu((w * acts[0]).sum(1, keepdim=True))
        return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def cam_method(cls, x, t, **kw):
        with cls(model=model, target_layers=[layer]) as cam:
            for k, v in kw.items():
                setattr(cam, k, v)
            out = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])
        return torch.from_numpy(out).unsqueeze(1)

    def run(x: torch.Tensor) -> dict:
        with torch.no_grad():
            t = model(x).argmax(1)  # target resolution
        maps = {
            "saliency": Saliency(model).attribute(x, target=t, abs=True),
            "integrated_gradients": IntegratedGradients(model).attribute(
                x, baselines=0.0, target=t, n_steps=32, internal_batch_size=CHUNK
            ),
            "gradcam": cam_method(GradCAM, x, t),
            "scorecam": cam_method(ScoreCAM, x, t, batch_size=CHUNK),
            "expected_gradcam": egc(x, t),
        }
        with torch.no_grad():
            y = model(x).softmax(1).gather(1, t[:, None])[:, 0]
        out = {}
        for name, a in maps.items():
            a = a.detach()
            m2d = a.sum(1, keepdim=True).abs()
            res = {}
            res["insertion"] = peer_curve(model, x, m2d, t, _blur(x), x, cfg["step"])
            res["deletion"] = peer_curve(model, x, m2d, t, x, torch.zeros_like(x), cfg["step"])
            u = _unit(m2d)[:, 0].numpy()
            o = torch.from_numpy(
                CamMultImageConfidenceChange()(
                    x, u, [ClassifierOutputSoftmaxTarget(int(c)) for c in t], model, return_diff=False
                )
            ).reshape(-1)
            res["average_drop"] = 100 * (y - o).clamp(min=0) / y
            res["average_gain"] = 100 * (o - y).clamp(min=0) / (1 - y)
            res["average_increase"] = 100 * (o > y).float()
            phi = a if a.shape[1] == x.shape[1] else a.expand_as(x)

            def perturb(inputs):
                noise = torch.randn_like(inputs) * 0.1
                return noise, inputs - noise

            res["infidelity"] = infidelity(
                model, perturb, x, phi, target=t, n_perturb_samples=cfg["n_perturb"],
                max_examples_per_batch=CHUNK, normalize=True,
            )
            try:
                res["sparseness"] = torch.tensor(
                    quantus.Sparseness(disable_warnings=True, display_progressbar=False)(
                        model=None, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=m2d.numpy(), channel_first=True
                    )
                )
            except AssertionError:  # Quantus refuses a batch whose maps are all zero (a random net's CAM can be)
                res["sparseness"] = torch.full((x.shape[0],), float("nan"))
            out[name] = res
        return out

    return run


# --------------------------------------------------------------------------- bound
def stored_values(store, settings) -> dict:
    """``{(image_id, method, metric): value}`` of one run in a result store."""
    return {(r.image_id, r.method, r.metric): r.value for r in store.results(settings)}


def rel_change(value, ref) -> float:
    """|value - ref| relative to |ref| (at least 1e-6); a missing value counts as 0."""
    return abs((value or 0) - (ref or 0)) / max(1e-6, abs(ref or 0))


def max_rel_change(values: dict, ref: dict) -> float:
    """The largest :func:`rel_change` of ``values`` from ``ref`` over ``ref``'s keys."""
    return max((rel_change(values[k], v) for k, v in ref.items()), default=float("nan"))


class PassCounter:
    """Images forwarded through ``model`` or a folded copy of it, with and without autograd.

    A global forward pre-hook: a hook on the model itself would make it run unfolded
    (``cleargrad.core.FoldedForward`` runs a hooked model as it is). Folding wrappers made during
    the run are registered with :meth:`watch`; their copies' passes count, their probes do not."""

    def __init__(self, model):
        from torch.nn.modules.module import register_module_forward_pre_hook

        self.fwd = 0
        self.grad = 0
        self.model = model
        self.wrappers: list = []
        self.handles = [register_module_forward_pre_hook(self)]

    def watch(self, wrapper) -> None:
        self.wrappers.append(wrapper)

    def __call__(self, module, args):
        if type(module) is not type(self.model):  # fast exit for every inner module
            return
        if module is not self.model and not any(module is w._copy for w in self.wrappers):
            return
        n = args[0].shape[0]
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            self.grad += n
        else:
            self.fwd += n

    def close(self):
        for h in self.handles:
            h.remove()


def per_image(model, x, backward: bool, repeats: int = 7) -> float:
    from cleargrad.runtime.layout import channels_last

    def once(cl):
        xl = channels_last(x) if cl else x  # one channel too (a plain .contiguous(channels_last) is a no-op there)
        if backward:
            xi = xl.detach().requires_grad_(True)
            torch.autograd.grad(model(xi)[:, 0].sum(), xi)
        else:
            with torch.inference_mode():
                model(xl)

    best = math.inf
    for cl in (False, True):
        once(cl)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            once(cl)
            ts.append(time.perf_counter() - t0)
        best = min(best, statistics.median(ts))
    return best / x.shape[0]


def layer_floor(model, x, repeats: int = 5) -> tuple[float, float]:
    """A generous floor per image: (forward, forward + input gradient) if every convolution and
    linear layer of ``model`` ran as fast as it does alone (channels-last, its own input shape
    at ``x``'s batch, median of ``repeats``) and every other operation were free."""
    from cleargrad.runtime.layout import channels_last

    shapes = []
    handles = [m.register_forward_hook(lambda mod, i, o: shapes.append((mod, i[0].shape)))
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        model(channels_last(x))
    for h in handles:
        h.remove()

    def timed(fn):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    fwd = grad = 0.0
    for mod, shape in shapes:
        xi = torch.randn(shape)
        xi = channels_last(xi) if xi.dim() == 4 else xi
        layer = copy.deepcopy(mod).requires_grad_(False)

        def forward(layer=layer, xi=xi):
            with torch.inference_mode():
                layer(xi)

        def backward(layer=layer, xi=xi):
            xg = xi.detach().requires_grad_(True)
            torch.autograd.grad(layer(xg).sum(), xg)

        fwd += timed(forward)
        grad += timed(backward)
    return fwd / x.shape[0], grad / x.shape[0]


# --------------------------------------------------------------------------- parts
def tagged_json(stdout: str, tag: str) -> dict | None:
    """The JSON after ``tag`` on the last line of a child's output that starts with it."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(tag + " ")]
    return json.loads(lines[-1][len(tag) + 1:]) if lines else None


def floor_batch(data) -> torch.Tensor:
    n = len(data)
    return data.tensors[: min(CHUNK, n)].repeat(max(1, CHUNK // n + 1), 1, 1, 1)[:CHUNK]


def floor_in_child(floor_args: list[str]) -> tuple[float, float]:
    """:func:`layer_floor` measured in a fresh process with the host allocator's reuse mode (the
    most generous setting: no page faults for the layers' outputs), so that this process's
    allocator settings stay as they were for the pipelines."""
    res = subprocess.run([sys.executable, __file__, "--part", "floorchild", *floor_args], capture_output=True,
                         text=True, check=True)
    d = tagged_json(res.stdout, "FLOOR")
    return d["forward"], d["gradient"]


def floorchild(args) -> None:
    from cleargrad.runtime.hostmem import set_host_memory_reuse

    set_host_memory_reuse(True)
    setup = fmnist_setup(args.images) if args.setup == "fmnist" else resnet_setup(args.images, args.size)
    ff, fg = layer_floor(setup[0], floor_batch(setup[1]))
    print("FLOOR " + json.dumps({"forward": ff, "gradient": fg}))


class PeerProcess:
    """The peer pipeline in a child process of its own, with glibc's allocator defaults (what a
    user's script gets); it reports each batch's compute time, pass counts and values."""

    def __init__(self, setup_args: list[str]):
        env = {k: v for k, v in os.environ.items() if k != "CLEARGRAD_HOST_REUSE"}
        self.proc = subprocess.Popen([sys.executable, __file__, "--part", "peerchild", *setup_args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._read()

    def _read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the peer's process ended (exit code {self.proc.wait()})")
            if line.startswith("PEER "):
                return json.loads(line[5:])

    def run(self, idx: list[int]) -> dict:
        self.proc.stdin.write(",".join(map(str, idx)) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait()


def peerchild(args) -> None:
    model, data, refs, layer, cfg = (fmnist_setup(args.images) if args.setup == "fmnist"
                                     else resnet_setup(args.images, args.size))
    peer = peer_pipeline(model, layer, refs, cfg)
    counter = PassCounter(model)
    print("PEER " + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        idx = [int(v) for v in line.split(",")]
        f0, g0 = counter.fwd, counter.grad
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            res = peer(data.tensors[idx])
            dt = time.perf_counter() - t0
        vals = {f"{m}|{k}": torch.as_tensor(v).reshape(-1).tolist() for m, r in res.items() for k, v in r.items()}
        print("PEER " + json.dumps({"time": dt, "fwd": counter.fwd - f0, "grad": counter.grad - g0, "vals": vals}),
              flush=True)


def part(name, model, data, refs, layer, cfg, batch, compile_, out_lines, peer_channels_last=False,
         fold_ablation=False, floor_args=(), peer_process=None):
    from cleargrad.store import ResultStore

    n = len(data)
    batches = [list(range(i, min(i + batch, n))) for i in range(0, n, batch)]
    tmp = Path(tempfile.mkdtemp(prefix="evalpipe-"))
    peer_model, peer_layer = model, layer
    if peer_channels_last:  # the one-line layout change a user who knows it can make: a converted copy
        layer_name = next(k for k, v in model.named_modules() if v is layer)
        peer_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        peer_layer = peer_model.get_submodule(layer_name)
    peer_child = PeerProcess(peer_process) if peer_process else None
    peer = peer_pipeline(peer_model, peer_layer, refs, cfg) if peer_child is None else None
    times = {"ours": [], "peer": []}
    if compile_:
        times["ours compiled"] = []
    if fold_ablation:
        times["ours unfolded"] = []
    counter = PassCounter(model)
    import cleargrad.cam.score as score
    import cleargrad.evaluation.engine as engine

    def counted_fold(m, on=True):  # the metrics' and Score-CAM's masked passes may run on a folded copy
        f = fold(m, on)
        if f is not m:
            counter.watch(f)
        return f

    fold, engine.folded_forward, score.folded_forward = engine.folded_forward, counted_fold, counted_fold
    peer_counter = counter if peer_model is model else PassCounter(peer_model)
    counts = {"fwd": 0, "grad": 0}
    peer_counts = {"fwd": 0, "grad": 0}
    peer_vals, ours_vals = {}, {}
    with ResultStore(tmp / "ours.sqlite") as st, ResultStore(tmp / "compiled.sqlite") as stc, \
            ResultStore(tmp / "unfolded.sqlite") as stu:
        plan = ours_plan(model, data, refs, cfg, st)
        cplan = ours_plan(model, data, refs, cfg, stc, compile_=True) if compile_ else None
        uplan = ours_plan(model, data, refs, cfg, stu, fold=False) if fold_ablation else None
        for b, idx in enumerate(batches):
            order = ["ours", "peer"] if b % 2 == 0 else ["peer", "ours"]
            if uplan is not None:  # right before or after ours, alternating
                order.insert(0 if b % 2 == 0 else 2, "ours unfolded")
            if cplan is not None:
                order.append("ours compiled")
            for who in order:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0 = time.perf_counter()
                    if who == "ours":
                        f0, g0 = counter.fwd, counter.grad
                        run_ours(plan, idx)
                        counts["fwd"] += counter.fwd - f0
                        counts["grad"] += counter.grad - g0
                    elif who == "peer" and peer_child is not None:
                        reply = peer_child.run(idx)
                        peer_counts["fwd"] += reply["fwd"]
                        peer_counts["grad"] += reply["grad"]
                        res = {}
                        for key, v in reply["vals"].items():
                            m, k = key.split("|")
                            res.setdefault(m, {})[k] = v
                    elif who == "peer":
                        f0, g0 = peer_counter.fwd, peer_counter.grad
                        res = peer(data.tensors[idx])
                        peer_counts["fwd"] += peer_counter.fwd - f0
                        peer_counts["grad"] += peer_counter.grad - g0
                    elif who == "ours unfolded":
                        run_ours(uplan, idx)
                    else:
                        run_ours(cplan, idx)
                    dt = time.perf_counter() - t0
                    if who == "peer" and peer_child is not None:
                        dt = reply["time"]  # its own compute time, without the pipe
                times[who].append(dt)
                if who == "peer":
                    for m, r in res.items():
                        for k, v in r.items():
                            peer_vals.setdefault((m, k), []).extend(torch.as_tensor(v).reshape(-1).tolist())
            print(f"[{name}] batch {b + 1}/{len(batches)}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()),
                  flush=True)
        for r in st.results(plan.settings):
            ours_vals.setdefault((r.method, r.metric), []).append(r.value)
        e_vals = stored_values(st, plan.settings)
        compiled_equal = max_rel_change(stored_values(stc, cplan.settings), e_vals) if cplan is not None else None
        unfolded_diff = max_rel_change(e_vals, stored_values(stu, uplan.settings)) if uplan is not None else None
    engine.folded_forward = score.folded_forward = fold
    counter.close()
    peer_counter.close()
    if peer_child is not None:
        peer_child.close()
    x0 = data.tensors[batches[0]]
    pf = per_image(model, data.tensors[: min(CHUNK, n)].repeat(max(1, CHUNK // n + 1), 1, 1, 1)[:CHUNK], False)
    pg = per_image(model, x0, True)
    bound = counts["fwd"] * pf + counts["grad"] * pg
    ff, fg = floor_in_child(floor_args)
    floor = counts["fwd"] * ff + counts["grad"] * fg
    peer_note = "; model converted to channels-last" if peer_channels_last else ""
    if peer_child is not None:
        peer_note += "; in its own process, glibc's allocator defaults"
    t_ours, t_peer = sum(times["ours"]), sum(times["peer"])
    out_lines += [
        f"### {name}: {n} images, batches of {batch}",
        "",
        "| pipeline | time (s) | images/s | vs peer | vs pass bound |",
        "|---|---:|---:|---:|---:|",
        f"| peer (Captum + pytorch-grad-cam + Quantus + hand-written{peer_note}) | {t_peer:.1f} | "
        f"{n / t_peer:.3f} | 1.00x | {t_peer / bound:.2f}x |",
        f"| cleargrad engine | {t_ours:.1f} | {n / t_ours:.3f} | **{t_peer / t_ours:.2f}x faster** | "
        f"{t_ours / bound:.2f}x |",
    ]
    if fold_ablation:
        tu = times["ours unfolded"]
        mean, se, k = paired_ratio(times["ours"], tu)
        out_lines += [
            f"| cleargrad engine, fold_batchnorm=False | {sum(tu):.1f} | {n / sum(tu):.3f} | {t_peer / sum(tu):.2f}x | "
            f"{sum(tu) / bound:.2f}x |",
            "",
            f"Batch-norm folding: per-batch time folded / unfolded {mean:.3f} ± {se:.3f} (mean ± s.e., "
            f"{k} batches, paired); largest relative difference of a stored value {unfolded_diff:.1e}.",
        ]
    if compile_:
        tc = times["ours compiled"]
        steady = statistics.median(tc[1:]) if len(tc) > 1 else float("nan")
        eager = statistics.median(times["ours"][1:]) if len(times["ours"]) > 1 else float("nan")
        first_extra = tc[0] - times["ours"][0]
        gain = eager - steady
        pays = f"after {math.ceil(first_extra / gain)} batches of {batch}" if gain > 0 else "never (no steady gain)"
        out_lines += [
            f"| cleargrad engine, compile=True | {sum(tc):.1f} | {n / sum(tc):.3f} | {t_peer / sum(tc):.2f}x | "
            f"{sum(tc) / bound:.2f}x |",
            "",
            "| compile | first batch (s) | later batches, median (s) | eager later, median (s) | pays for itself | "
            "max rel. diff vs eager |",
            "|---|---:|---:|---:|---|---:|",
            f"| inductor, dynamic shapes | {tc[0]:.1f} | {steady:.2f} | {eager:.2f} | {pays} | {compiled_equal:.1e} |",
        ]
    out_lines += [
        "",
        f"Pass bound: {counts['fwd']} images forward-only x {pf * 1e3:.2f} ms + {counts['grad']} images with "
        f"gradient x {pg * 1e3:.2f} ms = {bound:.1f} s (the peer sent {peer_counts['fwd']} forward-only and "
        f"{peer_counts['grad']} with gradient). Floor of ours' passes if every convolution and linear layer ran "
        f"as fast as alone and all else were free: {counts['fwd']} x {ff * 1e3:.2f} ms + {counts['grad']} x "
        f"{fg * 1e3:.2f} ms = {floor:.1f} s, so at most **{t_peer / floor:.2f}x** this peer with these passes "
        f"(ours: {t_ours / floor:.2f}x the floor). Per-batch times (s): ours "
        f"{', '.join(f'{v:.1f}' for v in times['ours'])}; peer {', '.join(f'{v:.1f}' for v in times['peer'])}.",
        "",
        "Mean value per method and metric (ours / peer; the peer's Expected Grad-CAM is a different map, "
        "insertion/deletion blur kernels and draws differ):",
        "",
        "| method | " + " | ".join(METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for m in METHODS:
        cells = []
        for k in METRICS:
            a = [v for v in ours_vals.get((m, k), []) if v is not None and not math.isnan(v)]
            p = [v for v in peer_vals.get((m, k), []) if not math.isnan(v)]
            cells.append(f"{np.mean(a):.3g} / {np.mean(p):.3g}" if a and p else "n/a")
        out_lines.append(f"| {m} | " + " | ".join(cells) + " |")
    out_lines.append("")
    return {"ours": t_ours, "peer": t_peer, "bound": bound, "floor": floor, "n": n}


def memory_part(args, out_lines):
    """Peak RSS of ours at 224² in a fresh process per batch setting; the last row turns the
    library's host-cache limit off (glibc keeps every freed block, as before the limit)."""
    out_lines += [
        f"### peak memory, resnet18 224², {args.mem_images} images, ours only (fresh process per row)",
        "",
        "| metric batch_size (images per pass) | Score-CAM / IG / Expected Grad-CAM batch size | host cache limit | "
        "peak RSS (GiB) | RSS before the run (GiB) | time (s) | minor page faults |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    rows = [(None, None, None, False), (16, 16, None, False), (4, 4, None, False), (4, 4, -1, False)]
    if args.host_reuse:  # the default batch settings: glibc's defaults, reuse mode, reuse mode without release
        rows = [(None, None, None, False), (None, None, None, True), (None, None, -1, True)]
    for mb, sb, cache, reuse in rows:
        cmd = [sys.executable, __file__, "--part", "memchild", "--images", str(args.mem_images),
               "--metric-batch", str(mb or 0), "--scorecam-batch", str(sb or 0)]
        if cache is not None:
            cmd += ["--host-cache-mb", str(cache)]
        if reuse:
            cmd += ["--host-reuse"]
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.environ.get(
            "PYTHONPATH", "")})
        d = tagged_json(res.stdout, "MEM")
        shown = ("off (glibc alone)" if cache is not None else "default (256 MiB)") + (", reuse mode" if reuse else "")
        if d is None:
            why = res.stderr[-300:]
            out_lines.append(f"| {mb or 'default'} | {sb or 'default'} | {shown} | failed: {why!r} | | | |")
            continue
        out_lines.append(f"| {mb or 'default (~2.4M input elements, <= 64)'} | {sb or 'default'} | {shown} | "
                         f"{d['peak']:.2f} | {d['before']:.2f} | {d['time']:.0f} | {d['minor_faults']:,} |")
        print(out_lines[-1], flush=True)
    out_lines.append("")


def memchild(args):
    from cleargrad.runtime.hostmem import cached_host_bytes, set_host_cache_limit
    from cleargrad.store import ResultStore

    if args.host_cache_mb is not None:
        set_host_cache_limit(None if args.host_cache_mb < 0 else args.host_cache_mb)
    model, data, refs, layer, cfg = resnet_setup(args.images, args.size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    with ResultStore(Path(tempfile.mkdtemp()) / "m.sqlite") as st:
        plan = ours_plan(model, data, refs, cfg, st)
        if args.metric_batch:
            plan.metric_batch_size = args.metric_batch
        if args.scorecam_batch:
            from cleargrad.evaluation.explainers import build_explainer

            plan.explainers = [
                build_explainer(model, e.name, options={"scorecam": {"batch_size": args.scorecam_batch},
                                                        "integrated_gradients": {"n_steps": 32,
                                                                                 "internal_batch_size":
                                                                                     args.scorecam_batch},
                                                        "expected_gradcam": {"n_samples": 16,
                                                                             "internal_batch_size":
                                                                                 args.scorecam_batch}},
                                references=refs)
                for e in plan.explainers
            ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_ours(plan, list(range(len(data))))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cached = cached_host_bytes()
    print("MEM " + json.dumps({
        "peak": usage.ru_maxrss / 2**20, "before": before, "time": time.perf_counter() - t0,
        "minor_faults": usage.ru_minflt, "cached_at_end": None if cached is None else cached / 2**30,
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="both",
                    choices=["both", "fmnist", "resnet", "memory", "memchild", "floorchild", "peerchild"])
    ap.add_argument("--setup", choices=["fmnist", "resnet"], default="resnet", help=argparse.SUPPRESS)
    ap.add_argument("--peer-process", action="store_true",
                    help="run the peer in a child process of its own with glibc's allocator defaults (with "
                         "--host-reuse: ours as the cleargrad command runs, the peer as a user's script)")
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--compile", action="store_true", help="also time ours with compile=True")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fold-ablation", action="store_true",
                    help="also time ours with fold_batchnorm=False (interleaved, paired per batch)")
    ap.add_argument("--peer-channels-last", action="store_true",
                    help="the peer runs a copy of the model converted with .to(memory_format=torch.channels_last)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mem-images", type=int, default=4)
    ap.add_argument("--metric-batch", type=int, default=0)
    ap.add_argument("--scorecam-batch", type=int, default=0)
    ap.add_argument("--host-cache-mb", type=float, default=None,
                    help="memory rows: the library's host cache limit in MiB (negative: off, glibc's own behaviour)")
    ap.add_argument("--out", type=Path, default=None, help="append the markdown tables to this file")
    ap.add_argument("--host-reuse", action="store_true",
                    help="cleargrad.set_host_memory_reuse(True) for the whole process (both pipelines); "
                         "with --part memory: rows with and without it")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.host_reuse and args.part != "memory":
        from cleargrad.runtime.hostmem import set_host_memory_reuse

        set_host_memory_reuse(True)
    if args.part == "memchild":
        memchild(args)
        return
    if args.part == "floorchild":
        floorchild(args)
        return
    if args.part == "peerchild":
        peerchild(args)
        return
    if args.peer_process and args.peer_channels_last:
        ap.error("--peer-process and --peer-channels-last do not combine")
    lines = [
        f"## evaluate_pipeline ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, "
        f"{args.threads} thread(s), {os.cpu_count()} CPUs, 1-minute load average {os.getloadavg()[0]:.2f} at the "
        "start; ours and the peer run in interleaved batches)",
        "",
        "Command: `python benchmarks/evaluate_pipeline.py " + " ".join(sys.argv[1:]) + "`",
        "",
    ]
    if args.part in ("both", "fmnist"):
        n = args.images or (8 if args.quick else 64)
        model, data, refs, layer, cfg = fmnist_setup(n)
        setup = ["--setup", "fmnist", "--images", str(n), "--threads", str(args.threads)]  # for child processes
        part("SmallCNN, Fashion-MNIST 28²", model, data, refs, layer, cfg, args.batch or (4 if args.quick else 16),
             args.compile, lines, args.peer_channels_last, args.fold_ablation, setup,
             setup if args.peer_process else None)
    if args.part in ("both", "resnet"):
        n = args.images or (2 if args.quick else 16)
        size = 64 if args.quick else args.size
        model, data, refs, layer, cfg = resnet_setup(n, size)
        setup = ["--setup", "resnet", "--images", str(n), "--size", str(size), "--threads", str(args.threads)]
        part(f"resnet18 (random init), {size}²", model, data, refs, layer, cfg, args.batch or (2 if args.quick else 4),
             args.compile, lines, args.peer_channels_last, args.fold_ablation, setup,
             setup if args.peer_process else None)
    if args.part == "memory":
        memory_part(args, lines)
    lines.append(f"1-minute load average at the end: {os.getloadavg()[0]:.2f}.")
    emit(lines, args.out)


def emit(lines: list[str], out: Path | None) -> None:
    """Print the markdown lines and append them to ``out`` when given."""
    text = "\n".join(lines)
    print(text)
    if out:
        with open(out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
