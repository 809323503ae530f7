"""The ``"auto"`` memory-format rule (runtime.layout) against the layouts it chooses between.

    PYTHONPATH=src python benchmarks/layout_rule.py --threads 1 --repeats 6

For each configuration (model, batch, threads) and CAM: cleargrad in ``"auto"`` (a one-off
measured probe per model and image shape, cached), ``"contiguous"`` and ``"channels_last"``
(the previous ``"auto"`` rule on a CPU) against pytorch-grad-cam, all timed interleaved in
one run after a warm-up (the warm-up also holds ``"auto"``'s probe); ratios are the mean
of the paired ratios to the peer ± its standard error. Also prints the probe's decision
and its one-off cost on a fresh copy of each model.
"""

from __future__ import annotations

import argparse
import copy
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--config", default=None, help="only the configurations whose name contains this text")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).eval()
    small = SmallCNN().eval()
    configs = [
        ("resnet18 b2 112px", resnet, "layer4", torch.randn(2, 3, 112, 112)),
        ("resnet18 b4 224px", resnet, "layer4", torch.randn(4, 3, 224, 224)),
        ("SmallCNN b64 28px", small, "features", torch.randn(64, 1, 28, 28)),
    ]
    methods = [("GradCAM", cg.GradCAM, pgc.GradCAM), ("FEM", cg.FEM, pgc.FEM), ("KPCA-CAM", cg.KPCACAM, pgc.KPCA_CAM)]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| config | method | auto/peer | contiguous/peer | channels_last/peer | peer |")
    print("|---|---|---|---|---|---|")
    for name, model, layer, x in configs:
        if args.config and args.config not in name:
            continue
        fresh = copy.deepcopy(model)
        with layout.fast_layout():
            t0 = time.perf_counter()
            choice = layout.prefers_channels_last(fresh, x)
            cost = time.perf_counter() - t0
        print(f"<!-- {name}: probe chose {'channels_last' if choice else 'contiguous'} in {fmt_s(cost)} -->",
              flush=True)
        module = model.get_submodule(layer)
        with torch.no_grad():
            targets = model(x).argmax(1)
        tg = [ClassifierOutputTarget(int(t)) for t in targets]
        for mname, ours_cls, peer_cls in methods:
            if mname == "KPCA-CAM" and "224" in name:
                continue  # a 7x7 grid per image: the method's own cost, no layout question
            make_peer = lambda c=peer_cls, m=model, mod=module: c(m, [mod])  # noqa: E731
            cells, peer_s = _row(ours_cls(model, layer=layer), make_peer, x, targets, tg, args.repeats)
            print(f"| {name} | {mname} | {' | '.join(cells)} | {peer_s} |", flush=True)


def _row(inst, make_peer, x, targets, tg, repeats: int) -> tuple[list[str], str]:
    """One row; the peer is made per call (its hooks stay on the model only during its own call)."""
    def ours(mode: str):
        def run() -> object:
            cg.set_memory_format(mode)
            try:
                return inst.attribute(x, target=targets, normalize=True)
            finally:
                cg.set_memory_format("auto")
        return run

    def peer() -> object:
        cam = make_peer()
        try:
            return cam(x, targets=tg)
        finally:
            cam.activations_and_grads.gradients = []
            cam.activations_and_grads.release()

    runs = {m: ours(m) for m in ("auto", "contiguous", "channels_last")}
    runs["peer"] = peer
    st = interleaved(runs, repeats=repeats, warmup=1)
    cells = []
    for m in ("auto", "contiguous", "channels_last"):
        mean, se, _ = paired_ratio(st[m].samples, st["peer"].samples)
        cells.append(f"{mean:.3f} ± {se:.3f}")
    return cells, fmt_s(st["peer"].median)

if __name__ == "__main__":
    main()
