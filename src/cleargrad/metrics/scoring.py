"""Running the model for a metric: guarded, in eval mode, chunked, without gradients.

Every metric that takes a model goes through :func:`evaluating` (the model's flags,
grads and buffers are restored on exit, also after an error, and it runs in eval
mode for the duration of the call) and computes its class scores with
:func:`chunked_scores`: perturbed inputs are built chunk by chunk on the input's
device and scored in large batched forward passes under ``torch.inference_mode()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..core import (
    chunk_slices,
    fast_layout,
    gather_scores,
    memory_guard,
    plan_chunk,
    preserved_state,
    resolve_targets,
    run_model,
    select_output,
)
from ..core.target_objects import class_probabilities
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError, InputError

__all__ = [
    "SCORE_KINDS",
    "as_score",
    "chunked_scores",
    "class_scores",
    "clean_scores",
    "evaluating",
    "from_pixel",
    "mask_image",
    "targets_for",
    "to_pixel",
]

SCORE_KINDS = ("prob", "logit")

NormStat = float | Sequence[float] | torch.Tensor | None


def _check_kind(score: str) -> None:
    if score not in SCORE_KINDS:
        raise ConfigError(f"score must be one of {SCORE_KINDS}, got {score!r}")


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Guard ``model`` for a metric: eval mode, no parameter grads, everything restored;
    channels-last model inputs allowed (:mod:`cleargrad.runtime.layout`)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    with preserved_state(model, allow_train_mode=True), fast_layout(model):
        model.eval()
        yield


def as_score(logits: torch.Tensor, score: str, output: OutputSelector) -> torch.Tensor:
    """``logits`` as the metric's score kind: softmax probabilities for ``"prob"``, except
    when the columns are target objects' scores (a bound target selector: the target's
    own score is used as it is; :class:`~cleargrad.core.target_objects.SoftmaxTarget`
    gives a probability)."""
    return class_probabilities(logits, output) if score == "prob" else logits


def class_scores(model: nn.Module, inputs: torch.Tensor, *, score: str = "prob", output: OutputSelector = None):
    """``(M, C)`` softmax probabilities (``score="prob"``) or logits of one chunk."""
    s = select_output(run_model(model, inputs), output)
    return as_score(s, score, output)


def chunked_scores(
    model: nn.Module,
    build: Callable[[slice], torch.Tensor],
    targets: torch.Tensor,
    *,
    sample_shape: Sequence[int],
    score: str = "prob",
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Score ``len(targets)`` inputs built chunk by chunk; returns ``(M,)`` on ``targets``' device.

    ``build(sl)`` returns the inputs ``sl`` of the (virtual) expanded batch; each is
    scored for ``targets[sl]``. ``batch_size`` is the chunk length (default: about
    2.4 million input elements per chunk). Runs under ``torch.inference_mode()``;
    call it inside :func:`evaluating`.
    """
    _check_kind(score)
    total = int(targets.shape[0])
    if total == 0:
        return torch.empty(0, device=targets.device)
    chunk = plan_chunk(model, sample_shape, total=total, requested=batch_size, device=targets.device, grad=False)
    out: torch.Tensor | None = None
    with torch.inference_mode():
        for sl in chunk_slices(total, chunk):
            with memory_guard(sl.stop - sl.start, sample_shape, targets.device):
                s = gather_scores(class_scores(model, build(sl), score=score, output=output), targets[sl])
            if out is None:  # the model's output dtype, on the targets' device
                out = torch.empty(total, dtype=s.dtype, device=targets.device)
            out[sl] = s
    assert out is not None
    return out.clone()  # a normal tensor, usable outside inference mode


def clean_scores(
    model: nn.Module,
    x: torch.Tensor,
    target: TargetLike,
    *,
    score: str = "prob",
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (``None`` = argmax on ``x``) and the ``(N,)`` scores of ``x`` for them."""
    _check_kind(score)
    chunk = plan_chunk(model, x.shape[1:], total=x.shape[0], requested=batch_size, device=x.device, dtype=x.dtype,
                       grad=False)
    parts = []
    with torch.inference_mode():
        for sl in chunk_slices(x.shape[0], chunk):
            with memory_guard(sl.stop - sl.start, x.shape[1:], x.device):
                parts.append(select_output(run_model(model, x[sl]), output))
        logits = torch.cat(parts)
    logits = logits.clone()
    t = resolve_targets(target, x.shape[0], scores=logits, device=x.device)
    return t, gather_scores(as_score(logits, score, output), t)


def targets_for(
    model: nn.Module,
    x: torch.Tensor,
    target: TargetLike,
    *,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Resolve ``target`` for ``x``: None = argmax on ``x`` (one pass over the batch);
    otherwise range-checked against the class count read from one image's forward."""
    if target is None:
        return clean_scores(model, x, None, score="logit", output=output, batch_size=batch_size)[0]
    with torch.inference_mode():
        num_classes = select_output(run_model(model, x[:1]), output).shape[1]
    return resolve_targets(target, x.shape[0], num_classes, device=x.device)


def _stat(v: NormStat, x: torch.Tensor, name: str) -> torch.Tensor | None:
    if v is None:
        return None
    t = torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(-1)
    if t.numel() not in (1, x.shape[1]):
        raise InputError(f"{name} has {t.numel()} values but x has {x.shape[1]} channels")
    if not bool(torch.isfinite(t).all()) or (name == "std" and not bool((t > 0).all())):
        need = "positive finite numbers (x is divided by it)" if name == "std" else "finite numbers"
        raise InputError(f"{name} must be {need}: the per-channel normalisation of x; got {t.tolist()}")
    return t.reshape(1, -1, *([1] * (x.dim() - 2)))


def to_pixel(x: torch.Tensor, mean: NormStat = None, std: NormStat = None) -> torch.Tensor:
    """Undo the input normalisation: ``x * std + mean`` (identity when both are None)."""
    m, s = _stat(mean, x, "mean"), _stat(std, x, "std")
    out = x if s is None else x * s
    return out if m is None else out + m


def from_pixel(p: torch.Tensor, mean: NormStat = None, std: NormStat = None) -> torch.Tensor:
    """Apply the input normalisation: ``(p - mean) / std`` (identity when both are None)."""
    m, s = _stat(mean, p, "mean"), _stat(std, p, "std")
    out = p if m is None else p - m
    return out if s is None else out / s


def mask_image(
    x: torch.Tensor,
    saliency: torch.Tensor,
    *,
    space: str = "pixel",
    mean: NormStat = None,
    std: NormStat = None,
) -> torch.Tensor:
    """Multiply the image by a ``[0, 1]`` map broadcast over channels (spec section 6).

    ``space="pixel"``: de-normalise with ``mean``/``std``, multiply, re-normalise (a
    masked-out pixel is black); ``space="normalized"``: multiply the normalised tensor
    directly (a masked-out pixel is the normalisation mean). With ``mean = std = None``
    the input is taken to be in pixel space already and both spaces coincide.
    """
    if space == "normalized":
        return x * saliency
    if space != "pixel":
        raise ConfigError(f"space must be 'pixel' or 'normalized', got {space!r}")
    return from_pixel(to_pixel(x, mean, std) * saliency, mean, std)
