"""Does interpretable-gradient training (spec § 4) make CAMs more faithful on Fashion-MNIST?
Several seeds, mean ± standard error, differences from the baseline with their s.e.

The shape of the paper's Tables 1-3 (CIFAR-100 there), scaled to 2 CPU cores:

- CIFAR-style ResNet-18 (1 input channel, width ``--width``): baseline (cross-entropy) and the
  cosine loss at λ = 0.025 and 0.0075, seeds 0, 1, 2;
- CIFAR-style MobileNet-V2 (width ``--mobilenet-width``): baseline and the cosine loss at
  ``--mobilenet-lam``, seeds 0, 1;
- Table 3 ablation on ResNet-18 at λ = 0.025, seed 0: the errors histogram intersection
  (``hi``), MAE and MSE (run before MobileNet-V2, whose double backward is the slowest);

each with the paper's recipe (SGD lr 0.1, momentum 0.9, weight decay 5e-4, LR x0.2 at
30/60/80 % of the epochs, batch 128) on the first ``--train-limit`` training images for
``--epochs`` epochs; one seed gives the same initialisation and data order to every loss, so
differences are paired by seed. Test accuracy on the 10,000 test images; CAM metrics
(Grad-CAM, Grad-CAM++, Score-CAM, Ablation-CAM, XGrad-CAM) on the first ``--n-test`` test
images for their true class with the authors' protocol (:mod:`cleargrad.evaluation.train_eval`).

Resumable run by run: every finished run is written to ``--out``/runs/NAME.json and skipped
when the script is started again; a run killed mid-training resumes from its last epoch
checkpoint. The report (``results.md``, ``results.json``) is rewritten after every run from
whatever runs exist, so partial results can be committed as they come.

    python benchmarks/interpretable_training.py                 # the full plan (~2.5 h on 2 quiet cores)
    python benchmarks/interpretable_training.py --only resnet18 # one part of it
    python benchmarks/interpretable_training.py --quick         # smoke run (~1 min)
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

from cleargrad.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, load_fashion_mnist  # noqa: E402
from cleargrad.evaluation.train_eval import CAMS, METRICS, cam_faithfulness  # noqa: E402
from cleargrad.models import cifar_mobilenet_v2, cifar_resnet18  # noqa: E402
from cleargrad.training import InterpretableGradientLoss, fit  # noqa: E402

ARROW = {"lower": "↓", "higher": "↑"}
#: a standard error from 2 seeds has one degree of freedom: differences are marked from 3 seeds on
MIN_SEEDS_FOR_MARKS = 3


def plan(args: argparse.Namespace) -> list[dict]:
    """The runs, most informative first (so a partial run already answers the main question)."""
    runs = []
    seeds = range(args.seeds)
    # ResNet-18: baseline and the paper's cosine loss, the first lambda for every seed before the next lambda
    for seed in seeds:
        runs.append({"arch": "resnet18", "error": None, "lam": 0.0, "seed": seed})
        runs.append({"arch": "resnet18", "error": "cosine", "lam": args.lams[0], "seed": seed})
    for lam in args.lams[1:]:
        for seed in seeds:
            runs.append({"arch": "resnet18", "error": "cosine", "lam": lam, "seed": seed})
    for error in ("hi", "mae", "mse"):  # Table 3: the other error functions at the best lambda, one seed
        runs.append({"arch": "resnet18", "error": error, "lam": args.ablation_lam, "seed": 0})
    for seed in range(args.mobilenet_seeds):
        runs.append({"arch": "mobilenet_v2", "error": None, "lam": 0.0, "seed": seed})
        runs.append({"arch": "mobilenet_v2", "error": "cosine", "lam": args.mobilenet_lam, "seed": seed})
    if args.only:
        runs = [r for r in runs if r["arch"] in args.only]
    if args.runs:  # e.g. a second process on another core takes other runs of the plan
        runs = [r for r in runs if run_name(r) in args.runs]
    return runs


def run_name(r: dict) -> str:
    setting = "baseline" if r["error"] is None else f"{r['error']}_{r['lam']:g}"
    return f"{r['arch']}_{setting}_s{r['seed']}"


def setting_label(r: dict) -> str:
    return "baseline" if r["error"] is None else f"{r['error']} λ={r['lam']:g}"


def build(arch: str, seed: int, args: argparse.Namespace) -> nn.Module:
    torch.manual_seed(seed)
    if arch == "resnet18":
        return cifar_resnet18(in_channels=1, num_classes=10, width=args.width)
    return cifar_mobilenet_v2(in_channels=1, num_classes=10, width=args.mobilenet_width)


def arch_label(arch: str, args: argparse.Namespace) -> str:
    if arch == "resnet18":
        return f"ResNet-18 (CIFAR, width x{args.width:g})"
    return f"MobileNet-V2 (CIFAR, width x{args.mobilenet_width:g})"


def do_run(r: dict, train, test, x_eval, y_eval, args: argparse.Namespace) -> dict:
    loss_fn = None if r["error"] is None else InterpretableGradientLoss(r["error"], lam=r["lam"])
    t0 = time.perf_counter()
    res = fit(
        build(r["arch"], r["seed"], args),
        train,
        test,
        epochs=args.epochs,
        loss_fn=loss_fn,
        lr=args.lr,
        batch_size=args.batch,
        checkpoint_dir=args.out / "checkpoints" / run_name(r),
        resume=not args.quick,
        seed=r["seed"],
        quiet=args.quiet,
    )
    train_seconds = time.perf_counter() - t0
    model = res.model.eval()
    n_eval = n_eval_images(r["arch"], args)
    cams = cam_faithfulness(
        model, x_eval[:n_eval], y_eval[:n_eval], mean=(FASHION_MNIST_MEAN,), std=(FASHION_MNIST_STD,),
        batch_size=args.eval_batch,
    )
    return {
        **r,
        "test_accuracy": res.final["test_accuracy"],
        "final_train_loss": res.final["train_loss"],
        "final_regulariser": res.final["train_regulariser"],
        "train_seconds_this_sitting": train_seconds,
        "train_seconds": sum(h["seconds"] for h in res.history),
        "step_ms": 1e3 * sum(h["step_seconds"] for h in res.history) / len(res.history),
        # a blank (all-zero) CAM map is NaN for every metric: mean over the others, count them
        "cams": {c: {k: float(v[k].nanmean()) for k in METRICS} for c, v in cams.items()},
        "cam_blank_maps": {c: v["n_blank"] for c, v in cams.items()},
        "cam_ms_per_image": {c: 1e3 * v["seconds_per_image"] for c, v in cams.items()},
        "cam_images": n_eval,
    }


def n_eval_images(arch: str, args: argparse.Namespace) -> int:
    """Test images of the CAM metrics for this architecture."""
    if arch == "mobilenet_v2" and args.mobilenet_n_test is not None:
        return args.mobilenet_n_test
    return args.n_test


def mean_se(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, float("nan")
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1) / n)


def fmt_ms(m: float, se: float, scale: float = 1.0) -> str:
    return f"{scale * m:.2f}" if math.isnan(se) else f"{scale * m:.2f} ± {scale * se:.2f}"


def report(done: list[dict], args: argparse.Namespace, elapsed: float) -> str:
    lines = ["## Interpretable-gradient training on Fashion-MNIST (several seeds)\n"]
    lines.append(
        f"*Fashion-MNIST, first {args.train_limit} training images, {args.epochs} epochs, paper recipe (SGD lr "
        f"{args.lr:g}, momentum 0.9, wd 5e-4, LR x0.2 at 30/60/80 %, batch {args.batch}). Accuracy on the 10,000 test "
        "images; CAM metrics (%) on the first test images (how many: in each CAM table's title) for their true class "
        "(authors' protocol, "
        "`cleargrad.evaluation.train_eval`). Cells: mean ± standard error across seeds; Δ: mean of the per-seed "
        "differences from the baseline of the same seed (same initialisation and data order) ± its s.e.; "
        "**bold** Δ: better than the baseline by more than 2 s.e., _italic_: worse by more than 2 s.e. (marked only "
        f"with at least {MIN_SEEDS_FOR_MARKS} seeds: a s.e. from 2 seeds has one degree of freedom). "
        f"{len(done)} run(s) finished" + (f"; this sitting took {elapsed / 60:.1f} min.*\n" if elapsed else ".*\n")
    )
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in done:
        groups.setdefault((r["arch"], setting_label(r)), []).append(r)
    for arch in ("resnet18", "mobilenet_v2"):
        settings = [s for (a, s) in groups if a == arch]
        if not settings:
            continue
        settings.sort(key=lambda s: (s != "baseline", s))
        base = {r["seed"]: r for r in groups.get((arch, "baseline"), [])}
        lines.append(f"### {arch_label(arch, args)}: accuracy\n")
        lines.append("| training | seeds | test accuracy (%) | Δ accuracy | ms / step (loaded machine) |")
        lines.append("|---|---|---|---|---|")
        for s in settings:
            rs = groups[(arch, s)]
            acc = mean_se([r["test_accuracy"] for r in rs])
            d = delta([r for r in rs], base, lambda r: r["test_accuracy"])
            step = mean_se([r["step_ms"] for r in rs])
            lines.append(
                f"| {s} | {','.join(str(r['seed']) for r in rs)} | {fmt_ms(*acc, 100)} | "
                f"{fmt_delta(d, 'higher', 100) if s != 'baseline' else '–'} | {step[0]:.0f} |"
            )
        lines.append("")
        n_imgs = sorted({r.get("cam_images", args.n_test) for a_s, rs in groups.items() if a_s[0] == arch for r in rs})
        lines.append(f"### {arch_label(arch, args)}: CAM faithfulness (%), first {'/'.join(map(str, n_imgs))} "
                     "test images\n")
        lines.append("| CAM | training | " + " | ".join(f"{k}{ARROW[d]}" for k, d in METRICS.items()) + " |")
        lines.append("|---|---|" + "---|" * len(METRICS))
        for cam in CAMS:
            for s in settings:
                rs = groups[(arch, s)]
                cells = []
                for k, direction in METRICS.items():
                    cell = fmt_ms(*mean_se([r["cams"][cam][k] for r in rs]))
                    if s != "baseline":
                        d = delta(rs, base, lambda r, k=k, cam=cam: r["cams"][cam][k])
                        cell += f" (Δ {fmt_delta(d, direction)})"
                    cells.append(cell)
                lines.append(f"| {cam} | {s} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(
            "CAMs (of 5) where the setting beats the baseline by more than 2 s.e. / is worse by more than 2 s.e.:\n"
        )
        lines.append("| training | " + " | ".join(f"{k}{ARROW[d]}" for k, d in METRICS.items()) + " |")
        lines.append("|---|" + "---|" * len(METRICS))
        for s in settings:
            if s == "baseline":
                continue
            rs = groups[(arch, s)]
            cells = []
            for k, direction in METRICS.items():
                better = worse = 0
                for cam in CAMS:
                    d = delta(rs, base, lambda r, k=k, cam=cam: r["cams"][cam][k])
                    if d is None or math.isnan(d[1]) or d[2] < MIN_SEEDS_FOR_MARKS:
                        continue
                    if abs(d[0]) > 2 * d[1]:
                        good = d[0] > 0 if direction == "higher" else d[0] < 0
                        better += good
                        worse += not good
                cells.append(f"{better} / {worse}")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def delta(rs: list[dict], base: dict[int, dict], value) -> tuple[float, float, int] | None:
    diffs = [value(r) - value(base[r["seed"]]) for r in rs if r["seed"] in base]
    if not diffs:
        return None
    m, se = mean_se(diffs)
    return m, se, len(diffs)


def fmt_delta(d: tuple[float, float, int] | None, direction: str, scale: float = 1.0) -> str:
    if d is None:
        return "no baseline"
    m, se, n = d
    if math.isnan(se):
        return f"{scale * m:+.2f} (1 seed)"
    text = f"{scale * m:+.2f} ± {scale * se:.2f}"
    if n < MIN_SEEDS_FOR_MARKS:
        return f"{text} ({n} seeds)"
    if abs(m) > 2 * se:
        good = m > 0 if direction == "higher" else m < 0
        return f"**{text}**" if good else f"_{text}_"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--only", nargs="+", choices=["resnet18", "mobilenet_v2"], default=None)
    ap.add_argument("--runs", nargs="+", default=None,
                    help="only these runs of the plan, by name (e.g. mobilenet_v2_baseline_s1)")
    ap.add_argument("--seeds", type=int, default=3, help="ResNet-18 seeds")
    ap.add_argument("--lams", type=float, nargs="+", default=[0.025, 0.0075], help="ResNet-18 cosine lambdas")
    ap.add_argument("--mobilenet-seeds", type=int, default=2)
    ap.add_argument("--mobilenet-lam", type=float, default=0.025)
    ap.add_argument("--ablation-lam", type=float, default=0.025)
    ap.add_argument("--train-limit", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--width", type=float, default=0.25, help="ResNet-18 width multiplier")
    ap.add_argument("--mobilenet-width", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--n-test", type=int, default=1000, help="test images for the CAM metrics")
    ap.add_argument("--mobilenet-n-test", type=int, default=None,
                    help="test images for MobileNet-V2's CAM metrics (default: --n-test); its last layer has "
                    "1280 channels, so Score-CAM and Ablation-CAM cost 10x the ResNet's per image")
    ap.add_argument("--eval-batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/interpretable_training"))
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--report-only", action="store_true", help="rewrite results.md from the finished runs")
    args = ap.parse_args()
    if args.quick:
        args.train_limit, args.epochs, args.n_test, args.eval_batch = 64, 1, 4, 4
        args.width, args.mobilenet_width, args.batch = 0.125, 0.25, 16
        args.seeds, args.mobilenet_seeds = 2, 1
        args.out = args.out.with_name(args.out.name + "_quick")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.report_only:
        done = [json.loads(p.read_text())["run"] for p in sorted((args.out / "runs").glob("*.json"))]
        text = report(done, args, 0.0)
        (args.out / "results.md").write_text(text + "\n")
        print(text)
        return
    train = load_fashion_mnist("train", normalize=True, limit=args.train_limit)
    test = load_fashion_mnist("test", normalize=True, limit=200 if args.quick else None)
    x_eval, y_eval = test.images[: args.n_test], test.labels[: args.n_test]
    run_dir = args.out / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    for r in plan(args):
        path = run_dir / f"{run_name(r)}.json"
        if path.exists() and not args.quick:
            continue
        print(f"== {arch_label(r['arch'], args)}: {setting_label(r)}, seed {r['seed']}", flush=True)
        rec = do_run(r, train, test, x_eval, y_eval, args)
        print(f"   test accuracy {100 * rec['test_accuracy']:.2f} %", flush=True)
        if not math.isfinite(rec["test_accuracy"]):
            raise SystemExit(f"non-finite accuracy in {run_name(r)}")
        path.write_text(json.dumps({"config": config, "run": rec}, indent=1))
        done = [json.loads(p.read_text())["run"] for p in sorted(run_dir.glob("*.json"))]
        text = report(done, args, time.perf_counter() - start)
        (args.out / "results.md").write_text(text + "\n")
        (args.out / "results.json").write_text(json.dumps({"config": config, "runs": done}, indent=1))
    done = [json.loads(p.read_text())["run"] for p in sorted(run_dir.glob("*.json"))]
    print(report(done, args, time.perf_counter() - start))


if __name__ == "__main__":
    main()
