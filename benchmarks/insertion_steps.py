"""How many steps insertion/deletion need: AUC of real maps vs a random map, per step count.

The shipped SmallCNN on the first N Fashion-MNIST test images (28x28): Grad-CAM, Saliency
and Integrated Gradients against a seeded uniform random map, for the per-pixel curve
(784 steps, RISE's protocol) and coarser ones. Per step count: each method's mean AUC,
its paired difference from the random map in standard errors, the method ranking, and
the Spearman correlation of the per-image AUCs with the per-pixel ones.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/insertion_steps.py --images 100
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

import cleargrad as cg
from cleargrad.data import load_fashion_mnist
from cleargrad.metrics import deletion, insertion
from cleargrad.models import small_cnn_fashion_mnist

METHODS = ("gradcam", "saliency", "integrated_gradients")
N_STEPS = (784, 196, 112, 56, 28, 14, 7)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=100)
    args = p.parse_args()
    torch.manual_seed(0)
    model = small_cnn_fashion_mnist(quiet=True)
    ds = load_fashion_mnist("test", normalize=True, limit=args.images)
    x, y = ds.images, ds.labels
    maps = {m: cg.explain(model, x, method=m, target=y).detach() for m in METHODS}
    g = torch.Generator().manual_seed(0)
    maps["random"] = torch.rand(x.shape[0], 1, 28, 28, generator=g)
    auc: dict[tuple[str, int, str], np.ndarray] = {}
    secs: dict[tuple[str, int], float] = {}
    for n in N_STEPS:
        step = math.ceil(28 * 28 / n)
        for name, fn in (("insertion", insertion), ("deletion", deletion)):
            t0 = time.perf_counter()
            for m, s in maps.items():
                auc[name, n, m] = fn(model, x, s, y, step=step).numpy()
            secs[name, n] = time.perf_counter() - t0
    print(f"SmallCNN (shipped), Fashion-MNIST test images 0..{args.images - 1}, 28x28; "
          "diff = method - random (paired), in s.e.; rho = Spearman of per-image AUC vs 784 steps\n")
    for name in ("insertion", "deletion"):
        sign = 1 if name == "insertion" else -1
        print(f"### {name} ({'higher' if sign > 0 else 'lower'} is better)\n")
        print("| steps | step (px) | " + " | ".join(f"{m} AUC (diff s.e.; rho)" for m in METHODS)
              + " | random AUC | ranking | seconds |")
        print("|" + "---|" * (len(METHODS) + 5))
        for n in N_STEPS:
            step = math.ceil(28 * 28 / n)
            cells = []
            for m in METHODS:
                d = sign * (auc[name, n, m] - auc[name, n, "random"])
                se = d.std(ddof=1) / math.sqrt(len(d))
                rho = _spearman(auc[name, n, m], auc[name, 784, m])
                cells.append(f"{auc[name, n, m].mean():.4f} ({d.mean() / se:+.1f}; {rho:.3f})")
            ranking = " > ".join(sorted(maps, key=lambda m: -sign * auc[name, n, m].mean()))
            print(f"| {math.ceil(784 / step)} | {step} | " + " | ".join(cells)
                  + f" | {auc[name, n, 'random'].mean():.4f} | {ranking} | {secs[name, n]:.1f} |")
        print()


if __name__ == "__main__":
    main()
