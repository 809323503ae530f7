"""Complexity (entropy; Bhatt et al. 2020) and Sparseness (Gini index; Chalasani et al. 2020), spec 7.5.

Both look at ``v = |Phi|`` flattened per image (length ``n``). By default the
explanation is used as given (every channel of a pixel attribution counts, as in the
spec); ``reduction`` first reduces a multi-channel attribution to a 2-D map.
An all-zero explanation has no distribution of importance: the value is NaN, with a
warning, and :func:`cleargrad.metrics.nan_summary` counts it.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from .base import metric
from .maps import _batched, as_float_tensor, prepare_maps

__all__ = ["complexity", "sparseness"]


def _values(explanation: Any, reduction: str | None, metric_name: str) -> torch.Tensor:
    """``|Phi|`` as ``(N, n)``; rows of an all-zero explanation are flagged with a warning."""
    if reduction is None:
        a = _batched(as_float_tensor(explanation), None, "explanation")
    else:
        a = prepare_maps(explanation, reduction=reduction)
    v = a.reshape(a.shape[0], -1).abs()
    zero = v.sum(1) == 0
    if bool(zero.any()):
        idx = zero.nonzero().flatten().tolist()
        warnings.warn(
            f"{metric_name} is undefined for an all-zero explanation (images {idx}); returning NaN for them. "
            "Use cleargrad.metrics.nan_summary to average the others.",
            RuntimeWarning,
            stacklevel=3,
        )
    return v


@metric(direction="lower", category="complexity", needs_model=False, shares="map")
def complexity(explanation: Any, *, reduction: str | None = None) -> torch.Tensor:
    """Complexity: entropy of the importance distribution ``P = |Phi| / sum |Phi|`` (lower is simpler).

    ``-sum_i P_i ln P_i`` with ``0 ln 0 = 0``; range ``[0, ln n]``: a one-hot map gives
    0, a uniform map ``ln n``.

    Args:
        explanation: ``(N, ...)`` per-image explanations (tensor or numpy array);
            ``(N, H, W)`` and ``(N, C, H, W)`` alike.
        reduction: None (default: use every element) or a 2-D reduction of a
            multi-channel attribution (``"abs_sum"``, ``"sum_abs"``, ...).

    Returns:
        ``(N,)``; NaN (with a warning) for an all-zero explanation.
    """
    v = _values(explanation, reduction, "complexity")
    total = v.sum(1, keepdim=True)
    p = v / total
    h = -torch.xlogy(p, p).sum(1)
    return torch.where(total.squeeze(1) > 0, h, torch.full_like(h, float("nan")))


@metric(direction="higher", category="complexity", needs_model=False, shares="map")
def sparseness(explanation: Any, *, reduction: str | None = None) -> torch.Tensor:
    """Sparseness: Gini index of ``|Phi|`` (higher is sparser).

    ``G = sum_i (2i - n - 1) v_(i) / (n sum v)`` with ``v`` sorted ascending,
    ``i = 1..n``; range ``[0, 1)``: uniform 0, one-hot ``(n - 1) / n``.

    Args:
        explanation: ``(N, ...)`` per-image explanations (tensor or numpy array).
        reduction: None (default: every element) or a 2-D reduction of a
            multi-channel attribution.

    Returns:
        ``(N,)``; NaN (with a warning) for an all-zero explanation.
    """
    v = _values(explanation, reduction, "sparseness")
    n = v.shape[1]
    vs = v.sort(dim=1).values
    i = torch.arange(1, n + 1, device=v.device, dtype=v.dtype)
    total = vs.sum(1)
    g = ((2 * i - n - 1) * vs).sum(1) / (n * total)
    return torch.where(total > 0, g, torch.full_like(g, float("nan")))
