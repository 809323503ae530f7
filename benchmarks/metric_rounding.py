"""How far do per-image metric values move when only float rounding changes?

    python benchmarks/metric_rounding.py [--images 64] [--out FILE]

The protocol of ``benchmarks/evaluate_pipeline.py`` (Fashion-MNIST reference SmallCNN,
5 methods x 7 metrics, one thread) runs twice through the evaluation engine on the same
images: once with every model input in the default memory layout
(``cg.set_memory_format("contiguous")``) and once channels-last (the default on CPUs).
The two runs use other convolution kernels, so the maps differ by float rounding
(about 1e-7 relative) and nothing else. The table gives, per metric and method, the
largest relative change of a stored per-image value and how many images changed by more
than 1e-5: the reproducibility a user can expect of per-image values across machines,
thread counts or library versions. Ranking metrics (insertion, deletion) are
discontinuous in the map: a near-tie between two pixels that rounding resolves the other
way changes the order in which they are inserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import evaluate_pipeline as ep  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import cleargrad as cg
    from cleargrad.store import ResultStore

    torch.set_num_threads(1)
    model, data, refs, _layer, cfg = ep.fmnist_setup(args.images)
    vals = {}
    old = cg.get_memory_format()
    try:
        for mode in ("contiguous", "auto"):
            cg.set_memory_format(mode)
            with ResultStore(Path(tempfile.mkdtemp()) / "r.sqlite") as st:
                plan = ep.ours_plan(model, data, refs, cfg, st)
                for b in range(0, args.images, 16):
                    ep.run_ours(plan, list(range(b, min(b + 16, args.images))))
                vals[mode] = ep.stored_values(st, plan.settings)
    finally:
        cg.set_memory_format(old)
    a, b = vals["contiguous"], vals["auto"]
    lines = [
        f"## metric_rounding ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__})",
        "",
        f"Command: `python benchmarks/metric_rounding.py --images {args.images}`",
        "",
        "Per-image values, default layout vs channels-last (maps equal to float rounding): largest relative "
        "change, and images changed by more than 1e-5 relative.",
        "",
        "| metric | " + " | ".join(ep.METHODS) + " |",
        "|---|" + "---:|" * len(ep.METHODS),
    ]
    for metric in ep.METRICS:
        cells = []
        for m in ep.METHODS:
            ks = [k for k in a if k[1] == m and k[2] == metric]
            d = [ep.rel_change(b[k], a[k]) for k in ks]
            cells.append(f"{max(d):.1e} ({sum(x > 1e-5 for x in d)}/{len(d)})")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    means = []
    for metric in ("insertion", "deletion"):
        for m in ep.METHODS:
            ks = [k for k in a if k[1] == m and k[2] == metric]
            ma = sum(a[k] for k in ks) / len(ks)
            mb = sum(b[k] for k in ks) / len(ks)
            means.append(abs(mb - ma) / abs(ma))
    lines += ["", f"Largest relative change of a method's mean insertion or deletion over the {args.images} images: "
              f"{max(means):.1e}.", ""]
    ep.emit(lines, args.out)


if __name__ == "__main__":
    main()
