"""Explanations from any source turned into the tensors the metrics work on.

An explanation may come from cleargrad, Captum, pytorch-grad-cam or a numpy array;
it may be ``(N, C, H, W)`` (pixel attribution), ``(N, 1, H, W)`` or ``(N, H, W)``
(a map), and of a different resolution than the input (a CAM before upsampling).

The 2-D reduction (``reduction``, default ``"abs_sum"`` = ``|sum_c a_c|``) applies to
every explanation, whatever its channel count: a signed 1-channel pixel attribution
(Input x Gradient or Integrated Gradients on a grayscale model, Saliency with
``abs=False``) is ranked and thresholded by ``|a|``, exactly as a 3-channel one is by
``|sum_c a_c|``. A non-negative map (every CAM with its default ``relu=True``, a GAD
fused map, a saliency magnitude) is unchanged by every reduction. To use a signed
1-channel map as given (e.g. a CAM computed with ``relu=False`` whose negative part
should rank last), say so with ``reduction="none"``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..core import REDUCTIONS, to_2d
from ..core.maps import minmax_normalize
from ..errors import ConfigError, InputError

__all__ = [
    "MAP_REDUCTIONS",
    "as_float_tensor",
    "blank_rows",
    "mark_undefined",
    "normalize_01",
    "prepare_attributions",
    "prepare_maps",
]

#: Reductions a metric accepts: those of :func:`cleargrad.core.to_2d` plus ``"none"``
#: (the explanation is already a 1-channel map: use its values as given).
MAP_REDUCTIONS = (*REDUCTIONS, "none")


def as_float_tensor(a: Any, like: torch.Tensor | None = None, *, name: str = "explanation") -> torch.Tensor:
    """``a`` (tensor or numpy array) as a floating tensor on ``like``'s device and dtype.

    Raises:
        InputError: not array-like, or contains NaN / Inf.
    """
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(np.ascontiguousarray(a))
    if not isinstance(a, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor or a numpy array, got {type(a).__name__}")
    a = a.detach()
    if like is not None:
        dtype = like.dtype if like.is_floating_point() else torch.float32
        a = a.to(device=like.device, dtype=dtype)
    elif not a.is_floating_point():
        a = a.float()
    if not bool(torch.isfinite(a).all()):
        raise InputError(
            f"{name} contains NaN or Inf values; a metric of such a map is undefined. Fix the method "
            "that produced it (e.g. a division by a zero norm) or replace the values with torch.nan_to_num."
        )
    return a


def _batched(a: torch.Tensor, n: int | None, name: str) -> torch.Tensor:
    """``a`` as ``(N, C, H, W)``: ``(H, W)`` is one image, ``(N, H, W)`` a batch of maps."""
    if a.dim() == 2:
        if n not in (None, 1):
            raise InputError(
                f"{name} has shape {tuple(a.shape)} (one map) but x holds {n} images; give one map per "
                "image as (N, H, W) or (N, 1, H, W)"
            )
        a = a[None, None]
    elif a.dim() == 3:
        a = a.unsqueeze(1)
    elif a.dim() != 4:
        raise InputError(f"{name} must have shape (N, C, H, W), (N, 1, H, W) or (N, H, W), got {tuple(a.shape)}")
    if n is not None and a.shape[0] != n:
        raise InputError(f"{name} holds {a.shape[0]} maps but x holds {n} images; give one explanation per image")
    return a


def prepare_maps(
    explanation: Any,
    x: torch.Tensor | None = None,
    *,
    reduction: str = "abs_sum",
    name: str = "explanation",
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """One 2-D importance map per image, shape ``(N, 1, H, W)``.

    The explanation is reduced with :func:`cleargrad.core.to_2d` whatever its channel
    count (``reduction``: ``abs_sum`` = ``|sum_c a_c|`` by default, ``sum_abs``,
    ``max_abs``, ``positive``), so a signed 1-channel pixel attribution becomes
    ``|a|`` (``positive``: ``max(a, 0)``); a non-negative map is unchanged by each of
    them. ``reduction="none"`` uses a 1-channel map as given (signed values kept)
    and refuses a multi-channel one. When ``x`` is given the map is moved to its
    device and dtype, its batch and channel count are checked against ``x``, and it
    is resized bilinearly (``align_corners=False``) to ``x``'s height and width if
    needed. Without ``x``, ``size`` (if given) is the ``(H, W)`` to resize to.

    Raises:
        ConfigError: unknown ``reduction``.
        InputError: bad shape, NaN/Inf, or a multi-channel explanation with
            ``reduction="none"``.
    """
    if reduction not in MAP_REDUCTIONS:
        raise ConfigError(f"unknown reduction {reduction!r}; valid: {', '.join(MAP_REDUCTIONS)}")
    a = _batched(as_float_tensor(explanation, x, name=name), None if x is None else x.shape[0], name)
    if a.shape[1] > 1 and x is not None and x.dim() == 4 and a.shape[1] != x.shape[1]:
        raise InputError(
            f"{name} has {a.shape[1]} channels but x has {x.shape[1]}; give a pixel attribution shaped "
            "like x or a 1-channel map"
        )
    if reduction == "none":
        if a.shape[1] > 1:
            raise InputError(
                f'reduction="none" uses a 1-channel map as given, but {name} has {a.shape[1]} channels; '
                f"choose a reduction to turn it into a map: {', '.join(REDUCTIONS)}"
            )
    else:
        a = to_2d(a, reduction)
    if x is not None:
        if x.dim() != 4:
            raise InputError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
        size = (int(x.shape[-2]), int(x.shape[-1]))
    if size is not None and tuple(a.shape[-2:]) != tuple(size):
        a = F.interpolate(a, size=tuple(size), mode="bilinear", align_corners=False)
    return a


def prepare_attributions(explanation: Any, x: torch.Tensor, *, name: str = "explanation") -> torch.Tensor:
    """An attribution that broadcasts against ``x``: ``(N, C, H, W)`` or ``(N, 1, H, W)``.

    Used by metrics that take the inner product of the attribution with a
    perturbation (infidelity): a 1-channel map is broadcast over the channels. A map
    of another resolution is resized bilinearly.
    """
    a = _batched(as_float_tensor(explanation, x, name=name), x.shape[0], name)
    if a.shape[1] not in (1, x.shape[1]):
        raise InputError(
            f"{name} has {a.shape[1]} channels but x has {x.shape[1]}; give a pixel attribution shaped like x "
            "or a 1-channel map"
        )
    if a.shape[-2:] != x.shape[-2:]:
        a = F.interpolate(a, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return a


def normalize_01(s: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-image min-max scaling of ``(N, ...)`` maps to ``[0, 1]``; a constant map becomes 0
    (:func:`cleargrad.core.maps.minmax_normalize`)."""
    return minmax_normalize(s, eps)


def blank_rows(a: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: which of the ``(N, ...)`` maps or attributions are zero everywhere."""
    return (a.reshape(a.shape[0], -1) == 0).all(1)


def mark_undefined(
    values: torch.Tensor,
    undefined: torch.Tensor,
    metric_name: str,
    reason: str = "an all-zero map",
    *,
    stacklevel: int = 3,
) -> torch.Tensor:
    """``values`` with NaN where ``undefined`` (``(N,)`` bool), with a ``RuntimeWarning`` naming the images.

    The metrics' rule for an explanation that says nothing (an all-zero map, an empty
    region): the value is undefined, NaN, never a number that would enter a mean
    silently; :func:`cleargrad.metrics.nan_summary` and the report count them.
    """
    undefined = undefined.to(values.device)
    if not bool(undefined.any()):
        return values
    idx = undefined.nonzero().flatten().tolist()
    shown = ", ".join(map(str, idx[:10])) + (", ..." if len(idx) > 10 else "")
    warnings.warn(
        f"{metric_name} is undefined for {reason} ({len(idx)} of {values.shape[0]} image(s): {shown}); "
        "returning NaN for them. Use cleargrad.metrics.nan_summary to average the others and count them.",
        RuntimeWarning,
        stacklevel=stacklevel,
    )
    nan = torch.full_like(values, float("nan"))
    return torch.where(undefined.view(-1, *([1] * (values.dim() - 1))), nan, values)
