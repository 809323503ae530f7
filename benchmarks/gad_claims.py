"""Do the GAD paper's claims hold on Fashion-MNIST? (spec § 3.7)

For the class pairs T-shirt/top vs Shirt, Pullover vs Coat, Sneaker vs Ankle boot, the
cached SmallCNN (``cleargrad.models.small_cnn_fashion_mnist``, trained on first use) and
each of the five base methods, this script fits one GAD per pair (the support models do
not depend on the base method) and reports on test images of the pair, explained for
their true class:

- mean RC = |R(GAD)| / |R(original)| (claim: < 1), and the ratio of sums;
- mean RS of the GAD region and of the original-minus-GAD region (logit drop per unit
  of occluded area, occlusion = black pixels), and the fraction of images where the GAD
  region is the more sensitive one (claim: RS(GAD) > RS(original - GAD));
- fit time per pair and attribute time per image.

Outputs a markdown table (printed and saved) and a PNG grid (original map and GAD map
with their convex hulls) under ``--out``.

    python benchmarks/gad_claims.py            # full run (about 15 min on 2 CPU cores)
    python benchmarks/gad_claims.py --quick    # smoke run (about a minute)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cleargrad.data import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, load_fashion_mnist
from cleargrad.gad import GAD
from cleargrad.metrics import convex_hull_region, nan_summary, region_complexity, region_sensitivity
from cleargrad.models import FashionMNISTRecipe, small_cnn_fashion_mnist, small_cnn_fashion_mnist_record
from cleargrad.viz.overlay import overlay

PAIRS = [(0, 6), (2, 4), (7, 9)]
BASES = ["saliency", "deconvolution", "input_x_gradient", "guided_backprop", "integrated_gradients"]


def _pair_subset(ds, pair: tuple[int, int], limit: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    keep = (ds.labels == pair[0]) | (ds.labels == pair[1])
    x, y = ds.images[keep], ds.labels[keep]
    if limit is not None and limit < len(y):
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:limit]
        x, y = x[idx], y[idx]
    return x, y


def evaluate(gad: GAD, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> dict:
    """RC, RS and timing of one fitted GAD on test images ``x`` (explained for ``y``)."""
    fused_l, orig_l = [], []
    start = time.perf_counter()
    for i in range(0, len(y), batch):
        fused, maps = gad.attribute(x[i : i + batch], target=y[i : i + batch], return_all=True)
        fused_l.append(fused)
        orig_l.append(maps[:, :1])
    seconds = time.perf_counter() - start
    fused, orig = torch.cat(fused_l), torch.cat(orig_l)
    r_gad, r_orig = convex_hull_region(fused), convex_hull_region(orig)
    rc = region_complexity(r_gad, r_orig)
    norm = {"mean": FASHION_MNIST_MEAN, "std": FASHION_MNIST_STD}
    rs_gad = region_sensitivity(model, x, r_gad, y, **norm).rs
    rs_rest = region_sensitivity(model, x, r_orig & ~r_gad, y, **norm).rs
    both = ~torch.isnan(rs_gad) & ~torch.isnan(rs_rest)
    return {
        "rc": nan_summary(rc),
        "rc_sums": float(r_gad.sum() / r_orig.sum().clamp(min=1)),
        "rs_gad": nan_summary(rs_gad),
        "rs_rest": nan_summary(rs_rest),
        "frac_gad_more": float((rs_gad[both] > rs_rest[both]).double().mean()) if both.any() else float("nan"),
        "n_compared": int(both.sum()),
        "ms_per_image": 1000 * seconds / len(y),
        "maps": (orig, fused, r_orig, r_gad),
    }


def figure(panels: list[tuple[str, torch.Tensor, tuple]], path: Path) -> None:
    """One row per (pair, base): input, original map + hull, GAD map + hull."""
    fig = Figure(figsize=(3 * 1.8, 1.8 * len(panels)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 3, squeeze=False)
    pix = lambda im: (im * FASHION_MNIST_STD + FASHION_MNIST_MEAN).clamp(0, 1)  # noqa: E731
    for row, (title, image, (orig, fused, r_orig, r_gad)) in zip(axes, panels):
        img = pix(image)
        row[0].imshow(img[0], cmap="gray")
        row[1].imshow(overlay(img, orig, mask=r_orig))
        row[2].imshow(overlay(img, fused, mask=r_gad))
        row[0].set_ylabel(title, fontsize=7)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, t in zip(axes[0], ("input", "original + hull", "GAD + hull")):
        ax.set_title(t, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--n-test", type=int, default=100, help="test images per pair")
    ap.add_argument("--train-limit", type=int, default=2000, help="training images per pair for the support models")
    ap.add_argument("--epochs", type=int, default=10, help="training epochs per support model (paper: 10)")
    ap.add_argument("--n-support", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-5, help="Adam lr of the support models (spec default 1e-5)")
    ap.add_argument("--ig-steps", type=int, default=32)
    ap.add_argument("--bases", nargs="+", default=BASES)
    ap.add_argument("--batch", type=int, default=25, help="images per attribute call")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gad_claims"))
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args()
    if args.quick:
        args.n_test, args.train_limit, args.epochs, args.n_support, args.ig_steps = 12, 300, 2, 2, 8
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    recipe = None
    if args.quick and small_cnn_fashion_mnist_record() is None:
        # smoke run without the cached reference model: a briefly trained one (cached too)
        recipe = FashionMNISTRecipe(epochs=1, train_limit=6000, max_steps=120)
    model = small_cnn_fashion_mnist(recipe=recipe, quiet=args.quiet)
    record = small_cnn_fashion_mnist_record(recipe=recipe) or {}
    print(f"SmallCNN test accuracy {record.get('test_accuracy')}")
    train = load_fashion_mnist("train", normalize=True)
    test = load_fashion_mnist("test", normalize=True)
    rows, panels, fits = [], [], {}
    for pair in PAIRS:
        names = f"{FASHION_MNIST_CLASSES[pair[0]]} vs {FASHION_MNIST_CLASSES[pair[1]]}"
        xtr, ytr = _pair_subset(train, pair, args.train_limit, seed=0)
        xte, yte = _pair_subset(test, pair, args.n_test, seed=1)
        gad = GAD(model, classes=pair, n_support=args.n_support, epochs=args.epochs, lr=args.lr,
                  progress=not args.quiet).fit((xtr, ytr))
        st = gad.stats_[0]
        fits[names] = {
            "fit_seconds": gad.fit_time_, "train_images": len(ytr),
            "alphas": gad.alphas_[0].tolist(), "stats": [s.to_dict() for s in st],
        }
        print(f"{names}: fit {gad.fit_time_:.1f}s on {len(ytr)} images; alphas {gad.alphas_[0][:, 0].tolist()}; "
              f"margins {[round(s.margin_first, 2) for s in st]} / {[round(s.margin_second, 2) for s in st]}; "
              f"MSE {[round(s.mse, 4) for s in st]}; agreement {[round(s.agreement, 3) for s in st]}")
        for base in args.bases:
            opts = {"n_steps": args.ig_steps} if base == "integrated_gradients" else {}
            r = evaluate(gad.with_base(base, opts), model, xte, yte, args.batch)
            rows.append((names, base, r))
            orig, fused, r_orig, r_gad = r.pop("maps")
            panels.append((f"{names}\n{base}", xte[0], (orig[0], fused[0], r_orig[0], r_gad[0])))
            print(f"  {base}: RC {r['rc'].mean:.3f}, RS gad {r['rs_gad'].mean:.3f} vs rest {r['rs_rest'].mean:.3f}, "
                  f"frac {r['frac_gad_more']:.2f}, {r['ms_per_image']:.1f} ms/image")

    head = ("| pair | base | mean RC | RC (sums) | mean RS GAD | mean RS orig-GAD | frac RS GAD > rest | n | "
            "skipped RS (GAD / rest) | ms/image |")
    lines = [head, "|" + "---|" * 10]
    for names, base, r in rows:
        lines.append(
            f"| {names} | {base} | {r['rc'].mean:.3f} | {r['rc_sums']:.3f} | {r['rs_gad'].mean:.3f} | "
            f"{r['rs_rest'].mean:.3f} | {r['frac_gad_more']:.2f} | {r['n_compared']} | "
            f"{r['rs_gad'].n_skipped} / {r['rs_rest'].n_skipped} | {r['ms_per_image']:.1f} |"
        )
    fit_lines = ["| pair | fit seconds | train images |", "|---|---|---|"]
    fit_lines += [f"| {k} | {v['fit_seconds']:.1f} | {v['train_images']} |" for k, v in fits.items()]
    settings = (f"n_test={args.n_test} per pair, train_limit={args.train_limit}, epochs={args.epochs}, "
                f"S={args.n_support}, lr={args.lr}, IG steps={args.ig_steps}, threads={args.threads}, "
                "target = true class, RS on logits, occlusion = black")
    md = "\n".join([f"GAD claims on Fashion-MNIST ({settings})", "", *lines, "", *fit_lines])
    print("\n" + md)
    (args.out / "gad_claims.md").write_text(md + "\n")
    (args.out / "gad_fits.json").write_text(json.dumps(fits, indent=2))
    figure(panels, args.out / "gad_claims.png")
    print(f"\nwritten: {args.out / 'gad_claims.md'}, {args.out / 'gad_claims.png'}")


if __name__ == "__main__":
    main()
