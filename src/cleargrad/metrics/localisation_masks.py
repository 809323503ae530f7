"""Localisation against object masks: how much of a map's relevance lies on the object.

- :func:`relevance_mass_accuracy` (Arras et al. 2022): relevance inside the mask / total.
- :func:`relevance_rank_accuracy` (Arras et al. 2022): of the ``K = |mask|`` most relevant
  pixels, the fraction inside the mask.
- :func:`top_k_intersection` (Theiner et al. 2021): of the ``k`` most relevant pixels, the
  fraction inside the mask (optionally scaled by ``H W / |mask|``, "concept influence").
- :func:`attribution_localisation` (Kohlbrenner et al. 2020): positive relevance inside /
  total positive relevance; ``weighted=True`` multiplies by ``H W / |mask|`` (the paper's
  size-weighted variant; Quantus's weighting divides by a wrong image size).
- :func:`localisation_auc` (Fawcett 2006): ROC AUC of the map as a score of "on the object"
  (ties count one half, as ``sklearn.metrics.roc_curve`` + ``auc``).

All take an explanation and ``(N, H, W)`` object masks (e.g. the synthetic set's,
:func:`cleargrad.data.synthetic`), work on the map after ``reduction`` (default
``|sum_c a_c|``), and need no model. An empty mask (or, for the AUC, a mask covering
the whole image) and an all-zero map give NaN with a ``RuntimeWarning``. Rankings are
stable (ties by raster index).
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from .base import metric
from .localisation import _maps_and_masks
from .maps import blank_rows, mark_undefined
from .similarity import average_ranks

__all__ = [
    "attribution_localisation",
    "localisation_auc",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "top_k_intersection",
]


def _prep(explanation: Any, masks: Any, reduction: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    s, m = _maps_and_masks(explanation, masks, reduction)
    n = s.shape[0]
    return s.reshape(n, -1), m.reshape(n, -1), blank_rows(s)


def _top(s: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """``(N, F)`` bool: the ``k`` (per row) highest values, ties by raster index."""
    order = torch.argsort(s, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(s.shape[1], device=s.device).expand_as(order))
    k = torch.as_tensor(k, device=s.device).reshape(-1, 1)
    return rank < k


@metric(direction="higher", category="localisation", needs_model=False)
def relevance_mass_accuracy(explanation: Any, masks: Any, *, reduction: str = "abs_sum") -> torch.Tensor:
    """Relevance mass accuracy: the share of the map's total relevance that lies inside the object mask."""
    s, m, blank = _prep(explanation, masks, reduction)
    empty = m.sum(1) == 0
    total = s.sum(1)
    out = (s * m).sum(1) / torch.where(total == 0, torch.ones_like(total), total)
    out = mark_undefined(out, blank, "relevance_mass_accuracy")
    return mark_undefined(out, empty & ~blank, "relevance_mass_accuracy", "an empty object mask")


@metric(direction="higher", category="localisation", needs_model=False)
def relevance_rank_accuracy(explanation: Any, masks: Any, *, reduction: str = "abs_sum") -> torch.Tensor:
    """Relevance rank accuracy: of the |mask| most relevant pixels, the fraction inside the object mask."""
    s, m, blank = _prep(explanation, masks, reduction)
    size = m.sum(1)
    hits = (_top(s, size) & m).sum(1).to(s.dtype)
    out = hits / size.clamp_min(1).to(s.dtype)
    out = mark_undefined(out, blank, "relevance_rank_accuracy")
    return mark_undefined(out, (size == 0) & ~blank, "relevance_rank_accuracy", "an empty object mask")


@metric(direction="higher", category="localisation", needs_model=False)
def top_k_intersection(
    explanation: Any, masks: Any, *, k: int = 1000, concept_influence: bool = False, reduction: str = "abs_sum"
) -> torch.Tensor:
    """Top-k intersection: the fraction of the k most relevant pixels that lie inside the object mask.

    ``k`` (Quantus: 1000) must not exceed the pixel count; ``concept_influence``
    multiplies by ``H W / |mask|`` (1 = no better than the mask's share of the image).
    """
    s, m, blank = _prep(explanation, masks, reduction)
    if not 1 <= int(k) <= s.shape[1]:
        raise ConfigError(f"k must be between 1 and the pixel count {s.shape[1]}, got {k}")
    size = m.sum(1)
    out = (_top(s, int(k)) & m).sum(1).to(s.dtype) / int(k)
    if concept_influence:
        out = out * s.shape[1] / size.clamp_min(1).to(s.dtype)
    out = mark_undefined(out, blank, "top_k_intersection")
    return mark_undefined(out, (size == 0) & ~blank, "top_k_intersection", "an empty object mask")


@metric(direction="higher", category="localisation", needs_model=False)
def attribution_localisation(
    explanation: Any, masks: Any, *, weighted: bool = False, reduction: str = "abs_sum"
) -> torch.Tensor:
    """Attribution localisation: positive relevance inside the object mask / total positive relevance.

    ``weighted``: multiplied by ``H W / |mask|`` (Kohlbrenner et al.'s size-weighted variant).
    With the default ``reduction`` the map is non-negative; ``reduction="none"`` keeps a
    signed map, whose negative values are ignored (clipped at 0).
    """
    s, m, blank = _prep(explanation, masks, reduction)
    s = s.clamp_min(0)
    total = s.sum(1)
    size = m.sum(1)
    out = (s * m).sum(1) / torch.where(total == 0, torch.ones_like(total), total)
    if weighted:
        out = out * s.shape[1] / size.clamp_min(1).to(s.dtype)
    out = mark_undefined(out, blank_rows(s) | blank, "attribution_localisation", "an all-zero positive map")
    return mark_undefined(out, (size == 0) & ~(blank_rows(s) | blank), "attribution_localisation",
                          "an empty object mask")


@metric(direction="higher", category="localisation", needs_model=False)
def localisation_auc(explanation: Any, masks: Any, *, reduction: str = "abs_sum") -> torch.Tensor:
    """Localisation AUC: ROC AUC of the map's values as a score of which pixels lie on the object."""
    s, m, blank = _prep(explanation, masks, reduction)
    r = average_ranks(s)
    pos = m.sum(1).double()
    neg = m.shape[1] - pos
    u = (r * m).sum(1) - pos * (pos + 1) / 2  # Mann-Whitney U of the object pixels
    out = (u / (pos * neg).clamp_min(1)).to(s.dtype)
    out = mark_undefined(out, blank, "localisation_auc")
    degenerate = ((pos == 0) | (neg == 0)) & ~blank
    return mark_undefined(out, degenerate, "localisation_auc", "an empty or full object mask")
