"""Does interpretable-gradient training (spec § 4) make CAMs more faithful on Fashion-MNIST?

Reproduces the shape of the paper's Tables 1-2 (CIFAR-100 there) on Fashion-MNIST:

1. trains, from the same initialisation and seed and for the same epochs, a baseline
   (cross-entropy) and one model per lambda with the cosine interpretable-gradient loss,
   for the CIFAR-style ResNet-18 (1 input channel, width multiplier ``--width``) and the
   SmallCNN (fast variant), with the paper's recipe (SGD lr 0.1, momentum 0.9, weight
   decay 5e-4, LR x 0.2 at 30/60/80 % of the epochs, batch 128) on a training subset;
2. reports test accuracy (full 10k test set);
3. explains the same first ``--n-test`` test images for their true class with Grad-CAM,
   Grad-CAM++, Score-CAM, Ablation-CAM and XGrad-CAM (= Axiom-CAM) on the last conv block
   and reports AD, AG, AI, insertion and deletion (%) with the authors' protocol (spec
   § 4.5: min-max maps; masked image = normalise(denormalise(x) * S); insertion from a
   5x5 sigma-5 blur, deletion to zeros, 8*W pixels per step);
4. times one training step (forward, backward, SGD step; batch 128) of each loss,
   interleaved medians.

Checkpoints go to ``--out``/checkpoints, so an interrupted run resumes where it stopped.
Results: ``--out``/results.md and results.json.

    python benchmarks/interpretable_training.py            # full run (estimated 35-60 min on 2 CPU cores)
    python benchmarks/interpretable_training.py --quick    # smoke run (~1-2 min)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved  # noqa: E402

from cleargrad.cam import AblationCAM, GradCAM, GradCAMPlusPlus, ScoreCAM, XGradCAM  # noqa: E402
from cleargrad.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, load_fashion_mnist  # noqa: E402
from cleargrad.metrics import deletion, insertion, masked_confidence  # noqa: E402
from cleargrad.models import SmallCNN, cifar_resnet18  # noqa: E402
from cleargrad.training import ERRORS, ClassificationLoss, InterpretableGradientLoss, fit  # noqa: E402

CAMS = {
    "Grad-CAM": GradCAM,
    "Grad-CAM++": GradCAMPlusPlus,
    "Score-CAM": ScoreCAM,
    "Ablation-CAM": AblationCAM,
    "XGrad-CAM (Axiom-CAM)": XGradCAM,
}
METRICS = [("AD", "↓"), ("AG", "↑"), ("AI", "↑"), ("INS", "↑"), ("DEL", "↓")]


def build(arch: str, args: argparse.Namespace) -> nn.Module:
    """The same initialisation for every loss of one architecture."""
    torch.manual_seed(args.seed)
    if arch == "resnet18":
        return cifar_resnet18(in_channels=1, num_classes=10, width=args.width)
    return SmallCNN(in_channels=1, num_classes=10, width=args.cnn_width)


def arch_label(arch: str, args: argparse.Namespace) -> str:
    return f"ResNet-18 (CIFAR, width x{args.width:g})" if arch == "resnet18" else f"SmallCNN (width {args.cnn_width})"


def runs(args: argparse.Namespace) -> list[tuple[str, float | None]]:
    return [("baseline", None)] + [(f"cosine λ={lam:g}", lam) for lam in args.lams]


def cam_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> dict:
    """Mean AD/AG/AI/INS/DEL (%) and seconds per image of each CAM on (x, y)."""
    model.eval()
    width = x.shape[-1]
    out = {}
    for name, cls in CAMS.items():
        cam = cls(model, layer="auto")
        t0 = time.perf_counter()
        maps = torch.cat(
            [
                cam.attribute(x[i : i + args.eval_batch], target=y[i : i + args.eval_batch], normalize=True)
                for i in range(0, len(y), args.eval_batch)
            ]
        )
        cam_seconds = (time.perf_counter() - t0) / len(y)
        yc, o = masked_confidence(model, x, maps, y, space="pixel", mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD)
        eps = torch.finfo(yc.dtype).eps
        ins = insertion(model, x, maps, y, step=8 * width, substrate="blur", klen=5, sigma=5.0)
        dele = deletion(model, x, maps, y, step=8 * width, substrate="zero")
        out[name] = {
            "AD": float((100 * (yc - o).clamp(min=0) / (yc + eps)).mean()),
            "AG": float((100 * (o - yc).clamp(min=0) / (1 - yc + eps)).mean()),
            "AI": float((100 * (o > yc).double()).mean()),
            "INS": float(100 * ins.mean()),
            "DEL": float(100 * dele.mean()),
            "cam_ms_per_image": 1e3 * cam_seconds,
        }
    return out


def step_times(arch: str, args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Median seconds of one training step (loss, backward, SGD step) per loss, interleaved."""
    losses = {"cross-entropy": ClassificationLoss()}
    losses.update({f"{e} (λ=7.5e-3)": InterpretableGradientLoss(e, lam=7.5e-3) for e in ERRORS})
    model = build(arch, args).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step(loss_fn) -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model, x, y).loss.backward()
        opt.step()

    stats = interleaved({k: (lambda f=f: step(f)) for k, f in losses.items()}, repeats=args.timing_repeats)
    return {k: s.median for k, s in stats.items()}


def fmt(v: float) -> str:
    return f"{v:.2f}"


def report(args: argparse.Namespace, results: dict, n_train: int, n_test: int, elapsed: float) -> str:
    lines = []
    lines.append("## Interpretable-gradient training on Fashion-MNIST\n")
    caption = (
        f"Fashion-MNIST, {n_train} training images (first {n_train} of the training set), {args.epochs} epoch(s), "
        f"paper recipe (SGD lr {args.lr:g}, momentum 0.9, weight decay 5e-4, LR x0.2 at 30/60/80 % of the epochs, "
        f"batch {args.batch}), seed {args.seed}, same initialisation for every loss; cosine error, "
        f"λ in {{{', '.join(f'{v:g}' for v in args.lams)}}}. Accuracy on {n_test:,} test images; CAM metrics on the "
        f"first {args.n_test} test images explained for their true class, last conv block, min-max maps "
        "(AD/AG/AI: masked image = normalise(denormalise(x) * S); insertion from a 5x5 σ=5 blur, deletion to zeros, "
        f"{8 * 28} pixels per step), in %. Scaled down from the paper (CIFAR-100, 200 epochs, full width) to fit "
        f"about an hour on 2 CPU cores; this run took {elapsed / 60:.1f} min."
    )
    lines.append(f"*{caption}*\n")
    lines.append("### Accuracy (Table 1 shape)\n")
    lines.append("| model | training | test accuracy (%) | final train loss | train regulariser |")
    lines.append("|---|---|---|---|---|")
    for arch in args.models:
        for tag, _ in runs(args):
            r = results[arch]["runs"][tag]
            lines.append(
                f"| {arch_label(arch, args)} | {tag} | {100 * r['test_accuracy']:.2f} | {r['train_loss']:.4f} | "
                f"{r['train_regulariser']:.4f} |"
            )
    lines.append("")
    for arch in args.models:
        lines.append(f"### CAM faithfulness, {arch_label(arch, args)} (Table 2 shape)\n")
        lines.append("| method | training | " + " | ".join(f"{m}{d}" for m, d in METRICS) + " |")
        lines.append("|---|---|" + "---|" * len(METRICS))
        for cam in CAMS:
            for tag, _ in runs(args):
                m = results[arch]["runs"][tag]["cams"][cam]
                lines.append(f"| {cam} | {tag} | " + " | ".join(fmt(m[k]) for k, _ in METRICS) + " |")
        lines.append("")
        lines.append("Direction check against the baseline (paper: AD, AG, AI, INS better; DEL slightly worse):\n")
        lines.append("| training | AD better | AG better | AI better | INS better | DEL better | mean ΔAD | mean ΔAG |")
        lines.append("|---|---|---|---|---|---|---|---|")
        base = results[arch]["runs"]["baseline"]["cams"]
        for tag, lam in runs(args):
            if lam is None:
                continue
            cams = results[arch]["runs"][tag]["cams"]
            cells = []
            for k, d in METRICS:
                better = sum((cams[c][k] < base[c][k]) if d == "↓" else (cams[c][k] > base[c][k]) for c in CAMS)
                cells.append(f"{better}/{len(CAMS)}")
            dad = sum(cams[c]["AD"] - base[c]["AD"] for c in CAMS) / len(CAMS)
            dag = sum(cams[c]["AG"] - base[c]["AG"] for c in CAMS) / len(CAMS)
            lines.append(f"| {tag} | " + " | ".join(cells) + f" | {dad:+.2f} | {dag:+.2f} |")
        lines.append("")
    lines.append(f"### Time per training step (batch {args.batch}, interleaved medians of {args.timing_repeats})\n")
    lines.append("| model | loss | ms / step | × cross-entropy |")
    lines.append("|---|---|---|---|")
    for arch in args.models:
        t = results[arch]["step_seconds"]
        for k, v in t.items():
            lines.append(f"| {arch_label(arch, args)} | {k} | {1e3 * v:.1f} | {v / t['cross-entropy']:.2f} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--models", nargs="+", default=["resnet18", "small_cnn"], choices=["resnet18", "small_cnn"])
    ap.add_argument("--train-limit", type=int, default=10000, help="training images (first N of the training set)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--width", type=float, default=0.25, help="ResNet-18 width multiplier")
    ap.add_argument("--cnn-width", type=int, default=8, help="SmallCNN width")
    ap.add_argument("--lams", type=float, nargs="+", default=[2.5e-3, 7.5e-3, 2.5e-2])
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--n-test", type=int, default=1000, help="test images for the CAM metrics")
    ap.add_argument("--eval-batch", type=int, default=100, help="images per CAM call")
    ap.add_argument("--timing-repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/interpretable_training"))
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args()
    if args.quick:
        args.train_limit, args.epochs, args.n_test, args.eval_batch = 128, 1, 8, 8
        args.width, args.cnn_width, args.timing_repeats, args.batch = 0.125, 4, 1, 16
        args.lams = args.lams[:3]
        args.out = args.out.with_name(args.out.name + "_quick")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    train = load_fashion_mnist("train", normalize=True, limit=args.train_limit)
    test = load_fashion_mnist("test", normalize=True, limit=1000 if args.quick else None)
    x_eval, y_eval = test.images[: args.n_test], test.labels[: args.n_test]

    results: dict = {}
    for arch in args.models:
        results[arch] = {"runs": {}}
        for tag, lam in runs(args):
            loss_fn = None if lam is None else InterpretableGradientLoss("cosine", lam=lam)
            slug = "baseline" if lam is None else f"cosine_{lam:g}"
            width = args.width if arch == "resnet18" else args.cnn_width
            print(f"== {arch_label(arch, args)}: {tag}", flush=True)
            r = fit(
                build(arch, args),
                train,
                test,
                epochs=args.epochs,
                loss_fn=loss_fn,
                lr=args.lr,
                batch_size=args.batch,
                checkpoint_dir=args.out / "checkpoints" / f"{arch}_w{width:g}_n{len(train)}" / slug,
                resume=not args.quick,
                seed=args.seed,
                quiet=args.quiet,
            )
            rec = dict(r.final)
            rec["history"] = r.history
            print(f"   test accuracy {100 * rec['test_accuracy']:.2f} %; explaining {args.n_test} images", flush=True)
            rec["cams"] = cam_metrics(r.model, x_eval, y_eval, args)
            results[arch]["runs"][tag] = rec
        xb, yb = train.images[: args.batch], train.labels[: args.batch]
        results[arch]["step_seconds"] = step_times(arch, args, xb, yb)

    text = report(args, results, len(train), len(test), time.perf_counter() - start)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text)
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "results.json").write_text(json.dumps({"config": cfg, "results": results}, indent=1))
    if not all(math.isfinite(results[a]["runs"][t]["test_accuracy"]) for a in args.models for t, _ in runs(args)):
        raise SystemExit("non-finite accuracy")


if __name__ == "__main__":
    main()
