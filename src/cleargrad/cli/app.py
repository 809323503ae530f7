"""The ``cleargrad`` command (typer): demo, explain, evaluate, gad fit, export, report, methods, train.

Exit codes: 0 success; 2 usage error (bad option, unknown method or metric: the message
lists the valid names); 1 run error, reported in one line (``--debug`` shows the
traceback).

Start-up: this module imports typer and rich only; every command imports what it needs
when it runs, so ``--help`` does not load PyTorch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from ..errors import ConfigError
from ..evaluation.console import UI

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(
    name="cleargrad",
    help="Explain image classifiers with gradient methods, measure how faithful the explanations are, "
    "and report the results.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only results and errors (no progress bars).")]
Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="'package.module:factory', 'path/to/file.py:factory', or a built-in name "
        "(small-cnn, cifar-resnet18, cifar-mobilenet-v2, small-cnn-fashion-mnist = the shipped trained SmallCNN). "
        "A module or file is imported, which runs its code: name only files you trust. "
        "'hf:PATH': a HuggingFace image classifier built from PATH (a config.json, or a save_pretrained "
        "folder: its weights too), never downloaded.",
    ),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--weights", "-w", help="State dict: .safetensors, or a torch.save file (loaded with weights_only=True)."
    ),
]
LayerOpt = Annotated[str, typer.Option("--layer", help="Target layer of CAM methods: dotted name or 'auto'.")]
ReshapeOpt = Annotated[
    str,
    typer.Option(
        "--reshape",
        help="How CAMs read a transformer layer: auto (detect tokens / channels-last), none, channels_last, "
        "tokens, tokens:P (P prefix tokens) or tokens:P:HxW.",
    ),
]
OptionOpt = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", help="Method option METHOD.KEY=VALUE (or KEY=VALUE for all); repeatable."),
]
SizeOpt = Annotated[
    int | None,
    typer.Option("--size", help="Model input size SIZE×SIZE (default: 28 for 1-channel models, else 224)."),
]
ResizeOpt = Annotated[
    str,
    typer.Option(
        "--resize",
        help="'crop': scale the shorter side (aspect ratio kept), then cut the centre SIZE×SIZE, as torchvision "
        "does; 'squash': scale both sides to SIZE (distorts non-square images).",
    ),
]
CropOpt = Annotated[
    float | None,
    typer.Option(
        "--crop-fraction",
        help="With --resize crop: share of the scaled image kept (default 0.875 for RGB at 224, i.e. "
        "shorter side 256 then centre 224 as for torchvision's ImageNet weights; else 1).",
    ),
]
GadOpt = Annotated[
    Path | None,
    typer.Option("--gad", help="Folder written by `cleargrad gad fit`, for methods gad:BASE (e.g. gad:saliency)."),
]
ClassNamesOpt = Annotated[
    Path | None,
    typer.Option("--class-names", help="Text file of class names, one per line (line i = class i)."),
]
GrayOpt = Annotated[
    bool | None, typer.Option("--grayscale/--rgb", help="Colour mode (default: from the model's first convolution).")
]
MeanOpt = Annotated[
    str | None, typer.Option("--mean", help="Per-channel mean, comma-separated (default: Fashion-MNIST or ImageNet).")
]
StdOpt = Annotated[str | None, typer.Option("--std", help="Per-channel std, comma-separated.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per batch.")]
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Seed of every random draw (model init, sampling methods, metrics).")
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="Torch device: auto (CUDA when available, else CPU), cpu, cuda, cuda:1, ...")
]
TargetOpt = Annotated[
    str,
    typer.Option(
        "--target",
        help="What each image is explained for: auto (the prediction), label (the class sub-folder), a class "
        "index K or class:K (logit), softmax:K (probability; softmax alone: of the prediction), binary or "
        "binary:0 (a binary output, positive or negative), labels:3,7 (sum of several classes' logits), seg:K "
        "(segmentation: class K over the pixels the model predicts as K), box:I (a detector's detection I, "
        "IoU-matched box score), regression:I (output column I). See docs/guides/targets.md.",
    ),
]
OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        help="The part of the model's output that is scored, for models returning a dict, tuple or object: "
        "a key (out for torchvision segmentation, logits for Hugging Face), an index or an attribute.",
    ),
]


class RunError(RuntimeError):
    """A failure to report in one line with exit code 1."""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _guard(debug: bool, quiet: bool, fn: Callable[[UI], T], registries: bool = True) -> T:
    """Run a command body: map errors to exit codes and one-line messages.

    ``registries``: import the method and metric families first (commands that only read
    a store, such as ``export``, skip it and never load PyTorch)."""
    ui = UI(quiet=quiet, rank=int(os.environ.get("RANK", "0")))  # torchrun's rank (as engine.shard_from_env)
    try:
        if registries:
            from ..evaluation.explainers import load_registries

            load_registries()
        return fn(ui)
    except typer.Exit:
        raise
    except ConfigError as e:
        if debug:
            raise
        ui.err.print(f"usage error: {_one_line(e)}", markup=False, emoji=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        ui.err.print("interrupted", markup=False)
        raise typer.Exit(130) from None
    except Exception as e:
        if debug:
            raise
        ui.err.print(f"error: {_one_line(e)}", markup=False, emoji=False)
        raise typer.Exit(1) from None


def _print_version(value: bool) -> None:
    # eager: runs while the options are parsed, before click asks for a command
    if value:
        from .. import __version__

        typer.echo(f"cleargrad {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version)
    ] = False,
) -> None:
    """cleargrad: sharper, more faithful gradient explanations of image classifiers."""


@app.command("methods")
def methods_cmd(quiet: Quiet = False, debug: Debug = False) -> None:
    """List the explanation methods and the metrics with one-line descriptions."""
    from .tables import print_methods

    _guard(debug, quiet, print_methods)


@app.command("explain")
def explain_cmd(
    model: ModelOpt,
    images: Annotated[list[Path], typer.Option("--images", "-i", help="Image file or folder; repeatable.")],
    method: Annotated[
        list[str],
        typer.Option(
            "--method", "--methods", help="Method name(s), comma-separated or repeated; gad:BASE needs --gad."
        ),
    ],
    weights: WeightsOpt = None,
    target: TargetOpt = "auto",
    output: OutputOpt = None,
    layer: LayerOpt = "auto",
    reshape: ReshapeOpt = "auto",
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("explanations"),
    gad: GadOpt = None,
    class_names: ClassNamesOpt = None,
    plain: Annotated[
        bool, typer.Option("--plain", help="Write bare overlays (no input panel, colour bar or caption).")
    ] = False,
    option: OptionOpt = None,
    size: SizeOpt = None,
    resize: ResizeOpt = "crop",
    crop_fraction: CropOpt = None,
    grayscale: GrayOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    batch_size: BatchOpt = 16,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Explain images with one or more methods.

    Writes per image and method a figure (input, map with colour bar, caption naming the
    method, class and probability) and the raw map as .npy, plus manifest.csv and
    manifest.json listing every file with its input, explained class and probability.
    """

    def body(ui: UI) -> None:
        from ..evaluation.explain_run import class_names_from, explain_images, read_class_names
        from ..evaluation.explainers import check_global_options, parse_options, split_names
        from ..evaluation.images import check_model_takes, default_preprocess, image_set
        from ..evaluation.prepare import (
            build_explainers,
            builtin_class_names,
            file_digest,
            gad_identity,
            load_run_model,
            parse_floats,
            parse_target,
            reference_images,
            report_skipped,
            resolve_run_device,
        )
        from ..evaluation.targets import parse_output

        names = [n for m in method for n in split_names(m)]
        if not names:
            raise ConfigError("give at least one --method")
        opts = parse_options(option or [])
        tgt = parse_target(target, allow_label=True)
        selector = parse_output(output)
        dev = resolve_run_device(device)
        net = load_run_model(model, weights, seed, dev, ui)
        prep = default_preprocess(
            net, size, grayscale, parse_floats(mean, "mean"), parse_floats(std, "std"), resize, crop_fraction
        )
        data = image_set(images, prep)
        if tgt == "label" or getattr(tgt, "rule", None) == "label":
            data.check_labels()
        refs = reference_images(data, prep)
        check_model_takes(net, refs)
        explainers = build_explainers(net, names, gad, layer, reshape, opts, refs, output=selector)
        check_global_options(opts, explainers)
        labels = (
            read_class_names(class_names)
            if class_names
            else (class_names_from(data) or builtin_class_names(model, weights))
        )
        run = {
            "command": "explain",
            "model": model,
            "weights": str(weights) if weights else None,
            "weights_sha256": file_digest(weights),
            "weights_used": str(weights) if weights else (
                "shipped reference weights" if builtin_class_names(model) else "random init"
            ),
            "class_names_used": list(labels) if labels else None,
            "gad": gad_identity(gad),
            "images": [str(p) for p in images],
            "preprocess": prep.as_dict(),
            "target": tgt if isinstance(tgt, str | int) else str(tgt),
            "output": output,
            "layer": layer,
            "class_names": str(class_names) if class_names else None,
            "method_options": {e.name: e.options for e in explainers},
            "seed": seed,
            "device": str(dev),
        }
        rows = explain_images(
            net, data, explainers, out, target=tgt, batch_size=batch_size, seed=seed, class_names=labels,
            plain=plain, run=run, ui=ui, output=selector,
        )
        n_ok = len({r.image_id for r in rows})
        ui.out.print(
            f"{len(rows)} explanation(s) of {n_ok} image(s) written to {out} (index: {out / 'manifest.csv'})",
            markup=False,
        )
        report_skipped(ui, data.skipped)

    _guard(debug, quiet, body)


@app.command("evaluate")
def evaluate_cmd(
    model: ModelOpt,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="'fashion-mnist' (test split) or an image folder.")],
    methods: Annotated[str, typer.Option("--methods", "--method", help="Comma-separated method names.")],
    metrics: Annotated[str, typer.Option("--metrics", help="Comma-separated metric names.")],
    store: Annotated[Path, typer.Option("--store", "-s", help="SQLite results file (created or resumed).")],
    weights: WeightsOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use only the first N images.")] = None,
    target: TargetOpt = "auto",
    output: OutputOpt = None,
    layer: LayerOpt = "auto",
    reshape: ReshapeOpt = "auto",
    reference: Annotated[
        str | None, typer.Option("--reference", help="Method whose map region_complexity compares against.")
    ] = None,
    option: OptionOpt = None,
    metric_option: Annotated[
        list[str] | None, typer.Option("--metric-option", help="Metric option METRIC.KEY=VALUE; repeatable.")
    ] = None,
    gallery: Annotated[
        int, typer.Option("--gallery", min=0, help="Images whose overlays are kept for the report.")
    ] = 8,
    overlays: Annotated[Path | None, typer.Option("--overlays", help="Also write every overlay PNG here.")] = None,
    gad: GadOpt = None,
    classes: Annotated[
        str | None,
        typer.Option("--classes", help="Use only images of these classes (comma-separated indices or names)."),
    ] = None,
    size: SizeOpt = None,
    resize: ResizeOpt = "crop",
    crop_fraction: CropOpt = None,
    grayscale: GrayOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    batch_size: BatchOpt = 16,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    compile_: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="Run the metrics' forward passes through torch.compile (pays on long runs; eager with a "
            "warning if compilation fails).",
        ),
    ] = False,
    metric_batch_size: Annotated[
        int | None,
        typer.Option("--metric-batch-size", min=1, help="Images per forward pass of the metrics (bounds memory)."),
    ] = None,
    fold_batchnorm: Annotated[
        bool,
        typer.Option(
            "--fold-batchnorm/--no-fold-batchnorm",
            help="Run the metrics' forward passes (and Score-CAM's masked passes) on a copy of the model with its "
            "batch norms folded into the layers before them (faster; equal to float rounding).",
        ),
    ] = True,
    class_names: ClassNamesOpt = None,
    random_control: Annotated[
        bool,
        typer.Option(
            "--random-control",
            help="Also score a random map (method 'random', seeded per image) as a control: the summary and the "
            "report then flag every metric that cannot tell the methods from it.",
        ),
    ] = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Score methods with metrics, one row per image, method and metric, into a resumable SQLite store.

    Rerunning the same command skips the rows already stored. Under
    `torchrun --nproc_per_node K -m cleargrad evaluate ...` each process takes a shard.
    GAD runs as gad:BASE with --gad DIR; its region metrics compare it with BASE.
    The terminal shows a summary; `cleargrad report STORE` shows every value.
    """

    params = dict(locals())  # first statement: exactly the options, one settings field each

    def body(ui: UI) -> None:
        from ..evaluation.run import EvaluationSettings, run_evaluate
        from .tables import print_results

        settings = EvaluationSettings.from_command(params, ignore=("quiet", "debug"))
        run_evaluate(settings, ui, show=lambda st, h: print_results(ui, st, h, str(store)))

    _guard(debug, quiet, body)


@app.command("train")
def train_cmd(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Built-in architecture (small-cnn, cifar-resnet18, cifar-mobilenet-v2; built for the data's "
            "channels and classes) or 'package.module:factory' / 'file.py:factory' (this runs that file's code).",
        ),
    ],
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="'fashion-mnist' or a folder of class sub-folders.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, model.safetensors, history.json.")],
    loss: Annotated[
        str, typer.Option("--loss", help="cosine | mse | mae | hi (interpretable-gradient loss) or ce (baseline).")
    ] = "cosine",
    lam: Annotated[float, typer.Option("--lam", help="Weight of the gradient term (ignored with --loss ce).")] = 7.5e-3,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 10,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate (default: the paper's 0.1 for SGD).")] = None,
    optimizer: Annotated[str | None, typer.Option("--optimizer", help="sgd (default) or adam.")] = None,
    schedule: Annotated[str, typer.Option("--schedule", help="step (x0.2 at 30/60/80 %) or cosine.")] = "step",
    warmup_epochs: Annotated[int, typer.Option("--warmup-epochs", help="Linear LR warm-up epochs.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Training batch size.")] = 128,
    width: Annotated[float | None, typer.Option("--width", help="Width multiplier of a built-in model.")] = None,
    train_limit: Annotated[int | None, typer.Option("--train-limit", help="Use the first N training images.")] = None,
    test_dataset: Annotated[
        str | None, typer.Option("--test-dataset", help="Folder of test images (default: a seeded hold-out split).")
    ] = None,
    holdout: Annotated[float, typer.Option("--holdout", help="Hold-out fraction of a folder dataset.")] = 0.2,
    size: SizeOpt = None,
    grayscale: GrayOpt = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="Folder of a finished baseline run to compare against.")
    ] = None,
    evaluate: Annotated[
        bool, typer.Option("--evaluate", help="Also compare CAM metrics (AD/AG/AI/insertion/deletion).")
    ] = False,
    eval_images: Annotated[int, typer.Option("--eval-images", help="Test images for --evaluate.")] = 500,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Train a model with the interpretable-gradient loss (or --loss ce for a baseline); resumable.

    Rerunning the same command after an interruption resumes after the last finished epoch.
    """

    def body(ui: UI) -> None:
        from ..evaluation.prepare import resolve_run_device
        from .train import TrainSettings, run_training

        run_training(
            TrainSettings(
                model=model,
                dataset=dataset,
                out=out,
                loss=loss.strip().lower(),
                lam=lam,
                epochs=epochs,
                lr=lr,
                optimizer=optimizer,
                schedule=schedule.strip().lower(),
                warmup_epochs=warmup_epochs,
                batch_size=batch_size,
                width=width,
                train_limit=train_limit,
                test_dataset=test_dataset,
                holdout=holdout,
                size=size,
                grayscale=grayscale,
                seed=seed,
                device=str(resolve_run_device(device)),
                baseline=baseline,
                evaluate=evaluate,
                eval_images=eval_images,
            ),
            ui,
        )

    _guard(debug, quiet, body)


gad_app = typer.Typer(
    name="gad",
    help="GAD (Gradient Artificial Distancing): fit support models once, then explain with --method gad:BASE.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(gad_app, name="gad")


@gad_app.command("fit")
def gad_fit_cmd(
    model: ModelOpt,
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset", "-d", help="'fashion-mnist' (train split) or an image folder root/<class>/<image>."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (gad.json, support.safetensors, fit.json).")],
    classes: Annotated[
        str | None,
        typer.Option(
            "--classes",
            help="Classes concerned, comma-separated indices or names (pairwise: exactly two; other strategies: "
            "default every class).",
        ),
    ] = None,
    strategy: Annotated[
        str, typer.Option("--strategy", help="pairwise, one-vs-all or split (two groups of classes).")
    ] = "pairwise",
    groups: Annotated[
        str | None,
        typer.Option("--groups", help="For --strategy split: two groups, e.g. '0,2,4;1,3' (default: 2-means)."),
    ] = None,
    weights: WeightsOpt = None,
    support: Annotated[int, typer.Option("--support", min=1, help="Support models per task (paper: 4).")] = 4,
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, help="Training epochs per support model (paper: 10).")
    ] = 30,
    lr: Annotated[
        float, typer.Option("--lr", min=0.0, help="Adam learning rate of the support models (cosine decay).")
    ] = 3e-3,
    bn_mode: Annotated[
        str,
        typer.Option(
            "--bn-mode", help="train: BatchNorm uses batch statistics while fitting (default); eval: frozen."
        ),
    ] = "train",
    alphas: Annotated[
        str, typer.Option("--alphas", help="Distancing schedule: std (s × std of the logits) or margin.")
    ] = "std",
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Use at most N training images of the classes.")
    ] = None,
    class_names: ClassNamesOpt = None,
    size: SizeOpt = None,
    resize: ResizeOpt = "crop",
    crop_fraction: CropOpt = None,
    grayscale: GrayOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Training batch size.")] = 32,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Fit GAD's support models for some classes and save them to --out.

    Every support model is checkpointed as soon as it is trained: rerunning an
    interrupted command resumes it, and rerunning a finished one does nothing.
    """

    def body(ui: UI) -> None:
        from ..core.names import dashed_key
        from ..evaluation.explain_run import read_class_names
        from ..evaluation.gad_fit import GadFitSettings, run_gad_fit
        from ..evaluation.images import default_preprocess
        from ..evaluation.prepare import file_digest, load_run_model, parse_floats, resolve_run_device

        dev = resolve_run_device(device)
        net = load_run_model(model, weights, seed, dev, ui)
        fmnist = dashed_key(dataset) == "fashion-mnist"
        prep = None if fmnist else default_preprocess(
            net, size, grayscale, parse_floats(mean, "mean"), parse_floats(std, "std"), resize, crop_fraction
        )
        settings = GadFitSettings(
            dataset=dataset, out=out, classes=classes, strategy=strategy, groups=groups, n_support=support,
            epochs=epochs, lr=lr, bn_mode=bn_mode, batch_size=batch_size, alphas=alphas, limit=limit, seed=seed,
        )
        record = run_gad_fit(
            settings,
            model=net,
            model_spec={"model": model, "weights": str(weights) if weights else None,
                        "weights_sha256": file_digest(weights)},
            prep=prep,
            class_names=read_class_names(class_names) if class_names else None,
            ui=ui,
        )
        from .tables import print_gad_stats

        print_gad_stats(ui, record)
        ui.out.print(f"GAD saved to {out}; use it with --method gad:saliency --gad {out}", markup=False)

    _guard(debug, quiet, body)


@app.command("export")
def export_cmd(
    store: Annotated[Path, typer.Argument(help="SQLite results file written by evaluate or demo.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, or parquet (needs pyarrow).")] = "csv",
    out: Annotated[
        Path | None, typer.Option("--out", help="Output file (default: the store's name with .csv/.parquet).")
    ] = None,
    settings: Annotated[str | None, typer.Option("--settings", help="Only the run with this settings hash.")] = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Export a results store as one flat table: one row per image, method and metric value.

    The run settings behind each settings_hash go to <out>.runs.json beside it.
    """

    def body(ui: UI) -> None:
        from .export import export_store

        path = export_store(store, fmt, out, settings)
        ui.out.print(str(path), markup=False)

    _guard(debug, quiet, body, registries=False)


@app.command("report")
def report_cmd(
    store: Annotated[
        Path, typer.Argument(help="SQLite results file written by evaluate or demo.", exists=True, dir_okay=False)
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="HTML file (default: report.html beside the store).")
    ] = None,
    gallery: Annotated[int, typer.Option("--gallery", min=0, help="Images shown in the gallery.")] = 8,
    settings: Annotated[str | None, typer.Option("--settings", help="Settings hash of the run to show.")] = None,
    title: Annotated[str, typer.Option("--title", help="Page title.")] = "cleargrad report",
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Write a self-contained HTML report of a results store."""

    def body(ui: UI) -> None:
        from ..evaluation.verdict import NO_CONTROL, verdict_table
        from ..report import build_report

        path = build_report(store, out, gallery=gallery, settings=settings, title=title)
        try:
            if not verdict_table(store, settings).available:
                ui.info(f"the report has no random-map verdict: {NO_CONTROL}")
        except ConfigError:  # a metric with no recorded direction: the page says what it can
            pass
        ui.out.print(str(path), markup=False)

    _guard(debug, quiet, body)


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("demo-out"),
    n_images: Annotated[int, typer.Option("--images", min=1, help="Fashion-MNIST test images to explain.")] = 16,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Train the SmallCNN again (minutes) instead of using the shipped weights.")
    ] = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Load the shipped SmallCNN on Fashion-MNIST, explain and score test images with every method, write a report."""

    def body(ui: UI) -> None:
        from ..evaluation.demo import run_demo
        from .tables import print_results

        run_demo(out, ui=ui, n_images=n_images, retrain=retrain, show=lambda st, h: print_results(ui, st, h))

    _guard(debug, quiet, body)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cleargrad`` console script and ``python -m cleargrad``.

    The command's process runs with the host allocator's reuse mode
    (:func:`cleargrad.set_host_memory_reuse`, applied when :mod:`cleargrad.runtime.hostmem` is
    first imported; ``CLEARGRAD_HOST_REUSE=off`` leaves glibc's defaults): the process is
    ours, and at 224² it spares every pass the zero-filling of fresh pages (measured:
    benchmarks/results/host_allocator.md). Set through the environment so
    that ``--help`` still imports no torch.
    """
    if os.environ.get("OMP_NUM_THREADS") is None and os.environ.get("WORLD_SIZE"):
        os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("CLEARGRAD_HOST_REUSE", "on")
    app(args=argv if argv is not None else sys.argv[1:], prog_name="cleargrad")
