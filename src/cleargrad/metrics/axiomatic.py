"""Axiomatic and complexity properties of one explanation: completeness, effective complexity.

- :func:`completeness` (Sundararajan et al. 2017, Kindermans et al. 2019): an attribution
  is complete when its sum equals the change of the class score from a baseline input to
  ``x``. Reported as the gap ``|sum_i a_i - (f_c(x) - f_c(baseline))|`` (relative to
  ``|f_c(x) - f_c(baseline)|`` with ``relative=True``); lower is better. Quantus's
  ``Completeness`` returns the exact float equality of the two, which is False for any
  attribution computed in floating point (Integrated Gradients with finite steps), so
  we report the gap it thresholds.
- :func:`effective_complexity` (Nguyen & Martinez 2020): the number of features whose
  (absolute, max-normalised) relevance exceeds ``eps``; lower is simpler. Quantus
  normalises by the largest value of the whole *batch* by default, so an image's count
  depends on its batch mates; we normalise each explanation by its own maximum
  (``normalise=False`` counts the raw values, which equals Quantus with
  ``normalise=False``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core import check_input
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError, InputError
from .base import metric
from .maps import _batched, as_float_tensor, blank_rows, mark_undefined, prepare_attributions, prepare_maps
from .scoring import clean_scores, evaluating

__all__ = ["completeness", "effective_complexity"]


@metric(direction="lower", category="axiomatic")
def completeness(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    baseline: float | torch.Tensor = 0.0,
    score: str = "logit",
    relative: bool = False,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Completeness gap: |sum of the attribution - (f_c(x) - f_c(baseline))|; lower is better.

    Args:
        model: the classifier (left exactly as found; evaluated in eval mode).
        x: input batch ``(N, C, H, W)``.
        explanation: the pixel attribution ``(N, C, H, W)`` (a 1-channel map is summed
            as given); its signed sum is compared.
        target: class per image, or None (the predicted class).
        baseline: the reference input: a value or a tensor broadcast to ``x`` (the
            baseline the attribution was computed from, e.g. Integrated Gradients').
        score: ``"logit"`` (default; IG is complete for the logit) or ``"prob"``.
        relative: divide by ``|f_c(x) - f_c(baseline)|`` (NaN with a warning where it is 0).
        output, batch_size: as for the other metrics.

    Returns: ``(N,)`` gaps; an all-zero attribution is undefined (NaN with a warning, the
    project's rule for a map that says nothing). Cost: two passes over the batch.
    """
    check_input(x, ndim=4)
    a = prepare_attributions(explanation, x)
    if isinstance(baseline, torch.Tensor):
        try:
            base = torch.broadcast_to(baseline.to(device=x.device, dtype=x.dtype), x.shape)
        except RuntimeError as err:
            raise InputError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to x "
                             f"{tuple(x.shape)}") from err
    else:
        base = torch.full_like(x, float(baseline))
    with evaluating(model):
        t, fx = clean_scores(model, x, target, score=score, output=output, batch_size=batch_size)
        _, fb = clean_scores(model, base, t, score=score, output=output, batch_size=batch_size)
    delta = (fx - fb).to(a.dtype)
    gap = (a.reshape(a.shape[0], -1).sum(1) - delta).abs()
    blank = blank_rows(a)
    gap = mark_undefined(gap, blank, "completeness", "an all-zero attribution")
    if relative:
        zero = (delta == 0) & ~blank
        gap = mark_undefined(gap / torch.where(zero, torch.ones_like(delta), delta.abs()), zero, "completeness",
                             "a zero score change between baseline and input")
    return gap


@metric(direction="lower", category="complexity", needs_model=False)
def effective_complexity(
    explanation: Any, *, eps: float = 1e-5, normalise: bool = True, reduction: str | None = None
) -> torch.Tensor:
    """Effective complexity: the number of features whose absolute relevance exceeds eps; lower is better.

    ``normalise``: divide each explanation by its largest magnitude first (so ``eps`` is a
    fraction of the peak). ``reduction``: None counts every channel of a pixel
    attribution; a reduction name counts pixels of the 2-D map. An all-zero explanation
    is undefined (NaN with a warning).
    """
    if eps < 0:
        raise ConfigError(f"eps must be >= 0, got {eps}")
    a = _batched(as_float_tensor(explanation), None, "explanation") if reduction is None \
        else prepare_maps(explanation, reduction=reduction)
    v = a.reshape(a.shape[0], -1).abs()
    if normalise:
        mx = v.amax(1, keepdim=True)
        v = v / torch.where(mx > 0, mx, torch.ones_like(mx))
    out = (v > eps).sum(1).to(v.dtype)
    return mark_undefined(out, blank_rows(v), "effective_complexity", "an all-zero explanation")


