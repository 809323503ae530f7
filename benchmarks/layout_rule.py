"""The ``"auto"`` memory-format rule (``cleargrad.runtime.layout.heavy_conv``) measured.

    PYTHONPATH=src python benchmarks/layout_rule.py grid --threads 1
    PYTHONPATH=src python benchmarks/layout_rule.py grid --threads 2
    PYTHONPATH=src python benchmarks/layout_rule.py models --threads 1 --repeats 6
    PYTHONPATH=src python benchmarks/layout_rule.py models --threads 2 --repeats 6

``grid``: one convolution (C_in = C_out channels, a k x k kernel, padding k // 2), forward +
backward with respect to its input, channels-last input over contiguous input, for batch x
map sizes giving N * H * W output pixels; the cells marked ``*`` are those where the rule
gives the convolution a contiguous input. Times are the median of alternating repeats
(contiguous, channels-last, contiguous, ...) after two warm-up calls.

``models``: CAMs (and IG for one model) on whole torchvision models and the SmallCNN:
cleargrad in ``"auto"`` (the rule), ``"contiguous"`` and ``"channels_last"`` against
pytorch-grad-cam (Captum for IG), all timed interleaved in one run after a warm-up; each
cell is the mean of the paired ratios ours / peer ± its standard error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
import torchvision  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import fmt_s, interleaved, paired_ratio  # noqa: E402

import cleargrad as cg  # noqa: E402
from cleargrad.models import SmallCNN  # noqa: E402
from cleargrad.runtime import layout  # noqa: E402

CL = torch.channels_last


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def grid(args) -> None:
    sizes = [(4, 1), (4, 2), (7, 1), (7, 2), (7, 4), (14, 1), (14, 2), (14, 4), (28, 1), (28, 2), (28, 4),
             (56, 1), (56, 2)]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; channels-last / contiguous, "
          f"forward + backward; `*`: the rule runs it contiguous")
    head = [f"{n * h * h} ({n}x{h}²)" for h, n in sizes]
    print("| kernel | C | " + " | ".join(head) + " |")
    print("|---|---|" + "---|" * len(sizes))
    for k in (3, 1):
        for c in (64, 128, 256, 512):
            torch.manual_seed(0)
            conv = torch.nn.Conv2d(c, c, k, padding=k // 2)
            cells = []
            for h, n in sizes:
                if c * n * h * h > 512 * 2 * 56 * 56 // 2:
                    cells.append("")
                    continue
                x = torch.randn(n, c, h, h)
                xs = {"contiguous": x.clone().requires_grad_(),
                      "channels_last": x.contiguous(memory_format=CL).requires_grad_()}

                def run(v, conv=conv):
                    conv(v).sum().backward()
                    v.grad = None

                for v in xs.values():
                    run(v)
                    run(v)
                ts = {m: [] for m in xs}
                for _ in range(args.repeats):
                    for m, v in xs.items():
                        t0 = time.perf_counter()
                        run(v)
                        ts[m].append(time.perf_counter() - t0)
                r = _median(ts["channels_last"]) / _median(ts["contiguous"])
                rule = layout.heavy_conv(xs["channels_last"], conv.weight, padding=k // 2)
                cells.append(f"{r:.2f}{'*' if rule else ''}")
            print(f"| {k}x{k} | {c} | " + " | ".join(cells) + " |", flush=True)


def models(args) -> None:
    warnings.filterwarnings("ignore")
    import pytorch_grad_cam as pgc
    from captum.attr import IntegratedGradients as CaptumIG
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    nets = {
        "resnet18": (torchvision.models.resnet18(weights=None).eval(), "layer4"),
        "resnet50": (torchvision.models.resnet50(weights=None).eval(), "layer4"),
        "vgg11_bn": (torchvision.models.vgg11_bn(weights=None).eval(), "features.27"),
        "mobilenet_v2": (torchvision.models.mobilenet_v2(weights=None).eval(), "features.18"),
        "SmallCNN": (SmallCNN().eval(), "features"),
    }
    configs = [
        ("resnet18", 2, 112), ("resnet18", 1, 224), ("resnet18", 4, 224), ("resnet18", 16, 224),
        ("resnet50", 2, 112), ("vgg11_bn", 2, 112), ("mobilenet_v2", 4, 224), ("SmallCNN", 64, 28),
    ]
    methods = [("GradCAM", cg.GradCAM, pgc.GradCAM), ("FEM", cg.FEM, pgc.FEM), ("KPCA-CAM", cg.KPCACAM, pgc.KPCA_CAM)]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; ours / peer (paired, mean ± s.e.)")
    print("| model | batch | size | method | auto (rule) | contiguous | channels_last | peer time |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n, size in configs:
        if args.config and args.config not in f"{name} {n} {size}":
            continue
        model, layer = nets[name]
        ch = 1 if name == "SmallCNN" else 3
        x = torch.randn(n, ch, size, size)
        module = model.get_submodule(layer)
        with torch.no_grad():
            targets = model(x).argmax(1)
        tg = [ClassifierOutputTarget(int(t)) for t in targets]
        for mname, ours_cls, peer_cls in methods:
            if mname == "KPCA-CAM" and n * size * size > 4 * 224 * 224 // 2:
                continue  # its kernel matrix over every position: the method's own cost
            make_peer = lambda c=peer_cls, m=model, mod=module: c(m, [mod])  # noqa: E731
            cells, peer_s = _row(lambda x, t, inst=ours_cls(model, layer=layer): inst.attribute(
                x, target=t, normalize=True), _cam_peer(make_peer, tg), x, targets, args.repeats)
            print(f"| {name} | {n} | {size}² | {mname} | {' | '.join(cells)} | {peer_s} |", flush=True)
        if name in ("resnet18", "SmallCNN") and n <= 4:
            ig, cig = cg.IntegratedGradients(model), CaptumIG(model)
            cells, peer_s = _row(lambda x, t, ig=ig: ig.attribute(x, target=t, n_steps=16),
                                 lambda x, t, cig=cig, n=n: cig.attribute(
                                     x, target=t, n_steps=16, method="gausslegendre", internal_batch_size=16 * n),
                                 x, targets, args.repeats)
            print(f"| {name} | {n} | {size}² | IG (16 steps; vs Captum) | {' | '.join(cells)} | {peer_s} |",
                  flush=True)


def _cam_peer(make_peer, tg):
    def peer(x, _t):
        cam = make_peer()
        try:
            return cam(x, targets=tg)
        finally:
            cam.activations_and_grads.gradients = []
            cam.activations_and_grads.release()
    return peer


def _row(ours, peer, x, targets, repeats: int) -> tuple[list[str], str]:
    def in_mode(mode: str):
        def run() -> object:
            old = cg.get_memory_format()
            cg.set_memory_format(mode)
            try:
                return ours(x, targets)
            finally:
                cg.set_memory_format(old)
        return run

    modes = ("auto", "contiguous", "channels_last")
    runs = {m: in_mode(m) for m in modes}
    runs["peer"] = lambda: peer(x, targets)
    st = interleaved(runs, repeats=repeats, warmup=1)
    cells = []
    for m in modes:
        mean, se, _ = paired_ratio(st[m].samples, st["peer"].samples)
        cells.append(f"{mean:.3f} ± {se:.3f}")
    return cells, fmt_s(st["peer"].median)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["grid", "models"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--config", default=None, help="models: only the configurations whose 'name batch size' "
                                                   "contains this text")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    (grid if args.part == "grid" else models)(args)


if __name__ == "__main__":
    main()
