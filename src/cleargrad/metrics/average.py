"""Average Drop, Average Gain and Average Increase (spec 7.1).

For image ``i`` with class ``c``: ``Y = p_c(x)`` and ``O = p_c(mask_image(x, S))``
where ``S`` is the explanation scaled to ``[0, 1]``. Per image (the dataset value
is the mean over images):

- AD = ``100 max(0, Y - O) / Y`` (lower is better);
- AG = ``100 max(0, O - Y) / (1 - Y)`` (higher is better; ``ag_denominator="y"``
  divides by ``Y`` as printed in the interpretable-gradient slides);
- AI (Increase in Confidence) = ``100 * 1[O > Y]`` (higher is better).

Denominators get ``+ eps`` (machine epsilon of the dtype).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core import check_input
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError
from .base import metric
from .maps import blank_rows, mark_undefined, normalize_01, prepare_maps
from .scoring import NormStat, chunked_scores, clean_scores, evaluating, mask_image

__all__ = [
    "average_drop",
    "average_gain",
    "average_increase",
    "average_values",
    "masked_confidence",
    "masked_scores",
    "unit_map",
]

UNIT_SCALINGS = ("max", "minmax", None)


def unit_map(s: torch.Tensor, normalize: str | None = "max") -> torch.Tensor:
    """Scale ``(N, 1, H, W)`` maps to ``[0, 1]`` for masking.

    ``"max"`` (default): negative values to 0, then divide by the maximum (an
    all-zero map stays 0), so zero importance masks a pixel out completely and a
    map that is already in ``[0, 1]`` with maximum 1 is unchanged. ``"minmax"``:
    ``(S - min) / (max - min + eps)`` (as CAM post-processing; a constant map becomes
    0). ``None``: the map is used as given and must lie in ``[0, 1]``.
    """
    if normalize == "max":
        s = s.clamp(min=0)
        peak = s.flatten(1).amax(1).view(-1, *([1] * (s.dim() - 1)))
        return torch.where(peak > 0, s / peak.clamp(min=torch.finfo(s.dtype).tiny), s)
    if normalize == "minmax":
        return normalize_01(s)
    if normalize is None:
        if bool((s < 0).any() or (s > 1).any()):
            raise ConfigError("normalize=None needs maps in [0, 1]; use normalize='max' or 'minmax'")
        return s
    raise ConfigError(f"normalize must be one of {UNIT_SCALINGS}, got {normalize!r}")


def masked_confidence(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    normalize: str | None = "max",
    space: str = "pixel",
    mean: NormStat = None,
    std: NormStat = None,
    reduction: str = "abs_sum",
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Y, O)``: class probability on ``x`` and on ``x`` masked by the explanation, each ``(N,)``.

    The shared computation behind :func:`average_drop`, :func:`average_gain` and
    :func:`average_increase` (two batched forward passes of ``N`` images); call it
    once and apply the formulas yourself to get all three without recomputing.
    ``O`` is NaN for an image whose unit map (after ``reduction`` and ``normalize``)
    is all zero: the mask keeps nothing, so AD/AG/AI are undefined there.
    """
    check_input(x, ndim=4)
    s = unit_map(prepare_maps(explanation, x, reduction=reduction), normalize)
    with evaluating(model):
        t, y = clean_scores(model, x, target, score="prob", output=output, batch_size=batch_size)
        o = masked_scores(model, x, s, t, space=space, mean=mean, std=std, output=output, batch_size=batch_size)
    return y, o.to(y.dtype)


def masked_scores(
    model: nn.Module,
    x: torch.Tensor,
    s: torch.Tensor,
    t: torch.Tensor,
    *,
    space: str = "pixel",
    mean: NormStat = None,
    std: NormStat = None,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """``O``: probability of class ``t`` on ``x`` masked by the unit maps ``s`` (NaN where
    ``s`` is all zero), one pass of ``N`` images. Call inside
    :func:`~cleargrad.metrics.scoring.evaluating`."""
    o = chunked_scores(
        model,
        lambda sl: mask_image(x[sl], s[sl], space=space, mean=mean, std=std),
        t,
        sample_shape=x.shape[1:],
        score="prob",
        output=output,
        batch_size=batch_size,
    )
    return torch.where(blank_rows(s).to(o.device), torch.full_like(o, float("nan")), o)


_ARGS_DOC = """
    Args:
        model: the classifier (left exactly as found; evaluated in eval mode).
        x: normalised input batch ``(N, C, H, W)``.
        explanation: ``(N, C, H, W)`` attribution (reduced with ``reduction``),
            ``(N, 1, H, W)`` or ``(N, H, W)`` map, tensor or numpy array; resized
            bilinearly to ``x`` if needed.
        target: class per image, None for the class predicted on ``x``, or a target
            object (a list: one per image; :mod:`cleargrad.core.target_objects`): its
            score is used as it is (``SoftmaxTarget(c)`` gives class ``c``'s probability).
        normalize: scaling of the map to ``[0, 1]``: ``"max"``, ``"minmax"`` or None
            (see :func:`unit_map`).
        space: ``"pixel"`` (de-normalise with ``mean``/``std``, multiply, re-normalise)
            or ``"normalized"`` (multiply ``x`` directly); see
            :func:`cleargrad.metrics.mask_image`.
        mean, std: per-channel normalisation of ``x`` (None: ``x`` is in pixel space).
        reduction: 2-D reduction of the attribution, any channel count (a signed
            1-channel attribution becomes ``|a|``); ``"none"``: a 1-channel map used as given.
        output: selector of the class scores for models returning tuples/dicts (what a
            target object scores).
        batch_size: images per forward pass.

    Returns:
        ``(N,)`` per-image values in percent; the dataset value is their mean. An
        image whose map is all zero (after ``reduction`` and ``normalize``: the mask
        keeps nothing) gets NaN with a ``RuntimeWarning``, counted by
        :func:`cleargrad.metrics.nan_summary`.
"""


def _eps(t: torch.Tensor) -> float:
    return torch.finfo(t.dtype).eps


def average_values(name: str, y: torch.Tensor, o: torch.Tensor, ag_denominator: str = "1-y") -> torch.Tensor:
    """AD, AG or AI (``name``) per image from ``(Y, O)`` of :func:`masked_confidence`
    (NaN where ``O`` is, with a warning)."""
    if name == "average_drop":
        v = 100 * (y - o).clamp(min=0) / (y + _eps(y))
    elif name == "average_gain":
        if ag_denominator not in ("1-y", "y"):
            raise ConfigError(f"ag_denominator must be '1-y' or 'y', got {ag_denominator!r}")
        den = 1 - y if ag_denominator == "1-y" else y
        v = 100 * (o - y).clamp(min=0) / (den + _eps(y))
    elif name == "average_increase":
        v = 100 * (o > y).to(y.dtype)
    else:
        raise ConfigError(f"unknown average metric {name!r}")
    return mark_undefined(v, o.isnan(), name, stacklevel=4)


@metric(direction="lower", category="faithfulness", shares="masked")
def average_drop(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    output: OutputSelector = None,
    **kw: Any,
):
    """Average Drop (%): relative confidence lost when only the explained pixels are kept.

    ``AD_i = 100 max(0, Y_i - O_i) / (Y_i + eps)``.
    """
    y, o = masked_confidence(model, x, explanation, target, output=output, **kw)
    return average_values("average_drop", y, o)


@metric(direction="higher", category="faithfulness", shares="masked", shared_options=("ag_denominator",))
def average_gain(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    ag_denominator: str = "1-y",
    output: OutputSelector = None,
    **kw: Any,
):
    """Average Gain (%): relative confidence gained when only the explained pixels are kept.

    ``AG_i = 100 max(0, O_i - Y_i) / (1 - Y_i + eps)`` (``ag_denominator="1-y"``, the
    authors' code, default) or ``/ (Y_i + eps)`` (``ag_denominator="y"``, the slides).
    """
    if ag_denominator not in ("1-y", "y"):
        raise ConfigError(f"ag_denominator must be '1-y' or 'y', got {ag_denominator!r}")
    y, o = masked_confidence(model, x, explanation, target, output=output, **kw)
    return average_values("average_gain", y, o, ag_denominator)


@metric(direction="higher", category="faithfulness", shares="masked")
def average_increase(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    output: OutputSelector = None,
    **kw: Any,
):
    """Average Increase (%) / Increase in Confidence: whether masking by the map raises the confidence.

    ``AI_i = 100 * 1[O_i > Y_i]``.
    """
    y, o = masked_confidence(model, x, explanation, target, output=output, **kw)
    return average_values("average_increase", y, o)


for _f in (average_drop, average_gain, average_increase):
    _f.__doc__ = (_f.__doc__ or "") + "\n    Keyword options are those of :func:`masked_confidence`:\n" + _ARGS_DOC
