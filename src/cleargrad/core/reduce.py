"""2-D importance maps from multi-channel attributions (spec section 0)."""

from __future__ import annotations

import torch

from ..errors import ConfigError, InputError

__all__ = ["REDUCTIONS", "to_2d"]

REDUCTIONS = ("abs_sum", "sum_abs", "max_abs", "positive")


def to_2d(a: torch.Tensor, reduction: str = "abs_sum") -> torch.Tensor:
    """Reduce an attribution ``(N, C, H, W)`` to a 2-D importance map ``(N, 1, H, W)``.

    ``abs_sum``: ``|sum_c a_c|`` (default, as Captum's "absolute_value" display);
    ``sum_abs``: ``sum_c |a_c|``; ``max_abs``: ``max_c |a_c|`` (Simonyan et al.);
    ``positive``: ``relu(sum_c a_c)``. A ``(N, H, W)`` map gets a channel axis;
    a ``(N, 1, H, W)`` map goes through the same rule.
    """
    if a.dim() == 3:
        a = a.unsqueeze(1)
    if a.dim() != 4:
        raise InputError(f"expected an attribution of shape (N, C, H, W), got {tuple(a.shape)}")
    if reduction == "abs_sum":
        return a.sum(1, keepdim=True).abs()
    if reduction == "sum_abs":
        return a.abs().sum(1, keepdim=True)
    if reduction == "max_abs":
        return a.abs().amax(1, keepdim=True)
    if reduction == "positive":
        return a.sum(1, keepdim=True).clamp(min=0)
    raise ConfigError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
