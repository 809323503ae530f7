"""Targets (which class to explain) and model-output selection."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Union

import numpy as np
import torch

from ..errors import InputError, TargetError

__all__ = [
    "TargetLike",
    "OutputSelector",
    "default_output",
    "pick_output",
    "select_output",
    "resolve_targets",
    "gather_scores",
]

#: a class index form, or a target object / callable / list of them (see :mod:`cleargrad.core.target_objects`)
TargetLike = Union[
    int, Sequence[int], torch.Tensor, None, Callable[[Any], torch.Tensor], Sequence[Callable[[Any], torch.Tensor]]
]
OutputSelector = Union[Callable[[Any], torch.Tensor], str, int, None]

#: inside a public call: one "all scores finite" flag per forward pass (see core.options)
_score_watch: ContextVar[list[torch.Tensor] | None] = ContextVar("cleargrad_score_watch", default=None)


def default_output(out: Any) -> Any:
    """What ``output=None`` selects from a forward's result: the result itself, except for
    an object with a ``logits`` tensor attribute that is not a tensor itself (HuggingFace's
    ``ModelOutput`` such as ``ImageClassifierOutput``, a named tuple with a ``logits``
    field), whose ``logits`` are taken. A plain dict or tuple is left as it is (name its
    entry with ``output=``)."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    return logits if isinstance(logits, torch.Tensor) else out


def pick_output(out: Any, output: OutputSelector = None) -> Any:
    """Apply the ``output`` selector to a forward's result, without checking its shape.

    ``output`` may be ``None`` (the result as it is, or its ``logits`` for a HuggingFace
    ``ModelOutput``: :func:`default_output`), a callable applied to the result, a dict
    key, or a tuple/list index.
    """
    if output is None:
        return default_output(out)
    if callable(output):
        return output(out)
    if isinstance(out, Mapping):
        if output not in out:
            raise InputError(f"output={output!r} is not a key of the model's output; keys: {list(out)}")
        return out[output]
    if isinstance(out, (tuple, list)):
        if not isinstance(output, int) or not -len(out) <= output < len(out):
            raise InputError(
                f"output={output!r} is not a valid index into the model's {len(out)}-tuple output"
            )
        return out[output]
    raise InputError(f"output={output!r} given but the model returned a single tensor")


def select_output(out: Any, output: OutputSelector = None) -> torch.Tensor:
    """Pick the class-score tensor ``(N, C)`` from whatever the model's forward returned.

    ``output`` may be ``None`` (the forward returns the logits, or an object holding them
    as ``.logits``, e.g. a HuggingFace ``ImageClassifierOutput``), a callable applied to
    the forward's result, a dict key, or a tuple/list index (see :func:`pick_output`).
    """
    out = pick_output(out, output)
    if not isinstance(out, torch.Tensor):
        raise InputError(
            f"the model returned {type(out).__name__}, not a tensor of class scores; pass "
            "output=<key, index or callable> to select the (N, C) scores"
        )
    if out.dim() != 2:
        raise InputError(
            f"the model's class scores must have shape (N, C), got {tuple(out.shape)}; pass "
            "output=<callable> to reduce them to one score per class"
        )
    watch = _score_watch.get()
    if watch is not None:  # inside a public call: note non-finite scores (checked once at its end)
        watch.append(torch.isfinite(out.detach()).all(dim=1))
    return out


def _check_int64(v: int) -> None:
    """A class index beyond int64 cannot be any model's class: a TargetError, not OverflowError."""
    if not -(2**63) <= v < 2**63:
        raise TargetError(f"target {v} is not a class index (far beyond any number of classes); give 0 .. C-1")


def resolve_targets(
    target: TargetLike,
    n: int,
    num_classes: int | None = None,
    *,
    scores: torch.Tensor | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Turn a user target into a ``LongTensor`` of shape ``(n,)``.

    Args:
        target: an int (same class for every image), a sequence of ints, a 1-D
            integer tensor or numpy array (one per image), or ``None`` for the argmax
            of ``scores``. numpy integer scalars count as ints.
        n: the batch size.
        num_classes: the number of classes, for the range check (taken from
            ``scores`` when given).
        scores: the model's ``(N, C)`` output; required when ``target`` is None.
        device: where to put the result (default: ``scores``' device or CPU).
    """
    if scores is not None:
        num_classes = scores.shape[1]
        device = device or scores.device
    device = device or torch.device("cpu")
    if target is None:
        if scores is None:
            raise TargetError("target=None needs the model's scores to take their argmax")
        return scores.detach().argmax(dim=1)
    if isinstance(target, (bool, np.bool_)):
        raise TargetError("target must be an int, a sequence of ints or a 1-D LongTensor, not bool")
    if isinstance(target, np.ndarray):
        if target.dtype.kind not in "iu":
            raise TargetError(f"target array must hold integers, got dtype {target.dtype}")
        target = torch.from_numpy(np.ascontiguousarray(target))
    if isinstance(target, (int, np.integer)):
        _check_int64(int(target))
        t = torch.full((n,), int(target), dtype=torch.long, device=device)
    elif isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TargetError(f"target tensor must hold integers, got dtype {target.dtype}")
        if target.dim() == 0:
            t = target.reshape(1).expand(n)
        elif target.dim() == 1:
            t = target
        else:
            raise TargetError(
                f"target tensor must be 1-D (one class per image), got shape {tuple(target.shape)}"
            )
        t = t.to(device=device, dtype=torch.long)
    elif isinstance(target, Sequence) and not isinstance(target, (str, bytes)):
        vals = list(target)
        ints = [int(v) for v in vals if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))]
        if len(ints) != len(vals):
            raise TargetError(f"target sequence must hold ints, got {vals!r}")
        for i in ints:
            _check_int64(i)
        t = torch.tensor(ints, dtype=torch.long, device=device)
    else:
        raise TargetError(
            f"target must be None, an int, a sequence of ints or a 1-D LongTensor, got "
            f"{type(target).__name__}"
        )
    if t.shape[0] != n:
        raise TargetError(
            f"got {t.shape[0]} targets for a batch of {n} images; give one target per image "
            "or a single int for all"
        )
    if num_classes is not None and n > 0:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise TargetError(
                f"target {bad} is out of range for a model with {num_classes} classes "
                f"(valid: 0..{num_classes - 1})"
            )
    return t


def gather_scores(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``scores[i, targets[i]]`` for every row, shape ``(N,)``."""
    return scores.gather(1, targets.view(-1, 1).to(scores.device)).squeeze(1)
