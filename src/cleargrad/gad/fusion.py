"""Algorithm 2 of GAD: fuse the ``S + 1`` maps, keeping what is important in all (spec § 3.4)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Union

import torch

from ..core import to_2d
from ..core.maps import max_normalize
from ..errors import ConfigError, InputError

__all__ = ["COMBINES", "PAPER_TAU", "Threshold", "normalized_importance", "important_mask", "fuse"]

COMBINES = ("mask", "min")
Threshold = Union[float, str]
_QUANTILE = re.compile(r"^q(\d{1,2}(?:\.\d+)?)$")


def normalized_importance(a: torch.Tensor, reduction: str = "abs_sum") -> torch.Tensor:
    """``Ŝ = S / max(S)`` per image, with ``S`` the 2-D importance of ``a`` (``(N, 1, H, W)``).

    An all-zero map stays all zero. Dividing by the maximum itself (no epsilon) makes
    ``Ŝ`` the same for any positive rescaling of ``a``.
    """
    return max_normalize(to_2d(a, reduction))


#: ``tau="paper"``: the paper's notion of important pixels (>= 10 % of the map's maximum)
PAPER_TAU = 0.1


def _check_tau(tau: Threshold) -> None:
    if isinstance(tau, str):
        if tau not in ("positive", "paper") and not _QUANTILE.match(tau):
            raise ConfigError(
                f"tau must be a number in [0, 1], 'paper', 'qNN' (e.g. 'q90') or 'positive', got {tau!r}"
            )
    elif not (isinstance(tau, (int, float)) and 0 <= float(tau) <= 1):
        raise ConfigError(f"tau must be a number in [0, 1], 'paper', 'qNN' (e.g. 'q90') or 'positive', got {tau!r}")


def important_mask(s_hat: torch.Tensor, tau: Threshold = 0.1, signed: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean mask ``B`` of the important pixels of one normalised map ``Ŝ`` (N, 1, H, W).

    ``tau`` is a number (``Ŝ >= tau``, default 0.1 [spec PROPOSAL]), ``"paper"`` (0.1), a quantile
    ``"qNN"`` (``Ŝ >=`` the image's NN-th percentile) or ``"positive"`` (the signed
    channel sum ``signed > 0``; for signed base methods). A pixel of importance 0 is
    never important.
    """
    _check_tau(tau)
    if tau == "paper":
        tau = PAPER_TAU
    if tau == "positive":
        if signed is None:
            raise ConfigError("tau='positive' needs the signed attribution")
        return to_2d(signed, "positive") > 0
    if isinstance(tau, str):
        m = _QUANTILE.match(tau)
        assert m is not None  # _check_tau accepted tau
        q = float(m.group(1)) / 100.0
        thr = torch.quantile(s_hat.flatten(1).float(), q, dim=1).to(s_hat.dtype).view(-1, 1, 1, 1)
        return (s_hat >= thr) & (s_hat > 0)
    return (s_hat >= float(tau)) & (s_hat > 0)


def fuse(
    attributions: Sequence[torch.Tensor],
    tau: Threshold = 0.1,
    combine: str = "mask",
    reduction: str = "abs_sum",
    return_maps: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Fuse the base method's maps of the original model and of the support models.

    Args:
        attributions: ``[a_0, a_1, ..., a_S]``, ``a_0`` from the original model; each
            ``(N, C, H, W)`` (a CAM's ``(N, 1, H, W)`` works the same way).
        tau: importance threshold of :func:`important_mask`.
        combine: ``"mask"`` (default [spec PROPOSAL]): ``F = Ŝ_0 ⊙ prod_j B_j``;
            ``"min"``: ``F = min_j Ŝ_j ⊙ prod_j B_j`` (the minimum, on the same support).
        reduction: how 3-channel maps become 2-D (:func:`cleargrad.core.to_2d`).
        return_maps: also return the normalised maps ``Ŝ_j`` as ``(N, S+1, H, W)``.

    Returns:
        ``F`` of shape ``(N, 1, H, W)``, in ``[0, 1]``; with ``return_maps`` a pair.
    """
    if combine not in COMBINES:
        raise ConfigError(f"unknown combine {combine!r}; valid: {', '.join(COMBINES)}")
    _check_tau(tau)
    if len(attributions) == 0:
        raise InputError("fuse needs at least the original model's map")
    shape = attributions[0].shape
    if any(a.shape[0] != shape[0] or a.shape[-2:] != shape[-2:] for a in attributions):
        shapes = [tuple(a.shape) for a in attributions]
        raise InputError(f"all maps must share batch size and spatial size, got {shapes}")
    maps = [normalized_importance(a, reduction) for a in attributions]
    keep = torch.ones_like(maps[0], dtype=torch.bool)
    for a, s in zip(attributions, maps):
        keep &= important_mask(s, tau, signed=a)
    fused = (maps[0] if combine == "mask" else torch.stack(maps).amin(0)) * keep
    if return_maps:
        return fused, torch.cat(maps, 1)
    return fused
