"""A small, resumable training loop for classifiers (plain or interpretable-gradient loss).

:func:`fit` trains with the paper's recipe by default (spec § 4.4: SGD, lr 0.1,
momentum 0.9, weight decay 5e-4, LR x 0.2 at 30 / 60 / 80 % of the epochs, batch 128),
evaluates test accuracy after every epoch, writes a checkpoint after every epoch and
resumes from the last one after an interruption.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..core import select_output
from ..core.progress import NO_TASK, progress_bar
from ..core.state import training_guard
from ..errors import ConfigError, DataError
from .checkpoint import load_checkpoint, read_manifest, save_checkpoint
from .loss import ClassificationLoss, LossParts
from .recipe import Recipe

__all__ = ["PRESETS", "SCHEDULES", "FitResult", "fit", "evaluate", "iterate_batches", "lr_factor", "resolve_milestones"]

Data = Union[Dataset, DataLoader, tuple]
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], Any]

#: training recipes; explicit arguments of :func:`fit` override them
PRESETS: dict[str, dict[str, Any]] = {
    # spec § 4.4 (the paper's CIFAR recipe; 200 epochs give milestones 60/120/160)
    "paper": {
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "milestones": (0.3, 0.6, 0.8),
        "gamma": 0.2,
        "batch_size": 128,
    },
}
#: learning-rate schedules of :func:`fit` (see :func:`lr_factor`)
SCHEDULES = ("step", "cosine")
#: schedule settings of checkpoints written before these options existed
_SCHEDULE_DEFAULTS = {"schedule": "step", "warmup_epochs": 0, "min_lr": 0.0}
#: defaults that replace the preset's SGD values when ``optimizer="adam"``
ADAM_DEFAULTS = {"lr": 1e-3, "weight_decay": 0.0}


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained model (the same object that was passed in), in eval mode.
        history: one dict per finished epoch (also those of a resumed run): ``epoch``,
            ``lr``, ``train_loss``, ``train_classification``, ``train_regulariser``,
            ``train_accuracy``, ``test_accuracy`` (None without test data), ``seconds``
            (training time of the epoch) and ``step_seconds`` (mean time per step).
        checkpoint_dir: where checkpoints were written (None when not requested).
        resumed_from: the epoch the run resumed after (0 for a fresh run).
    """

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_dir: Path | None = None
    resumed_from: int = 0

    @property
    def final(self) -> dict[str, Any]:
        """The last epoch's record."""
        return self.history[-1] if self.history else {}


def resolve_milestones(milestones: Sequence[float] | None, epochs: int) -> list[int]:
    """Epoch indices at which the LR is multiplied by ``gamma``.

    Values in ``(0, 1)`` are fractions of ``epochs`` (``0.3 * 200 = 60``); other values
    are epoch numbers. Duplicates and milestones outside ``[1, epochs)`` are dropped.
    """
    if not milestones:
        return []
    out = []
    for m in milestones:
        e = int(round(m * epochs)) if 0 < m < 1 else int(m)
        if 1 <= e < epochs:
            out.append(e)
    return sorted(set(out))


def lr_factor(
    epoch: int,
    epochs: int,
    *,
    schedule: str = "step",
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    warmup_epochs: int = 0,
    min_factor: float = 0.0,
) -> float:
    """The factor applied to the base learning rate during 0-based ``epoch`` of ``epochs``.

    - Warm-up: during the first ``warmup_epochs`` epochs the factor rises linearly,
      ``(epoch + 1) / (warmup_epochs + 1)``, so the first epoch already trains and the
      first epoch after the warm-up runs at the full rate.
    - ``"step"``: ``gamma ** k`` where ``k`` is the number of ``milestones`` (resolved epoch
      indices, see :func:`resolve_milestones`) that are ``<= epoch``.
    - ``"cosine"``: after the warm-up, cosine annealing from 1 to ``min_factor`` over the
      remaining epochs (``min + (1 - min) * (1 + cos(pi * t)) / 2`` with
      ``t = (epoch - warmup) / (epochs - warmup)``; the last epoch stays above ``min``,
      as with ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=epochs)`` stepped per epoch).
    """
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    if schedule == "step":
        return float(gamma ** sum(1 for m in milestones if m <= epoch))
    if schedule == "cosine":
        span = max(epochs - warmup_epochs, 1)
        t = (epoch - warmup_epochs) / span
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ConfigError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


def _make_scheduler(opt: torch.optim.Optimizer, cfg: dict[str, Any]) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch LR scheduler. The plain step schedule stays a ``MultiStepLR`` (so checkpoints of
    earlier versions resume); warm-up and cosine use a ``LambdaLR`` over :func:`lr_factor`."""
    if cfg["schedule"] == "step" and not cfg["warmup_epochs"]:
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=cfg["milestones"], gamma=cfg["gamma"])
    min_factor = cfg["min_lr"] / cfg["lr"] if cfg["lr"] else 0.0

    def factor(epoch: int) -> float:
        return lr_factor(
            epoch,
            cfg["epochs"],
            schedule=cfg["schedule"],
            milestones=cfg["milestones"],
            gamma=cfg["gamma"],
            warmup_epochs=cfg["warmup_epochs"],
            min_factor=min_factor,
        )

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _as_dataset(data: Data, name: str) -> Dataset | DataLoader:
    if isinstance(data, (Dataset, DataLoader)):
        if getattr(data, "labels", 0) is None:
            raise DataError(f"{name} has no labels (for an image folder: put the images in class sub-folders)")
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return TensorDataset(*data)
    raise DataError(
        f"{name} must be a torch Dataset (e.g. TensorDataset, ImageFolder), a DataLoader or an "
        f"(images, labels) tuple of tensors, got {type(data).__name__}"
    )


def in_memory_tensors(data: Any) -> tuple[torch.Tensor, ...] | None:
    """The ``(images, labels)`` tensors of an in-memory dataset (a TensorDataset, or a dataset
    with ``images`` and ``labels`` tensor attributes such as the :mod:`cleargrad.data`
    readers), else None."""
    if isinstance(data, TensorDataset):
        return tuple(data.tensors)
    images, labels = getattr(data, "images", None), getattr(data, "labels", None)
    if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor) and len(images) == len(labels):
        return images, labels
    return None


def iterate_batches(
    data: Dataset | DataLoader,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    num_workers: int = 0,
) -> tuple[Iterator[Any], int]:
    """``(batches, number_of_batches)`` over ``data``.

    A DataLoader is used as it is. In-memory datasets (:func:`in_memory_tensors`) are
    sliced directly (fast path, no per-item collation); other datasets go through a
    DataLoader.
    With ``shuffle`` the order comes from ``generator``.
    """
    if isinstance(data, DataLoader):
        return iter(data), len(data)
    n = len(data)  # type: ignore[arg-type]  # a map-style Dataset has __len__ (torch's stub omits it)
    count = math.ceil(n / batch_size)
    tensors = in_memory_tensors(data)
    if tensors is not None:
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)

        def sliced() -> Iterator[tuple[torch.Tensor, ...]]:
            for s in range(0, n, batch_size):
                i = order[s : s + batch_size]
                yield tuple(t[i.to(t.device)] for t in tensors)

        return sliced(), count
    loader = DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers)
    return iter(loader), count


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(
    model: nn.Module,
    data: Data,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    output: Any = None,
) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (eval mode, no gradients).

    The model's training flags are restored afterwards.
    """
    ds = _as_dataset(data, "data")
    device = torch.device(device) if device is not None else _model_device(model)
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    correct, total = torch.zeros((), dtype=torch.long, device=device), 0
    try:
        batches, _ = iterate_batches(ds, batch_size, shuffle=False)
        with torch.inference_mode():
            for x, y, *_ in batches:
                x, y = x.to(device), y.to(device)
                pred = select_output(model(x), output).argmax(dim=1)
                correct += (pred == y).sum()
                total += y.shape[0]
    finally:
        for m, t in flags:
            m.training = t
    if total == 0:
        raise DataError("cannot evaluate on an empty dataset")
    return correct.item() / total


def _make_optimizer(name: str, params: list[nn.Parameter], cfg: dict[str, Any]) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    raise ConfigError(f"unknown optimizer {name!r}; valid: 'sgd', 'adam'")


def _config(
    preset: str | None, optimizer: str | None, overrides: dict[str, Any], epochs: int, seed: int, loss_fn: Any
) -> dict[str, Any]:
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)} or None")
    cfg: dict[str, Any] = (
        dict(PRESETS[preset])
        if preset
        else {
            "optimizer": "sgd",
            "lr": 0.1,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "milestones": (),
            "gamma": 0.1,
            "batch_size": 128,
        }
    )
    name = (optimizer or cfg["optimizer"]).lower()
    if name == "adam" and cfg["optimizer"] != "adam":
        cfg.update(ADAM_DEFAULTS)
    cfg["optimizer"] = name
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
    if int(cfg["batch_size"]) < 1:
        raise ConfigError(f"batch_size must be >= 1, got {cfg['batch_size']!r}")
    cfg["batch_size"] = int(cfg["batch_size"])
    cfg["milestones"] = resolve_milestones(cfg["milestones"], epochs)
    for key, default in _SCHEDULE_DEFAULTS.items():
        cfg.setdefault(key, default)
    if cfg["schedule"] not in SCHEDULES:
        raise ConfigError(f"unknown schedule {cfg['schedule']!r}; valid: {', '.join(SCHEDULES)}")
    w = cfg["warmup_epochs"]
    if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w < epochs:
        raise ConfigError(f"warmup_epochs must be an integer in [0, epochs={epochs}), got {w!r}")
    if not (isinstance(cfg["min_lr"], (int, float)) and 0 <= cfg["min_lr"] <= cfg["lr"]):
        raise ConfigError(f"min_lr must be a number in [0, lr={cfg['lr']}], got {cfg['min_lr']!r}")
    cfg["min_lr"] = float(cfg["min_lr"])
    cfg.update({"epochs": epochs, "seed": int(seed), "loss": repr(loss_fn)})
    return cfg


def _check_resume_config(saved: dict[str, Any], cfg: dict[str, Any], directory: Path) -> None:
    keys: tuple[str, ...] = (
        "epochs", "optimizer", "lr", "momentum", "weight_decay", "milestones", "gamma", "batch_size", "seed"
    )
    keys += ("loss", "train_size", *_SCHEDULE_DEFAULTS)
    saved = {**_SCHEDULE_DEFAULTS, **saved}
    diff = [f"{k}: checkpoint {saved.get(k)!r} != now {cfg.get(k)!r}" for k in keys if saved.get(k) != cfg.get(k)]
    if diff:
        raise ConfigError(
            f"the checkpoint in {directory} was written with a different configuration ({'; '.join(diff)}); "
            "use another checkpoint_dir or pass resume=False to start over"
        )


@contextlib.contextmanager
def _forked_rng(device: torch.device) -> Iterator[None]:
    """Restore torch's global CPU RNG (and ``device``'s accelerator RNG) on exit."""
    devices = [device.index if device.index is not None else 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The data-order generator of ``epoch``: depends only on (seed, epoch), so resuming reproduces it."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + epoch) % (2**63))
    return g


def fit(
    model: nn.Module,
    train_data: Data,
    test_data: Data | None = None,
    *,
    recipe: Recipe | None = None,
    loss_fn: LossFn | None = None,
    eval_batch_size: int = 256,
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = True,
    keep_all_checkpoints: bool = False,
    seed: int = 0,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    quiet: bool = False,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    **recipe_settings: Any,
) -> FitResult:
    """Train ``model`` on ``train_data``; evaluate, checkpoint and report after every epoch.

    Args:
        model: the classifier (trained in place; left in eval mode at the end).
        train_data: a Dataset yielding ``(image, label)`` (TensorDataset, ImageFolder,
            :mod:`cleargrad.data` readers...), an ``(images, labels)`` tuple of tensors,
            or a DataLoader (then its own batching and order are used as they are).
        test_data: optional data of the same kind; its accuracy is recorded each epoch.
        recipe: how to optimise, a :class:`~cleargrad.training.recipe.Recipe` (default
            ``Recipe()``: the paper preset, 10 epochs). Its fields are also flat keywords
            (the common case, ``fit(model, data, epochs=30, lr=0.05)``), documented below;
            both at once is an error.
        epochs: number of epochs.
        loss_fn: ``loss_fn(model, x, y)`` returning :class:`LossParts` (e.g.
            :class:`~cleargrad.InterpretableGradientLoss`) or a scalar tensor; None for
            plain cross-entropy (:class:`ClassificationLoss`).
        optimizer: ``"sgd"`` or ``"adam"`` (default: the preset's; Adam defaults to lr
            1e-3 and no weight decay).
        preset: ``"paper"`` (see :data:`PRESETS`) or None (plain SGD lr 0.1, no momentum).
        lr, momentum, weight_decay, gamma, batch_size: override the preset.
        milestones: epochs (ints) or fractions of ``epochs`` (floats in (0, 1)) at which
            the LR is multiplied by ``gamma`` (``schedule="step"``).
        schedule: ``"step"`` (default: the milestones above) or ``"cosine"`` (cosine
            annealing from ``lr`` to ``min_lr`` over the epochs after the warm-up, the
            usual CIFAR recipe; milestones are then ignored). The LR changes once per
            epoch; see :func:`lr_factor` for the exact formulas.
        warmup_epochs: linear warm-up over this many epochs (0 = none), with either schedule.
        min_lr: the cosine schedule's final LR (default 0).
        eval_batch_size: batch size for test accuracy.
        batch_transform: optional function applied to each image batch on the device
            (e.g. augmentation); it should draw randomness from torch's global RNG.
        checkpoint_dir: write a checkpoint after every epoch there (see
            :mod:`cleargrad.training.checkpoint`); None for no checkpoints.
        resume: continue from the checkpoint in ``checkpoint_dir`` if there is one (its
            configuration must match, else :class:`~cleargrad.ConfigError`).
        keep_all_checkpoints: keep every epoch's files, not only the last.
        seed: seeds torch's global RNG at the start of a fresh run and the data order
            of each epoch (a generator seeded from ``(seed, epoch)``); a resumed run
            restores the RNG state saved with the checkpoint, so it reproduces an
            uninterrupted run. The caller's global RNG state (CPU, and the model's
            CUDA device) is restored when ``fit`` returns or raises.
        device: move the model there (default: where its parameters are).
        num_workers: DataLoader workers for non-tensor datasets.
        quiet: no progress bars or epoch summaries.
        on_epoch_end: called with each epoch's record after its checkpoint is written.

    Returns:
        :class:`FitResult` with the per-epoch history.
    """
    loss_fn = loss_fn if loss_fn is not None else ClassificationLoss()
    rec = Recipe.of_call(recipe, recipe_settings)
    epochs = rec.epochs
    cfg = _config(rec.preset, rec.optimizer, rec.overrides(), epochs, seed, loss_fn)
    train = _as_dataset(train_data, "train_data")
    test = _as_dataset(test_data, "test_data") if test_data is not None else None
    data = train.dataset if isinstance(train, DataLoader) else train
    cfg["train_size"] = len(data)  # type: ignore[arg-type]  # a map-style Dataset has __len__ (torch's stub omits it)
    if device is not None:
        model.to(device)
    dev = _model_device(model)

    with training_guard(model):  # another thread explaining it froze its flags: say that, not "no parameters"
        pass
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters (all requires_grad=False)")
    opt = _make_optimizer(cfg["optimizer"], params, cfg)
    sched = _make_scheduler(opt, cfg)

    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    history: list[dict[str, Any]] = []
    start = 0
    # the run seeds and draws from torch's global RNG (dropout, batch_transform); the
    # caller's global RNG state is restored when fit returns (or raises)
    with training_guard(model), _forked_rng(dev):  # explanations from other threads refused meanwhile
        manifest = read_manifest(ckpt_dir) if ckpt_dir is not None and resume else None
        if ckpt_dir is not None and manifest is not None:
            _check_resume_config(manifest.get("config", {}), cfg, ckpt_dir)
            ck = load_checkpoint(ckpt_dir, model=model, optimizer=opt, scheduler=sched)
            assert ck is not None  # None only without a manifest, which was just read
            start, history = ck.epoch, list(ck.history)
        else:
            torch.manual_seed(cfg["seed"])

        with progress_bar(quiet=quiet) as bar:
            if start and bar:
                bar.console.print(f"resuming after epoch {start}/{epochs} from {ckpt_dir}")
            for epoch in range(start + 1, epochs + 1):
                record = _train_epoch(model, train, loss_fn, opt, cfg, epoch, dev, batch_transform, num_workers, bar)
                sched.step()
                record["test_accuracy"] = (
                    evaluate(model, test, batch_size=eval_batch_size, device=dev) if test is not None else None
                )
                history.append(record)
                if ckpt_dir is not None:
                    save_checkpoint(
                        ckpt_dir,
                        model=model,
                        optimizer=opt,
                        scheduler=sched,
                        epoch=epoch,
                        config=cfg,
                        history=history,
                        keep_all=keep_all_checkpoints,
                    )
                if bar:
                    bar.console.print(_summary(record, epochs))
                if on_epoch_end is not None:
                    on_epoch_end(record)
    model.eval()
    return FitResult(model=model, history=history, checkpoint_dir=ckpt_dir, resumed_from=start)


fit.__signature__ = inspect.signature(fit).replace(  # type: ignore[attr-defined]  # function attribute
    parameters=[
        *(p for p in inspect.signature(fit).parameters.values() if p.kind != p.VAR_KEYWORD),
        *Recipe.parameters(),
    ]
)


def _summary(r: dict[str, Any], epochs: int) -> str:
    test = f" test acc {r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else ""
    return (
        f"epoch {r['epoch']}/{epochs} lr {r['lr']:.3g} loss {r['train_loss']:.4f} "
        f"(ce {r['train_classification']:.4f}, reg {r['train_regulariser']:.4g}) "
        f"train acc {r['train_accuracy']:.4f}{test} {r['step_seconds'] * 1e3:.1f} ms/step"
    )


def _as_parts(out: Any) -> LossParts:
    if isinstance(out, LossParts):
        return out
    if isinstance(out, torch.Tensor) and out.dim() == 0:
        return LossParts(out, out.detach(), out.new_zeros(()), torch.empty(0))
    raise ConfigError("loss_fn(model, x, y) must return LossParts or a scalar tensor")


def _train_epoch(
    model: nn.Module,
    data: Dataset | DataLoader,
    loss_fn: LossFn,
    opt: torch.optim.Optimizer,
    cfg: dict[str, Any],
    epoch: int,
    device: torch.device,
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None,
    num_workers: int,
    bar: Progress | None,
) -> dict[str, Any]:
    model.train()
    lr = opt.param_groups[0]["lr"]
    batches, count = iterate_batches(
        data, cfg["batch_size"], generator=_epoch_generator(cfg["seed"], epoch), num_workers=num_workers
    )
    task = bar.add_task(f"epoch {epoch}/{cfg['epochs']}", total=count, info="") if bar else NO_TASK
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, ce, reg, correct (sums over images)
    seen, steps = 0, 0
    _sync(device)
    t0 = time.perf_counter()
    for x, y, *_ in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if batch_transform is not None:
            x = batch_transform(x)
        opt.zero_grad(set_to_none=True)
        parts = _as_parts(loss_fn(model, x, y))
        parts.loss.backward()
        opt.step()
        n = y.shape[0]
        with torch.no_grad():
            if parts.logits.numel():
                correct = (parts.logits.argmax(dim=1) == y).sum()
            else:
                correct = torch.zeros((), device=device)
            sums += torch.stack(
                [
                    parts.loss.detach() * n,
                    parts.classification.detach() * n,
                    parts.regulariser.detach() * n,
                    correct.to(sums.dtype),
                ]
            ).to(sums.dtype)
        seen += n
        steps += 1
        if bar:
            info = f"loss {sums[0].item() / seen:.4f}" if steps % 10 == 0 or steps == count else None
            if info:
                bar.update(task, advance=1, info=info)
            else:
                bar.update(task, advance=1)
    _sync(device)
    seconds = time.perf_counter() - t0
    if bar:
        bar.remove_task(task)
    if seen == 0:
        raise DataError("train_data is empty")
    loss, ce, reg, correct = (sums / seen).tolist()
    if not math.isfinite(loss):
        raise ConfigError(
            f"training diverged in epoch {epoch} (mean loss {loss}); lower lr or lam. The last checkpoint "
            "(if any) is from the previous epoch"
        )
    return {
        "epoch": epoch,
        "lr": lr,
        "train_loss": loss,
        "train_classification": ce,
        "train_regulariser": reg,
        "train_accuracy": correct,
        "test_accuracy": None,
        "seconds": seconds,
        "step_seconds": seconds / max(steps, 1),
    }
