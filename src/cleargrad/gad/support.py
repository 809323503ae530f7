"""Support regression models of GAD (spec § 3.3).

Each support model is a deep copy of the classifier, trained with Adam to regress the
distanced outputs of :func:`~cleargrad.gad.distancing.distance_targets` under an MSE
loss on the raw outputs. The original model is only read (one inference pass).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import torch
from torch import nn

from ..core import chunk_slices, select_output
from ..core.progress import NO_TASK, progress_bar
from ..core.targets import OutputSelector
from ..errors import ConfigError
from .distancing import Grouping, distance_targets, group_margin


class SupportCheckpoint(Protocol):
    """What :func:`train_support_models` needs of a checkpoint (met by
    :class:`~cleargrad.gad.checkpoint.FitCheckpoint`; stated here so that this module does
    not import the checkpoint's, which imports this one)."""

    def finished(self, task: int, model: int) -> bool: ...

    def restore(
        self, task: int, model: int, into: nn.Module, shuffle: torch.Generator, device: torch.device
    ) -> SupportStats: ...

    def save(
        self, task: int, model: int, trained: nn.Module, stats: SupportStats, shuffle: torch.Generator,
        device: torch.device,
    ) -> None: ...

__all__ = ["TrainSettings", "SupportStats", "model_outputs", "train_support_models"]

INITS = ("warm", "original")
BN_MODES = ("eval", "train")
REGRESS = ("all", "groups")
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainSettings:
    """How the support models are trained.

    Attributes:
        epochs: passes over the training set per support model: 30 (issue 11; the paper's
            10 leave the first support model at about 50-70 % of its alpha on the
            confusable Fashion-MNIST pairs, see docs/research/gad.md).
        lr: Adam learning rate: 3e-3 (issue 11; the spec's proposal 1e-5 moves the
            margins by about 10-50 % of alpha on Fashion-MNIST, see docs/research/gad.md).
        batch_size: 32 [spec PROPOSAL].
        init: ``"warm"`` (``M_s`` starts from ``M_{s-1}``, default [spec PROPOSAL]) or
            ``"original"`` (every ``M_s`` starts from ``M_0``).
        bn_mode: ``"train"`` (default): ordinary training mode while fitting, so BatchNorm
            normalises with batch statistics and its running statistics follow the pair's
            images (Dropout is active); the fitted model is explained in eval mode, and
            :class:`SupportStats` are computed in eval mode. ``"eval"``: train with every
            module in eval mode (BatchNorm keeps the classifier's statistics, Dropout off);
            it realises much less of the intended distancing (docs/research/gad.md).
        regress: ``"all"`` (default): the MSE covers every output (outputs of classes
            not concerned keep their original values as targets); ``"groups"``: only
            the outputs of the classes concerned.
        schedule: learning-rate schedule over the ``epochs`` of one support model:
            ``"cosine"`` (default: decay from ``lr`` to 0 over the steps, so that the final
            weights are not the noisy last steps of a constant-rate run) or ``"constant"``.
        seed: seeds the shuffling generator and, during training, the global RNG
            (Dropout in ``bn_mode="train"``); the caller's RNG state is restored.
        deterministic: on CUDA, use deterministic cuDNN kernels during training
            (restored afterwards), so that two fits with one seed match bit for bit.
        eval_batch_size: batch size of the inference passes (targets and statistics).
    """

    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 32
    init: str = "warm"
    bn_mode: str = "train"
    regress: str = "all"
    schedule: str = "cosine"
    seed: int = 0
    deterministic: bool = True
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        if not (isinstance(self.epochs, int) and self.epochs >= 0):
            raise ConfigError(f"epochs must be an int >= 0, got {self.epochs!r}")
        if not (self.lr > 0):
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        for name in ("batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        for name, valid in (("init", INITS), ("bn_mode", BN_MODES), ("regress", REGRESS), ("schedule", SCHEDULES)):
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return asdict(self)


@dataclass(frozen=True)
class SupportStats:
    """What one trained support model achieved on the training images of its task.

    The *margin* of an image is :func:`~cleargrad.gad.distancing.group_margin`: how far
    its own group's output leads the other group's. Algorithm 1 asks support model
    ``s`` to raise the mean margin of the ``G1`` images by ``α_1`` and that of the ``G2``
    images by ``α_2`` (the *intended gain*); ``gain_*`` is what it achieved, taken
    relative to the original model on the same images, and ``fidelity_* = gain_* / α_*``
    (1 = the distancing is fully realised; NaN when ``α = 0``).

    Attributes:
        alpha: the distancing constants ``(α_1, α_2)`` of this step.
        mse: final MSE to the distanced targets (over the regressed outputs).
        agreement: fraction of images whose argmax equals the *original model's* argmax.
            It is expected to fall below 1 on images the original model misclassifies:
            the targets push every image towards its own label's group.
        margin_first: mean margin of the ``G1`` images under the support model.
        margin_second: mean margin of the ``G2`` images under the support model.
        margin_first_orig: mean margin of the ``G1`` images under the original model.
        margin_second_orig: mean margin of the ``G2`` images under the original model.
        accuracy: fraction of images whose argmax (over all outputs) equals the label,
            under the support model.
        accuracy_orig: the same under the original model (the support model should not
            fall below it).
    """

    alpha: tuple[float, float]
    mse: float
    agreement: float
    margin_first: float
    margin_second: float
    margin_first_orig: float = math.nan
    margin_second_orig: float = math.nan
    accuracy: float = math.nan
    accuracy_orig: float = math.nan

    @property
    def gain_first(self) -> float:
        """Realised mean margin gain of the ``G1`` images (support minus original)."""
        return self.margin_first - self.margin_first_orig

    @property
    def gain_second(self) -> float:
        """Realised mean margin gain of the ``G2`` images (support minus original)."""
        return self.margin_second - self.margin_second_orig

    @property
    def fidelity_first(self) -> float:
        """``gain_first / α_1`` (NaN when ``α_1 = 0``)."""
        return self.gain_first / self.alpha[0] if self.alpha[0] > 0 else math.nan

    @property
    def fidelity_second(self) -> float:
        """``gain_second / α_2`` (NaN when ``α_2 = 0``)."""
        return self.gain_second / self.alpha[1] if self.alpha[1] > 0 else math.nan

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (with the derived gains and fidelities)."""
        d = asdict(self)
        d["alpha"] = list(self.alpha)
        for k in ("gain_first", "gain_second", "fidelity_first", "fidelity_second"):
            d[k] = getattr(self, k)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SupportStats:
        """Inverse of :meth:`to_dict` (derived values are recomputed; missing new fields are NaN)."""
        names = [f.name for f in fields(cls)]
        kw: dict[str, Any] = {k: (math.nan if d.get(k) is None else d[k]) for k in names if k in d}
        kw["alpha"] = tuple(float(v) for v in d["alpha"])
        return cls(**kw)


def model_outputs(
    model: nn.Module, x: torch.Tensor, output: OutputSelector = None, batch_size: int = 256
) -> torch.Tensor:
    """The model's ``(n, C)`` outputs on ``x`` (CPU tensor), computed batch by batch on the model's device."""
    device = _device(model)
    outs = []
    with torch.no_grad():
        for sl in chunk_slices(x.shape[0], batch_size):
            outs.append(select_output(model(x[sl].to(device)), output).detach().cpu())
    return torch.cat(outs)


def _device(model: nn.Module) -> torch.device:
    p: torch.Tensor | None = next(model.parameters(), None)
    if p is None:
        p = next(model.buffers(), None)
    return p.device if p is not None else torch.device("cpu")


@contextlib.contextmanager
def _reproducible(seed: int, device: torch.device, deterministic: bool) -> Iterator[None]:
    """Seed the global RNG inside (restoring the caller's state) and pin cuDNN kernels."""
    devices = [device.index or 0] if device.type == "cuda" else []
    flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if deterministic:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        try:
            yield
        finally:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags


def _fresh_copy(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model)
    for p in m.parameters():
        p.grad = None
        p.requires_grad_(True)
    return m


def _stats(
    m: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    logits: torch.Tensor,
    targets: torch.Tensor,
    cols: list[int],
    grouping: Grouping,
    alpha: tuple[float, float],
    settings: TrainSettings,
    output: OutputSelector,
) -> SupportStats:
    out = model_outputs(m, x, output, settings.eval_batch_size)
    mse = float(((out[:, cols] - targets[:, cols]) ** 2).mean())
    agree = float((out.argmax(1) == logits.argmax(1)).double().mean())
    acc = float((out.argmax(1) == labels).double().mean())
    acc0 = float((logits.argmax(1) == labels).double().mean())
    margin, margin0 = group_margin(out, labels, grouping), group_margin(logits, labels, grouping)
    first = grouping.in_first(labels)
    return SupportStats(
        alpha, mse, agree, float(margin[first].mean()), float(margin[~first].mean()),
        float(margin0[first].mean()), float(margin0[~first].mean()), acc, acc0,
    )


def train_support_models(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    logits: torch.Tensor,
    grouping: Grouping,
    alphas: torch.Tensor,
    settings: TrainSettings,
    output: OutputSelector = None,
    progress: bool = True,
    description: str = "GAD",
    checkpoint: SupportCheckpoint | None = None,
    task_index: int = 0,
) -> tuple[list[nn.Module], list[SupportStats]]:
    """Train one support model per row of ``alphas`` (``(S, 2)``); the original model is only copied.

    ``x``, ``labels``, ``logits`` are the training images of the classes concerned,
    their labels and the original model's outputs (all on the CPU; batches go to the
    model's device). Returns the support models (eval mode, parameters frozen) and
    their :class:`SupportStats`.

    With a bound ``checkpoint`` (:class:`~cleargrad.gad.checkpoint.FitCheckpoint`),
    each trained model is saved with the random state after it, and models saved by an
    earlier run (task ``task_index``) are loaded instead of trained: the result equals an
    uninterrupted run.
    """
    device = _device(model)
    cols = list(range(logits.shape[1])) if settings.regress == "all" else list(grouping.classes)
    n = x.shape[0]
    shuffle = torch.Generator().manual_seed(settings.seed)
    steps_per_epoch = -(-n // settings.batch_size)
    models: list[nn.Module] = []
    stats: list[SupportStats] = []
    previous = model
    with progress_bar(quiet=not progress, transient=True) as bar, _reproducible(
        settings.seed, device, settings.deterministic
    ):
        steps = len(alphas) * settings.epochs * steps_per_epoch
        task = bar.add_task(description, total=steps, info="") if bar else NO_TASK
        for s, alpha in enumerate(alphas.tolist()):
            targets = distance_targets(logits, labels, grouping, alpha)
            m = _fresh_copy(previous if settings.init == "warm" else model)
            if checkpoint is not None and checkpoint.finished(task_index, s):
                st = checkpoint.restore(task_index, s, m, shuffle, device)
                _freeze(m)
                stats.append(st)
                models.append(m)
                previous = m
                if bar:
                    bar.update(task, advance=settings.epochs * steps_per_epoch, info=f"model {s + 1} resumed")
                continue
            m.train(settings.bn_mode == "train")
            opt = torch.optim.Adam(m.parameters(), lr=settings.lr)
            total, step = settings.epochs * steps_per_epoch, 0
            for epoch in range(settings.epochs):
                order = torch.randperm(n, generator=shuffle)
                for sl in chunk_slices(n, settings.batch_size):
                    if settings.schedule == "cosine":
                        for g in opt.param_groups:
                            g["lr"] = settings.lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
                    step += 1
                    idx = order[sl]
                    out = select_output(m(x[idx].to(device)), output)
                    loss = torch.nn.functional.mse_loss(out[:, cols], targets[idx][:, cols].to(out))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if bar:
                        info = f"model {s + 1}/{len(alphas)} epoch {epoch + 1} loss {loss:.4g}"
                        bar.update(task, advance=1, info=info)
            _freeze(m)
            stats.append(_stats(m, x, labels, logits, targets, cols, grouping, tuple(alpha), settings, output))
            models.append(m)
            previous = m
            if checkpoint is not None:
                checkpoint.save(task_index, s, m, stats[-1], shuffle, device)
    return models, stats


def _freeze(m: nn.Module) -> None:
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
        p.grad = None
