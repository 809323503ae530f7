"""The ``cleargrad`` command (typer): demo, explain, evaluate, gad fit, export, report, methods, train.

Exit codes: 0 success; 2 usage error (bad option, unknown method or metric: the message
lists the valid names); 1 run error, reported in one line (``--debug`` shows the
traceback).

Start-up: this module imports typer and rich only; every command imports what it needs
when it runs, so ``--help`` does not load PyTorch.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ..errors import ConfigError
from .console import UI

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
        "(small-cnn, cifar-resnet18, cifar-mobilenet-v2, small-cnn-fashion-mnist = trained and cached). "
        "A module or file is imported, which runs its code: name only files you trust.",
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
            from .explainers import load_registries

            load_registries()
        return fn(ui)
    except typer.Exit:
        raise
    except ConfigError as e:
        if debug:
            raise
        ui.err.print(f"usage error: {_one_line(e)}", markup=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        ui.err.print("interrupted", markup=False)
        raise typer.Exit(130) from None
    except Exception as e:
        if debug:
            raise
        ui.err.print(f"error: {_one_line(e)}", markup=False)
        raise typer.Exit(1) from None


def _floats(text: str | None, name: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--{name} must be comma-separated numbers, got {text!r}") from None


def _target(text: str, allow_label: bool) -> str | int:
    t = text.strip().lower()
    if t == "auto" or (allow_label and t == "label"):
        return t
    valid = "auto, label or a class index" if allow_label else "auto or a class index"
    try:
        k = int(t)
    except ValueError:
        raise ConfigError(f"--target must be {valid}, got {text!r}") from None
    if not -(2**63) <= k < 2**63:
        raise ConfigError(f"--target {text} is not a class index (far beyond any number of classes); give {valid}")
    return k


def _file_digest(path: Path | None) -> str | None:
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _device(text: str) -> Any:
    """``--device`` as a torch device (``auto``: CUDA when available, else CPU)."""
    from .devices import resolve_device

    return resolve_device(text)


def _model(spec: str, weights: Path | None, seed: int, device: Any, ui: UI) -> Any:
    import torch

    from .modelspec import load_model

    if spec.strip().lower().replace("_", "-") == "small-cnn-fashion-mnist" and weights is None:
        from ..models import small_cnn_fashion_mnist

        ui.info("loading the reference SmallCNN (trained on Fashion-MNIST on first use, then cached)")
        model = small_cnn_fashion_mnist(device="cpu", quiet=ui.quiet)
    else:
        model = load_model(spec, weights, seed=seed)
        if weights is None and ":" not in spec:
            ui.warn(f"built-in model {spec!r} without --weights has random weights")
    return model.to(torch.device(device)).eval()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """cleargrad: sharper, more faithful gradient explanations of image classifiers."""
    if version:
        from .. import __version__

        typer.echo(__version__)
        raise typer.Exit(0)


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
        typer.Option("--method", help="Method name(s), comma-separated or repeated; gad:BASE needs --gad."),
    ],
    weights: WeightsOpt = None,
    target: Annotated[str, typer.Option("--target", help="Class index, or 'auto' (the prediction).")] = "auto",
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
        from .explain_run import class_names_from, explain_images, read_class_names
        from .explainers import check_global_options, parse_options, split_names
        from .images import check_model_takes, default_preprocess, image_set

        names = [n for m in method for n in split_names(m)]
        if not names:
            raise ConfigError("give at least one --method")
        opts = parse_options(option or [])
        tgt = _target(target, allow_label=False)
        dev = _device(device)
        net = _model(model, weights, seed, dev, ui)
        prep = default_preprocess(
            net, size, grayscale, _floats(mean, "mean"), _floats(std, "std"), resize, crop_fraction
        )
        data = image_set(images, prep)
        refs = _references(data, prep)
        check_model_takes(net, refs)
        explainers = _explainers(net, names, gad, layer, reshape, opts, refs)
        check_global_options(opts, explainers)
        labels = read_class_names(class_names) if class_names else (class_names_from(data) or _builtin_names(model))
        run = {
            "command": "explain",
            "model": model,
            "weights": str(weights) if weights else None,
            "weights_sha256": _file_digest(weights),
            "gad": _gad_identity(gad),
            "images": [str(p) for p in images],
            "preprocess": prep.as_dict(),
            "target": tgt,
            "layer": layer,
            "class_names": str(class_names) if class_names else None,
            "method_options": {e.name: e.options for e in explainers},
            "seed": seed,
            "device": str(dev),
        }
        rows = explain_images(
            net, data, explainers, out, target=tgt, batch_size=batch_size, seed=seed, class_names=labels,
            plain=plain, run=run, ui=ui,
        )
        n_ok = len({r.image_id for r in rows})
        ui.out.print(
            f"{len(rows)} explanation(s) of {n_ok} image(s) written to {out} (index: {out / 'manifest.csv'})",
            markup=False,
        )
        _print_skipped(ui, data.skipped)

    _guard(debug, quiet, body)


def _gad_identity(gad: Path | None) -> dict[str, Any] | None:
    """The ``--gad`` folder and its fit's key (so a refit folder is a new run, not a resumed one)."""
    if gad is None:
        return None
    import json

    record = gad / "fit.json"
    key = json.loads(record.read_text()).get("key") if record.is_file() else None
    return {"path": str(gad), "fit_key": key or _file_digest(gad / "support.safetensors")}


def _builtin_names(spec: str) -> list[str] | None:
    """Class names of a built-in model trained on Fashion-MNIST."""
    if spec.strip().lower().replace("_", "-") == "small-cnn-fashion-mnist":
        from ..data import FASHION_MNIST_CLASSES

        return list(FASHION_MNIST_CLASSES)
    return None


def _explainers(
    net: Any, names: list[str], gad_dir: Path | None, layer: str, reshape: str, opts: Any, refs: Any
) -> list[Any]:
    """The explainers of ``names``; ``gad:BASE`` ones share the GAD loaded from ``gad_dir``."""
    from .explainers import build_explainer, build_gad_explainer, is_gad

    fitted = None
    if any(is_gad(n) for n in names):
        if gad_dir is None:
            raise ConfigError(
                "methods gad:BASE need --gad DIR, a folder written by `cleargrad gad fit --out DIR`"
            )
        from .gad_cmd import load_fitted_gad

        fitted = load_fitted_gad(gad_dir, net)
    elif gad_dir is not None:
        raise ConfigError("--gad is only used by methods gad:BASE (e.g. --method gad:saliency)")
    out = []
    for n in names:
        if is_gad(n):
            out.append(
                build_gad_explainer(net, n, fitted, layer=layer, reshape=reshape, options=opts, references=refs)
            )
        else:
            out.append(build_explainer(net, n, layer=layer, reshape=reshape, options=opts, references=refs))
    return out


def _references(data: Any, prep: Any, k: int = 16) -> Any:
    """A fixed set of reference images for methods that sample baselines."""
    import torch

    x, _ = data.load(list(range(min(k, len(data)))))
    if x is None:
        return torch.zeros(1, 1 if prep.grayscale else 3, prep.size, prep.size)
    return x


def _print_skipped(ui: UI, skipped: dict[str, str]) -> None:
    if skipped:
        ui.err.print(f"skipped {len(skipped)} unreadable or non-image file(s):", markup=False)
        for src, reason in sorted(skipped.items()):
            ui.err.print(f"  {src}: {reason}", markup=False)


@app.command("evaluate")
def evaluate_cmd(
    model: ModelOpt,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="'fashion-mnist' (test split) or an image folder.")],
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated method names.")],
    metrics: Annotated[str, typer.Option("--metrics", help="Comma-separated metric names.")],
    store: Annotated[Path, typer.Option("--store", "-s", help="SQLite results file (created or resumed).")],
    weights: WeightsOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use only the first N images.")] = None,
    target: Annotated[
        str, typer.Option("--target", help="'auto' (prediction), 'label' (ground truth) or a class index.")
    ] = "auto",
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
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Score methods with metrics, one row per image, method and metric, into a resumable SQLite store.

    Rerunning the same command skips the rows already stored. Under
    `torchrun --nproc_per_node K -m cleargrad evaluate ...` each process takes a shard.
    GAD runs as gad:BASE with --gad DIR; its region metrics compare it with BASE.
    The terminal shows a summary; `cleargrad report STORE` shows every value.
    """

    def body(ui: UI) -> None:
        from .evaluate_run import EvaluateSettings, run_evaluate

        run_evaluate(
            EvaluateSettings(
                model=model, dataset=dataset, methods=methods, metrics=metrics, store=store, weights=weights,
                limit=limit, target=target, layer=layer, reshape=reshape, reference=reference,
                option=list(option or []), metric_option=list(metric_option or []), gallery=gallery,
                overlays=overlays, gad=gad, classes=classes, size=size, resize=resize, crop_fraction=crop_fraction,
                grayscale=grayscale, mean=mean, std=std, batch_size=batch_size, seed=seed, device=device,
                compile=compile_, metric_batch_size=metric_batch_size, fold_batchnorm=fold_batchnorm,
            ),
            ui,
        )

    _guard(debug, quiet, body)


def _only_classes(data: Any, text: str) -> Any:
    """``data`` restricted to images whose label is one of ``text`` (indices or class names)."""
    from .explain_run import class_names_from
    from .gad_cmd import parse_classes

    wanted = set(parse_classes(text, class_names_from(data)) or ())
    keep = [i for i, r in enumerate(data.records) if r.label in wanted]
    if not keep:
        raise ConfigError(f"--classes {text}: no image of those classes in {data.description}")
    return _subset(data, keep, f"{data.description}, classes {text}")


def _first(data: Any, n: int) -> Any:
    return _subset(data, list(range(min(n, len(data)))), data.description)


def _subset(data: Any, keep: list[int], description: str) -> Any:
    import dataclasses

    import torch

    tensors = None if data.tensors is None else data.tensors[torch.tensor(keep, dtype=torch.long)]
    return dataclasses.replace(
        data, records=[data.records[i] for i in keep], tensors=tensors, description=description
    )


def _params(fn: Callable[..., Any]) -> set[str]:
    import inspect

    return set(inspect.signature(fn).parameters)


def _metric_options(items: list[str]) -> dict[str, dict[str, Any]]:
    import json

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        metric, dot, name = key.strip().rpartition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--metric-option {item!r} must look like METRIC.KEY=VALUE")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(metric.lower().replace("-", "_"), {})[name] = parsed
    return out


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
                device=str(_device(device)),
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
        from .explain_run import read_class_names
        from .gad_cmd import run_gad_fit
        from .images import default_preprocess

        dev = _device(device)
        net = _model(model, weights, seed, dev, ui)
        fmnist = dataset.strip().lower().replace("_", "-") == "fashion-mnist"
        prep = None if fmnist else default_preprocess(
            net, size, grayscale, _floats(mean, "mean"), _floats(std, "std"), resize, crop_fraction
        )
        record = run_gad_fit(
            model=net,
            model_spec={"model": model, "weights": str(weights) if weights else None,
                        "weights_sha256": _file_digest(weights)},
            dataset=dataset, prep=prep, classes_text=classes,
            class_names=read_class_names(class_names) if class_names else None,
            strategy=strategy, groups_text=groups, out=out, n_support=support, epochs=epochs, lr=lr,
            bn_mode=bn_mode, batch_size=batch_size, alphas=alphas, limit=limit, seed=seed, ui=ui,
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
        from ..report import build_report

        path = build_report(store, out, gallery=gallery, settings=settings, title=title)
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
        from .demo import run_demo

        run_demo(out, ui=ui, n_images=n_images, retrain=retrain)

    _guard(debug, quiet, body)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cleargrad`` console script and ``python -m cleargrad``.

    The command's process runs with the host allocator's reuse mode
    (:func:`cleargrad.set_host_memory_reuse`, applied when :mod:`cleargrad.core.hostmem` is
    first imported; ``CLEARGRAD_HOST_REUSE=off`` leaves glibc's defaults): the process is
    ours, and at 224² it saves the page faults of every pass. Set through the environment so
    that ``--help`` still imports no torch.
    """
    if os.environ.get("OMP_NUM_THREADS") is None and os.environ.get("WORLD_SIZE"):
        os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("CLEARGRAD_HOST_REUSE", "on")
    app(args=argv if argv is not None else sys.argv[1:], prog_name="cleargrad")
