"""Localisation against object masks: pointing game and energy-based pointing game (spec 7.6)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, InputError
from .base import metric
from .maps import as_float_tensor, blank_rows, mark_undefined, prepare_maps

__all__ = ["energy_pointing_game", "pointing_game"]


def _masks(masks: Any) -> torch.Tensor:
    """Object masks as a boolean ``(N, H, W)`` tensor (boolean or 0/1 input)."""
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(np.ascontiguousarray(masks))
    if not isinstance(masks, torch.Tensor):
        raise InputError(f"masks must be a tensor or numpy array, got {type(masks).__name__}")
    m = masks.detach()
    if m.dtype != torch.bool:
        m = as_float_tensor(m, name="masks")
        if not bool(((m == 0) | (m == 1)).all()):
            raise InputError("masks must be boolean or hold only 0/1 (one object mask per image)")
        m = m.bool()
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    elif m.dim() == 2:
        m = m[None]
    if m.dim() != 3:
        raise InputError(f"masks must have shape (N, H, W) or (N, 1, H, W), got {tuple(masks.shape)}")
    return m


def _maps_and_masks(explanation: Any, masks: Any, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    m = _masks(masks)
    s = prepare_maps(explanation, reduction=reduction, size=(int(m.shape[-2]), int(m.shape[-1])))[:, 0]
    if s.shape[0] != m.shape[0]:
        raise InputError(f"got {s.shape[0]} explanations but {m.shape[0]} masks; give one mask per image")
    return s, m.to(s.device)


@metric(direction="higher", category="localisation", needs_model=False)
def pointing_game(explanation: Any, masks: Any, *, tolerance: float = 15.0, reduction: str = "abs_sum") -> torch.Tensor:
    """Pointing game: 1 if the map's maximum lies on the object (within ``tolerance`` pixels), else 0.

    Args:
        explanation: ``(N, C, H, W)`` attribution (reduced with ``reduction``),
            ``(N, 1, H, W)`` or ``(N, H, W)`` map; resized bilinearly to the masks.
        masks: object masks ``(N, H, W)`` or ``(N, 1, H, W)``, boolean or 0/1.
        tolerance: a hit when some object pixel is within this Euclidean distance
            (in pixels) of the maximum (15 px in Zhang et al.'s protocol for 224 px
            images; 0 = the maximum itself must be on the object).
        reduction: 2-D reduction of the attribution, any channel count (a signed
            1-channel attribution becomes ``|a|``); ``"none"``: a 1-channel map used as given.

    Returns:
        ``(N,)`` of 1.0 (hit) / 0.0 (miss); the dataset value is the mean (the hit
        rate). The maximum is the first in raster order when tied; a constant
        non-zero map (no maximum to point with) counts as a miss. An all-zero map
        (after ``reduction``) or an empty mask gives NaN (undefined, with a
        ``RuntimeWarning`` for the map; counted by :func:`cleargrad.metrics.nan_summary`).
    """
    if tolerance < 0:
        raise ConfigError(f"tolerance must be >= 0 pixels, got {tolerance}")
    s, m = _maps_and_masks(explanation, masks, reduction)
    n, h, w = s.shape
    flat = s.reshape(n, -1)
    peak = flat.argmax(1)
    pr, pc = (peak // w).view(-1, 1, 1), (peak % w).view(-1, 1, 1)
    rows = torch.arange(h, device=s.device).view(1, h, 1)
    cols = torch.arange(w, device=s.device).view(1, 1, w)
    near = (rows - pr) ** 2 + (cols - pc) ** 2 <= tolerance**2
    hit = (near & m).flatten(1).any(1) & (flat.amax(1) > flat.amin(1))
    out = hit.to(s.dtype)
    out = torch.where(m.flatten(1).any(1), out, torch.full_like(out, float("nan")))
    return mark_undefined(out, blank_rows(s), "pointing_game")


@metric(direction="higher", category="localisation", needs_model=False)
def energy_pointing_game(explanation: Any, masks: Any, *, reduction: str = "abs_sum") -> torch.Tensor:
    """Energy-based pointing game: share of the map's (non-negative) mass that falls on the object.

    ``EPG = sum_{mask} S / sum S`` with negative values of ``S`` set to 0 (Wang et
    al. 2020, Score-CAM).

    Args:
        explanation: ``(N, C, H, W)`` attribution (reduced with ``reduction``),
            ``(N, 1, H, W)`` or ``(N, H, W)`` map; resized bilinearly to the masks.
        masks: object masks ``(N, H, W)`` or ``(N, 1, H, W)``, boolean or 0/1
            (a bounding box is a rectangular mask).
        reduction: 2-D reduction of the attribution, any channel count (a signed
            1-channel attribution becomes ``|a|``); ``"none"``: a 1-channel map used as given.

    Returns:
        ``(N,)`` in ``[0, 1]``; NaN (with a warning) for an all-zero map.
    """
    s, m = _maps_and_masks(explanation, masks, reduction)
    s = s.clamp(min=0)
    total = s.flatten(1).sum(1)
    inside = (s * m).flatten(1).sum(1)
    return mark_undefined(inside / total.clamp(min=torch.finfo(total.dtype).tiny), total == 0, "energy_pointing_game",
                          "an all-zero map (no positive value)")
