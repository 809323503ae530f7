"""A plain supervised training loop for classifiers (used to build the reference weights;
reusable wherever a model has to be fitted to labelled images)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..core.progress import NO_TASK, progress_bar
from ..errors import ConfigError, DataError

__all__ = ["TrainResult", "train_classifier", "evaluate_accuracy"]

Data = Union[Dataset, DataLoader, tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TrainResult:
    """What :func:`train_classifier` did.

    Attributes:
        steps: optimiser steps taken.
        epochs: epochs started (the last one may be cut short by ``max_steps``).
        seconds: wall-clock training time.
        losses: mean training loss of each epoch.
        eval_accuracy: accuracy on ``eval_data`` after training (None without eval data).
    """

    steps: int = 0
    epochs: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    eval_accuracy: float | None = None


def _tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """In-memory (images, labels) when ``data`` is a tensor pair, a TensorDataset or a
    dataset with ``images``/``labels`` tensors; None for anything else."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return data[0], data[1]
    tensors = getattr(data, "tensors", None)
    if isinstance(tensors, tuple) and len(tensors) >= 2:
        return tensors[0], tensors[1]
    imgs, lbls = getattr(data, "images", None), getattr(data, "labels", None)
    if isinstance(imgs, torch.Tensor) and isinstance(lbls, torch.Tensor):
        return imgs, lbls
    return None


def _batches(
    data: Data, batch_size: int, shuffle: bool, generator: torch.Generator | None
) -> tuple[Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]], int]:
    """A factory of per-epoch batch iterators and the number of batches per epoch."""
    pair = _tensors(data)
    if pair is not None:
        x, y = pair
        if x.shape[0] != y.shape[0]:
            raise DataError(f"images and labels differ in length: {x.shape[0]} vs {y.shape[0]}")
        n = x.shape[0]

        def epoch() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
            order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
            for i in range(0, n, batch_size):
                idx = order[i : i + batch_size].to(x.device)
                yield x[idx], y[idx]

        return epoch, math.ceil(n / batch_size)
    if isinstance(data, DataLoader):
        loader = data
    elif isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)
    else:
        raise DataError(
            f"training data must be a Dataset, a DataLoader or an (images, labels) tensor pair, "
            f"got {type(data).__name__}"
        )

    def loader_epoch() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        for batch in loader:
            yield batch[0], batch[1]

    return loader_epoch, len(loader)


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: Data, batch_size: int = 1000, quiet: bool = True) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (evaluated in eval mode; the model's
    training flag is restored afterwards). Batches are moved to the model's device."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    make, total = _batches(data, batch_size, shuffle=False, generator=None)
    correct = seen = 0
    try:
        with progress_bar(quiet, transient=True) as bar:
            task = bar.add_task("evaluating", total=total, info="") if bar else NO_TASK
            for x, y in make():
                x, y = x.to(device), y.to(device)
                correct += int((model(x).argmax(1) == y).sum())
                seen += int(y.numel())
                if bar:
                    bar.advance(task)
    finally:
        model.train(was_training)
    if seen == 0:
        raise DataError("cannot evaluate accuracy on an empty data set")
    return correct / seen


def train_classifier(
    model: nn.Module,
    train_data: Data,
    epochs: int,
    *,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    schedule: str = "cosine",
    max_steps: int | None = None,
    eval_data: Data | None = None,
    seed: int | None = 0,
    quiet: bool = False,
) -> TrainResult:
    """Train a classifier with Adam (or a given optimiser) on cross-entropy.

    The model is trained in place, on its own device (batches are moved there), and left
    in eval mode. Runs are reproducible for a given ``seed`` on the same machine:
    shuffling uses a private generator, and dropout-like randomness runs on a forked
    global RNG seeded with ``seed``, so the caller's RNG state is left as it was.

    Args:
        model: the classifier to train.
        train_data: an ``(images, labels)`` tensor pair, a Dataset whose items start with
            ``(image, label)`` (in-memory datasets with ``images``/``labels`` tensors are
            batched without a DataLoader), or a DataLoader (used as is).
        epochs: passes over the data.
        batch_size: batch size (ignored for a DataLoader).
        lr: peak learning rate (Adam).
        weight_decay: Adam weight decay.
        optimizer: use this optimiser instead of Adam (``lr``/``weight_decay`` ignored).
        loss_fn: ``loss_fn(logits, labels)``; default cross-entropy.
        schedule: ``"cosine"`` (decay to 0 over the run, per step) or ``"constant"``.
        max_steps: stop after this many optimiser steps (for tests and smoke runs).
        eval_data: if given, accuracy on it is computed after training.
        seed: seed for shuffling and initial randomness (None: do not seed).
        quiet: no progress bar.

    Returns:
        A :class:`TrainResult` with steps, time, per-epoch losses and the eval accuracy.

    Raises:
        ConfigError: non-positive epochs/batch size/lr, or an unknown schedule.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ConfigError(f"epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}")
    if schedule not in ("cosine", "constant"):
        raise ConfigError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    device = _device_of(model)
    if seed is None:
        return _fit(model, train_data, epochs, batch_size, optimizer, lr, weight_decay, loss_fn, schedule,
                    max_steps, eval_data, None, quiet)
    forked = {"devices": [device], "device_type": device.type} if device.type != "cpu" else {"devices": []}
    with torch.random.fork_rng(**forked):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        return _fit(model, train_data, epochs, batch_size, optimizer, lr, weight_decay, loss_fn, schedule,
                    max_steps, eval_data, generator, quiet)


def _fit(
    model: nn.Module,
    train_data: Data,
    epochs: int,
    batch_size: int,
    optimizer: torch.optim.Optimizer | None,
    lr: float,
    weight_decay: float,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    schedule: str,
    max_steps: int | None,
    eval_data: Data | None,
    generator: torch.Generator | None,
    quiet: bool,
) -> TrainResult:
    device = _device_of(model)
    make, per_epoch = _batches(train_data, batch_size, shuffle=True, generator=generator)
    total = epochs * per_epoch if max_steps is None else min(max_steps, epochs * per_epoch)
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total)) if schedule == "cosine" else None
    loss_fn = loss_fn or F.cross_entropy
    result = TrainResult()
    start = time.perf_counter()
    model.train()
    try:
        with progress_bar(quiet) as bar:
            task = bar.add_task("training", total=total, info="") if bar else NO_TASK
            while result.steps < total:
                result.epochs += 1
                run, count = 0.0, 0
                for x, y in make():
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    loss = loss_fn(model(x), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if sched is not None:
                        sched.step()
                    result.steps += 1
                    run, count = run + float(loss.detach()), count + 1
                    if bar:
                        bar.update(task, advance=1, info=f"epoch {result.epochs} loss {run / count:.3f}")
                    if result.steps >= total:
                        break
                result.losses.append(run / max(1, count))
    finally:
        model.eval()
    result.seconds = time.perf_counter() - start
    if eval_data is not None:
        result.eval_accuracy = evaluate_accuracy(model, eval_data, quiet=quiet)
    return result
