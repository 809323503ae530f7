"""``cleargrad train``: train a classifier with the interpretable-gradient loss (or the plain
cross-entropy baseline), resumable, and compare it with a baseline run.

An output folder holds everything of one run::

    OUT/checkpoints/      per-epoch checkpoints (resume after a kill: rerun the same command)
    OUT/model.safetensors the final weights
    OUT/history.json      one record per epoch (loss, its parts, accuracies, LR, time)
    OUT/run.json          the settings, the data split and the final accuracy
    OUT/inputs.json       what the run is bound to: model, width, data (resolved path and
                          file-list digest), size; a rerun into OUT with other inputs is refused

Every file is written atomically (a temporary file renamed over it).

``--baseline DIR`` names another run's folder (trained the same way, usually with
``--loss ce``); the final table then compares accuracies and, with ``--evaluate``, the CAM
faithfulness metrics of both models on the same test images (:mod:`.train_eval`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from ..errors import ConfigError, DataError
from ..evaluation.console import UI

__all__ = ["LOSSES", "TrainSettings", "run_training"]

#: ``--loss`` values: ``ce`` is the plain cross-entropy baseline, the others the
#: interpretable-gradient loss with that error function
LOSSES = ("ce", "cosine", "mse", "mae", "hi")


@dataclass
class TrainSettings:
    """Everything ``cleargrad train`` takes (also usable from Python)."""

    model: str
    dataset: str
    out: Path
    loss: str = "cosine"
    lam: float = 7.5e-3
    epochs: int = 10
    lr: float | None = None
    optimizer: str | None = None
    schedule: str = "step"
    warmup_epochs: int = 0
    batch_size: int = 128
    width: float | None = None
    train_limit: int | None = None
    test_dataset: str | None = None
    holdout: float = 0.2
    size: int | None = None
    grayscale: bool | None = None
    seed: int = 0
    device: str = "cpu"
    baseline: Path | None = None
    evaluate: bool = False
    eval_images: int = 500

    def check(self) -> None:
        """Raise :class:`ConfigError` (exit 2 in the CLI) for a bad value, in one line."""
        if self.loss not in LOSSES:
            raise ConfigError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not (isinstance(self.lam, (int, float)) and math.isfinite(self.lam) and self.lam >= 0):
            raise ConfigError(f"--lam must be a finite number >= 0, got {self.lam!r}")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"--holdout must be a fraction in (0, 1), got {self.holdout}")
        if self.eval_images < 1:
            raise ConfigError(f"--eval-images must be >= 1, got {self.eval_images}")
        if self.train_limit is not None and self.train_limit < 1:
            raise ConfigError(f"--train-limit must be >= 1, got {self.train_limit}")
        if self.baseline is not None and not (Path(self.baseline) / "run.json").is_file():
            raise ConfigError(
                f"--baseline {self.baseline} is not a finished `cleargrad train` run (no run.json there); "
                "train the baseline first, e.g. with --loss ce"
            )
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out} exists and is not a folder")


@dataclass
class _Data:
    train: Any
    test: Any
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int
    classes: list[str]
    description: str
    skipped: list[Any] = field(default_factory=list)


def _is_fashion_mnist(name: str) -> bool:
    from ..core.names import dashed_key  # here: cleargrad.core loads torch

    return dashed_key(name) == "fashion-mnist"


def _load_data(s: TrainSettings) -> _Data:
    import torch

    from ..data import (
        FASHION_MNIST_CLASSES,
        FASHION_MNIST_MEAN,
        FASHION_MNIST_STD,
        load_fashion_mnist,
        load_image_folder,
    )

    if _is_fashion_mnist(s.dataset):
        fm_train = load_fashion_mnist("train", normalize=True, limit=s.train_limit)
        fm_test = load_fashion_mnist("test", normalize=True)
        return _Data(
            fm_train,
            fm_test,
            (FASHION_MNIST_MEAN,),
            (FASHION_MNIST_STD,),
            1,
            list(FASHION_MNIST_CLASSES),
            f"Fashion-MNIST ({len(fm_train)} train / {len(fm_test)} test images)",
        )
    channels = 1 if s.grayscale else 3
    size = s.size or (28 if channels == 1 else 224)
    folder = load_image_folder(s.dataset, size=size, channels=channels)  # pixels in [0, 1]
    if folder.labels is None:
        raise ConfigError(
            f"--dataset {s.dataset} has no class sub-folders: put each class's images in a sub-folder named after it"
        )
    classes = list(folder.classes)
    skipped = list(folder.skipped)
    x, y = folder.images, folder.labels
    if s.test_dataset is not None:
        tf = load_image_folder(s.test_dataset, size=size, channels=channels)
        skipped += list(tf.skipped)
        if tf.labels is None or list(tf.classes) != classes:
            raise ConfigError(f"--test-dataset {s.test_dataset} must have the same class sub-folders as --dataset")
        train, test = (x, y), (tf.images, tf.labels)
    else:  # a seeded hold-out split, the same for every run with the same seed
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(s.seed))
        n_test = max(1, int(round(s.holdout * len(y))))
        if n_test >= len(y):
            raise ConfigError(f"--dataset {s.dataset} has too few images ({len(y)}) for a hold-out split")
        test = (x[order[:n_test]], y[order[:n_test]])
        train = (x[order[n_test:]], y[order[n_test:]])
    if s.train_limit is not None:
        train = (train[0][: s.train_limit], train[1][: s.train_limit])
    # normalise with the training images' per-channel statistics
    mean_t = train[0].mean(dim=(0, 2, 3), keepdim=True)
    std_t = train[0].std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-3)
    train = ((train[0] - mean_t) / std_t, train[1])
    test = ((test[0] - mean_t) / std_t, test[1])
    return _Data(
        train,
        test,
        tuple(mean_t.flatten().tolist()),
        tuple(std_t.flatten().tolist()),
        channels,
        classes,
        f"{s.dataset} ({len(train[1])} train / {len(test[1])} test images, {size}x{size}, {channels} channel(s))",
        skipped,
    )


def _build_model(s: TrainSettings, data: _Data) -> Any:
    import torch

    from ..evaluation.modelspec import load_model

    if ":" in s.model:
        return load_model(s.model, None, seed=s.seed).train()
    from ..models import build_model

    kw: dict[str, Any] = {"in_channels": data.channels, "num_classes": len(data.classes)}
    if s.width is not None:  # SmallCNN takes a channel count, the others a multiplier
        kw["width"] = int(s.width) if float(s.width).is_integer() else s.width
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        return build_model(s.model, **kw)


def _loss(s: TrainSettings) -> Any:
    from ..training import ClassificationLoss, InterpretableGradientLoss

    return ClassificationLoss() if s.loss == "ce" else InterpretableGradientLoss(s.loss, lam=s.lam)


def _run_config(s: TrainSettings) -> dict[str, Any]:
    d = asdict(s)
    for k in ("out", "baseline"):
        d[k] = str(d[k]) if d[k] is not None else None
    return d


#: the file in --out that binds it to its inputs
INPUTS_FILE = "inputs.json"


def _data_identity(name: str | None) -> Any:
    if name is None:
        return None
    if _is_fashion_mnist(name):
        return "fashion-mnist"
    from ..data.identity import dataset_identity

    return dataset_identity(name)


def _inputs(s: TrainSettings) -> dict[str, Any]:
    """What a run folder is bound to: a resume with any other value is refused."""
    return {
        "model": s.model,
        "width": s.width,
        "dataset": _data_identity(s.dataset),
        "test_dataset": _data_identity(s.test_dataset),
        "size": s.size,
        "grayscale": s.grayscale,
        "holdout": s.holdout,
        "train_limit": s.train_limit,
        "seed": s.seed,
    }


def _describe(v: Any) -> str:
    if isinstance(v, dict) and "path" in v:
        return f"{v['path']} ({v['files']} files, digest {v['digest']})"
    return repr(v)


def _bind_out(s: TrainSettings) -> None:
    """Refuse to resume into ``--out`` written for other inputs (one line), else record them.

    Folders of older versions (no ``inputs.json``) are checked against their ``run.json``
    settings where there is one.
    """
    now = _inputs(s)
    path = s.out / INPUTS_FILE
    saved: dict[str, Any] | None = None
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path} cannot be read ({e}); delete it or choose another --out") from e
    elif (s.out / "run.json").is_file():
        try:
            old = json.loads((s.out / "run.json").read_text(encoding="utf-8")).get("settings", {})
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
            raise DataError(f"{s.out / 'run.json'} cannot be read ({e}); delete it or choose another --out") from e
        for k in ("model", "width", "size", "grayscale"):
            if k in old and old[k] != now[k]:
                raise ConfigError(
                    f"--out {s.out} holds a run with {k} {old[k]!r}, not {now[k]!r}; choose another --out "
                    "or delete it to start over"
                )
    if saved is not None:
        diff = [k for k in now if saved.get(k) != now[k]]
        if diff:
            k = diff[0]
            raise ConfigError(
                f"--out {s.out} holds a run of other inputs ({k}: {_describe(saved.get(k))}, now {_describe(now[k])}"
                f"{f'; also {len(diff) - 1} other setting(s)' if len(diff) > 1 else ''}); choose another --out "
                "or delete it to start over"
            )
        return
    atomic_write(path, json.dumps(now, indent=1))


def _train_one(s: TrainSettings, data: _Data, ui: UI) -> tuple[Any, dict[str, Any]]:
    import torch
    from safetensors.torch import save_file

    from ..training import Recipe, fit

    _bind_out(s)
    model = _build_model(s, data)
    recipe = Recipe.paper(
        epochs=s.epochs, optimizer=s.optimizer, lr=s.lr, batch_size=s.batch_size, schedule=s.schedule,
        warmup_epochs=s.warmup_epochs,
    )
    result = fit(
        model,
        data.train,
        data.test,
        recipe=recipe,
        loss_fn=_loss(s),
        checkpoint_dir=s.out / "checkpoints",
        seed=s.seed,
        device=torch.device(s.device),
        quiet=ui.quiet,
    )
    model = result.model.eval()
    s.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(s.out / "model.safetensors", lambda tmp: save_file(state, str(tmp)))
    atomic_write(s.out / "history.json", json.dumps(result.history, indent=1))
    run = {
        "settings": _run_config(s),
        "dataset": data.description,
        "classes": data.classes,
        "mean": list(data.mean),
        "std": list(data.std),
        "test_accuracy": result.final.get("test_accuracy"),
        "epochs_done": len(result.history),
        "seconds": sum(h["seconds"] for h in result.history),
    }
    atomic_write(s.out / "run.json", json.dumps(run, indent=1))
    return model, run


def _load_baseline(s: TrainSettings, baseline: Path, data: _Data) -> tuple[Any, dict[str, Any]]:
    from ..evaluation.modelspec import load_weights

    run = json.loads((Path(baseline) / "run.json").read_text())
    b = TrainSettings(**{**run["settings"], "out": Path(run["settings"]["out"]), "baseline": None})
    if b.dataset != s.dataset or b.model != s.model:
        raise ConfigError(
            f"the baseline in {s.baseline} was trained on {b.dataset!r} with {b.model!r}; "
            f"this run uses {s.dataset!r} with {s.model!r}"
        )
    model = _build_model(b, data)
    model.load_state_dict(load_weights(Path(baseline) / "model.safetensors"), strict=True)
    return model.eval(), run


def _mean_se(v: Any) -> tuple[float, float]:
    """Mean and standard error of the defined (non-NaN) values: a blank CAM map is NaN."""
    v = v.double()
    v = v[~v.isnan()]
    n = v.numel()
    m = float(v.mean())
    se = float(v.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return m, se


def _comparison(s: TrainSettings, data: _Data, model: Any, run: dict, ui: UI) -> None:
    from rich.table import Table

    base_model, base_run = _load_baseline(s, s.baseline, data) if s.baseline is not None else (None, None)
    acc = Table(title="test accuracy", show_lines=False)
    acc.add_column("run")
    acc.add_column("loss")
    acc.add_column("accuracy %", justify="right")
    if base_run is not None:
        bs = base_run["settings"]
        acc.add_row(str(s.baseline), _loss_label(bs["loss"], bs["lam"]), f"{100 * base_run['test_accuracy']:.2f}")
    acc.add_row(str(s.out), _loss_label(s.loss, s.lam), f"{100 * run['test_accuracy']:.2f}")
    ui.out.print(acc)
    if not s.evaluate:
        return
    import torch

    from ..evaluation.train_eval import METRICS, cam_faithfulness, train_evaluation_settings

    ev = train_evaluation_settings(
        s.model, s.test_dataset or s.dataset, s.out, images=s.eval_images, seed=s.seed, device=s.device
    )
    x, y = _test_tensors(data)
    x, y = x[: ev.limit], y[: ev.limit]
    dev = torch.device(ev.device)
    x, y = x.to(dev), y.to(dev)
    with ui.progress() as p:
        ours = cam_faithfulness(model, x, y, mean=data.mean, std=data.std, progress=p, settings=ev)
        base = (
            cam_faithfulness(base_model, x, y, mean=data.mean, std=data.std, progress=p, settings=ev)
            if base_model else None
        )
    t = Table(title=f"CAM metrics (%) on {len(y)} test images; Δ = this run − baseline ± s.e. (paired)")
    t.add_column("CAM")
    for k, d in METRICS.items():
        t.add_column(f"{k} {'↓' if d == 'lower' else '↑'}", justify="right")
    for cam, vals in ours.items():
        cells = []
        for k, d in METRICS.items():
            m, se = _mean_se(vals[k])
            cell = f"{m:.2f}"
            if base is not None:
                dm, dse = _mean_se(vals[k] - base[cam][k])
                better = dm < 0 if d == "lower" else dm > 0
                mark = "*" if abs(dm) > 2 * dse and better else ("!" if abs(dm) > 2 * dse else "")
                cell += f" (Δ {dm:+.2f}±{dse:.2f}{mark})"
            else:
                cell += f" ±{se:.2f}"
            cells.append(cell)
        t.add_row(cam, *cells)
    ui.out.print(t)
    blank = [f"{cam}: {v['n_blank']}" for cam, v in ours.items() if v["n_blank"]]
    blank += [f"{cam} (baseline): {v['n_blank']}" for cam, v in (base or {}).items() if v["n_blank"]]
    if blank:
        ui.out.print("images with an all-zero map, left out of the means (and of the paired Δ): " + ", ".join(blank))
    if base is not None:
        ui.out.print("* better than the baseline by more than 2 s.e.; ! worse by more than 2 s.e.")
    summary = {
        cam: {k: _mean_se(v[k])[0] for k in METRICS}
        | {"seconds_per_image": v["seconds_per_image"], "n_blank": v["n_blank"]}
        for cam, v in ours.items()
    }
    atomic_write(s.out / "cam_metrics.json", json.dumps({"images": len(y), "cams": summary}, indent=1))


def _test_tensors(data: _Data) -> tuple[Any, Any]:
    t = data.test
    if isinstance(t, tuple):
        return t
    return t.images, t.labels


def _loss_label(loss: str, lam: float) -> str:
    return "cross-entropy" if loss == "ce" else f"{loss} λ={lam:g}"


def run_training(s: TrainSettings, ui: UI) -> dict[str, Any]:
    """Train (or resume) the run described by ``s``; print the comparison table; return run.json."""
    s.out = Path(s.out)
    s.check()
    data = _load_data(s)
    if data.skipped:
        ui.warn(f"skipped {len(data.skipped)} file(s) that could not be read:")
        for f in data.skipped:
            ui.warn(f"  {f.path}: {f.reason}")
    ui.info(f"training {s.model} on {data.description} with {_loss_label(s.loss, s.lam)} for {s.epochs} epoch(s)")
    model, run = _train_one(s, data, ui)
    _comparison(s, data, model, run, ui)
    return run
