"""How many steps insertion/deletion need: AUC of real maps vs a random map, per step count.

The shipped SmallCNN on the first N Fashion-MNIST test images (28x28): Grad-CAM, Saliency
and Integrated Gradients against a seeded uniform random map, for the per-pixel curve
(784 steps, RISE's protocol) and coarser ones. Per step count: each method's mean AUC,
its paired difference from the random map in standard errors, the method ranking, and
the Spearman correlation of the per-image AUCs with the per-pixel ones.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/insertion_steps.py --images 100

``--size S`` (S a multiple of 28, e.g. 112) asks the same question on larger images: the
Fashion-MNIST images upsampled bilinearly to SxS and a model trained on them here (a
stride-(S/28) patch stem in front of the SmallCNN blocks, 2 epochs on 30,000 training
images, seed 0; cached under ``.cache/insertion_steps/``). The finest curve compared there
is S*S/4 steps (4 pixels a step, which at 28x28 gives rho = 1.000 against the per-pixel
curve; the per-pixel one at 112x112 costs 12,544 passes per image and curve), then S*S/16,
448, 112, 28, 14, 7; ``--per-pixel`` adds the S*S-step curve as the reference.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/insertion_steps.py --images 32 --size 112
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

import cleargrad as cg
from cleargrad.data import load_fashion_mnist
from cleargrad.metrics import deletion, insertion
from cleargrad.models import small_cnn_fashion_mnist
from cleargrad.models.small_cnn import SmallCNN
from cleargrad.models.training import evaluate_accuracy, train_classifier

METHODS = ("gradcam", "saliency", "integrated_gradients")
N_STEPS = (784, 196, 112, 56, 28, 14, 7)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    if size == x.shape[-1]:
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


class StemCNN(torch.nn.Module):
    """A stride-(size/28) patch stem (conv, BN, ReLU) in front of the SmallCNN blocks."""

    def __init__(self, size: int, width: int = 16) -> None:
        super().__init__()
        k = size // 28
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(1, width, k, stride=k, bias=False), torch.nn.BatchNorm2d(width), torch.nn.ReLU()
        )
        body = SmallCNN(in_channels=width, width=width)
        self.features, self.classifier = body.features, body.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.stem(x)).mean(dim=(2, 3)))


def _model(size: int) -> torch.nn.Module:
    if size == 28:
        return small_cnn_fashion_mnist(quiet=True)
    model = StemCNN(size)
    path = Path(".cache/insertion_steps") / f"stem_cnn_{size}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    train = load_fashion_mnist("train", normalize=True, limit=30_000)
    xs = torch.cat([_upsample(train.images[i:i + 1000], size) for i in range(0, 30_000, 1000)])
    res = train_classifier(model, (xs, train.labels), epochs=2, batch_size=128, lr=2e-3, seed=0, quiet=True)
    del xs
    test = load_fashion_mnist("test", normalize=True, limit=2000)
    acc = evaluate_accuracy(model, (_upsample(test.images, size), test.labels))
    print(f"trained StemCNN at {size}x{size}: {res.seconds:.0f} s, test accuracy (first 2000) {acc:.4f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--size", type=int, default=28, help="image side, a multiple of 28")
    p.add_argument("--per-pixel", action="store_true", help="with --size > 28: add the per-pixel curve")
    args = p.parse_args()
    size = args.size
    if size % 28:
        raise SystemExit("--size must be a multiple of 28")
    pixels = size * size
    if size == 28:
        n_steps: tuple[int, ...] = N_STEPS
    else:
        n_steps = ((pixels,) if args.per_pixel else ()) + (pixels // 4, pixels // 16, 448, 112, 28, 14, 7)
    ref = n_steps[0]
    torch.manual_seed(0)
    model = _model(size)
    ds = load_fashion_mnist("test", normalize=True, limit=args.images)
    x, y = _upsample(ds.images, size), ds.labels
    maps = {m: cg.explain(model, x, method=m, target=y).detach() for m in METHODS}
    g = torch.Generator().manual_seed(0)
    maps["random"] = torch.rand(x.shape[0], 1, size, size, generator=g)
    auc: dict[tuple[str, int, str], np.ndarray] = {}
    secs: dict[tuple[str, int], float] = {}
    for n in n_steps:
        step = math.ceil(pixels / n)
        for name, fn in (("insertion", insertion), ("deletion", deletion)):
            t0 = time.perf_counter()
            for m, s in maps.items():
                auc[name, n, m] = fn(model, x, s, y, step=step).numpy()
            secs[name, n] = time.perf_counter() - t0
    label = "SmallCNN (shipped)" if size == 28 else f"StemCNN trained at {size}x{size} (upsampled)"
    print(f"{label}, Fashion-MNIST test images 0..{args.images - 1}, {size}x{size}; "
          f"diff = method - random (paired), in s.e.; rho = Spearman of per-image AUC vs {ref} steps\n")
    for name in ("insertion", "deletion"):
        sign = 1 if name == "insertion" else -1
        print(f"### {name} ({'higher' if sign > 0 else 'lower'} is better)\n")
        print("| steps | step (px) | " + " | ".join(f"{m} AUC (diff s.e.; rho)" for m in METHODS)
              + " | random AUC | ranking | seconds |")
        print("|" + "---|" * (len(METHODS) + 5))
        for n in n_steps:
            step = math.ceil(pixels / n)
            cells = []
            for m in METHODS:
                d = sign * (auc[name, n, m] - auc[name, n, "random"])
                se = d.std(ddof=1) / math.sqrt(len(d))
                rho = _spearman(auc[name, n, m], auc[name, ref, m])
                cells.append(f"{auc[name, n, m].mean():.4f} ({d.mean() / se:+.1f}; {rho:.3f})")
            ranking = " > ".join(sorted(maps, key=lambda m: -sign * auc[name, n, m].mean()))
            print(f"| {math.ceil(pixels / step)} | {step} | " + " | ".join(cells)
                  + f" | {auc[name, n, 'random'].mean():.4f} | {ranking} | {secs[name, n]:.1f} |")
        print()


if __name__ == "__main__":
    main()
