"""ROAD, MPRT and the random-map verdict on the shipped Fashion-MNIST SmallCNN: a small run.

    python benchmarks/metrics_sanity.py --images 64 --mprt-images 16

Methods: Grad-CAM, Grad-CAM++, Saliency, Integrated Gradients and a random map
(uniform noise at the CAM's 7x7 resolution, upsampled) on the first test images.
Metrics: insertion and deletion (cleargrad defaults at 28 px), ROAD MoRF / LeRF
(noisy linear imputation, fractions 0.1 ... 0.9, generator-seeded noise), and the
MPRT sanity check (cascading top-down, Spearman of |map|) on fewer images.
Writes ``benchmarks/results/metrics_sanity_fmnist.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import cleargrad as cg
from cleargrad.data import load_fashion_mnist
from cleargrad.models import fashion_mnist_model

OUT = Path(__file__).parent / "results" / "metrics_sanity_fmnist.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--mprt-images", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = fashion_mnist_model("small-cnn", quiet=True)
    data = load_fashion_mnist("test", normalize=True, limit=args.images)
    x = torch.stack([data[i][0] for i in range(args.images)])
    with torch.no_grad():
        y = model(x).argmax(1)
    layer = "features.3"
    g = torch.Generator().manual_seed(0)
    explainers = {
        "gradcam": cg.GradCAM(model, layer),
        "gradcam_pp": cg.GradCAMPlusPlus(model, layer),
        "saliency": cg.Saliency(model),
        "integrated_gradients": cg.IntegratedGradients(model),
    }
    maps = {k: e.attribute(x, y) for k, e in explainers.items()}
    r = torch.rand(args.images, 1, 7, 7, generator=g)
    maps["random"] = F.interpolate(r, size=x.shape[-2:], mode="bilinear", align_corners=False)
    metrics = {
        "insertion": lambda a: cg.metrics.insertion(model, x, a, y),
        "deletion": lambda a: cg.metrics.deletion(model, x, a, y),
        "road_morf": lambda a: cg.metrics.road_morf(model, x, a, y, generator=torch.Generator().manual_seed(1)),
        "road_lerf": lambda a: cg.metrics.road_lerf(model, x, a, y, generator=torch.Generator().manual_seed(1)),
    }
    t0 = time.perf_counter()
    scores = {k: {m: fn(a) for m, a in maps.items()} for k, fn in metrics.items()}
    verdicts = cg.metrics.random_map_verdict(scores)
    lines = [
        "# ROAD, MPRT and the random-map verdict: shipped Fashion-MNIST SmallCNN (small run)",
        "",
        f"Command: `python benchmarks/metrics_sanity.py --images {args.images} --mprt-images {args.mprt_images}` "
        f"(first {args.images} test images, targets = predictions; CPU).",
        "",
        "Mean ± s.e. per image (insertion, ROAD LeRF: higher is better; deletion, ROAD MoRF: lower is better; "
        "ROAD values are score changes from the clean image).",
        "",
        "| method | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for m in maps:
        cells = []
        for k in metrics:
            v = scores[k][m].double()
            cells.append(f"{v.mean():.4f} ± {v.std() / len(v) ** 0.5:.4f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Random-map verdict (paired difference method − random, mark + beyond 2 s.e. in the better "
              "direction, - worse):", ""]
    lines += [f"- {line}" for line in cg.metrics.format_verdicts(verdicts)]
    n = args.mprt_images
    lines += ["", f"MPRT (top-down cascading, Spearman of |map|, {n} images): similarity after full randomisation "
              "and the sanity verdict (passes: mean + 2 s.e. < 0.5).", "",
              "A randomised model can give a constant map (a CAM that is all zero after its ReLU): its rank "
              "correlation is undefined and left out, counted in the last column.", "",
              "| method | similarity, top layer only | fully randomised | passes | undefined (top layer / full) |",
              "|---|---|---|---|---|"]
    for m, e in explainers.items():
        res = cg.metrics.mprt(model, x[:n], e, y[:n], return_curves=True)
        top = res.curves[:, 0].double()
        top_ok = top[torch.isfinite(top)]
        v = cg.metrics.sanity_check(res)
        n_full = int(torch.isnan(res.value).sum())
        lines.append(f"| {m} | {top_ok.mean():.3f} ± {top_ok.std() / len(top_ok) ** 0.5:.3f} | "
                     f"{v['mean']:.3f} ± {v['se']:.3f} | {'yes' if v['passes'] else 'NO'} | "
                     f"{n - len(top_ok)} / {n_full} |")
    lines += ["", f"Total {time.perf_counter() - t0:.0f} s."]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
