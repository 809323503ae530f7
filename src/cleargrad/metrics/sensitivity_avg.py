"""Avg-Sensitivity (Yeh et al. 2019): the *mean* change of the explanation under small
uniform input perturbations (Max-Sensitivity, :func:`cleargrad.metrics.max_sensitivity`,
takes the largest). Same draws, options and normalisation as Max-Sensitivity, so with the
same generator state ``avg_sensitivity <= max_sensitivity`` image by image."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core import check_input, chunk_slices, default_chunk_size, resolve_targets
from ..core.targets import TargetLike
from ..errors import ConfigError
from .base import metric
from .maps import mark_undefined
from .perturbations import Perturbation, uniform_ball
from .scoring import evaluating, targets_for
from .sensitivity import _explain

__all__ = ["avg_sensitivity", "sensitivity_distances"]


def sensitivity_distances(
    explain_fn: Callable[[torch.Tensor, torch.Tensor], Any],
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    radius: float = 0.02,
    n_samples: int = 10,
    normalize: bool = True,
    perturbation: Perturbation | None = None,
    generator: torch.Generator | None = None,
    model: nn.Module | None = None,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distances (N, n_samples), undefined (N,))``: ``||Phi(x + delta_j) - Phi(x)||_F``
    (divided by ``||Phi(x)||_F`` when ``normalize``) per draw, and the images whose clean
    explanation is all zero. Arguments as :func:`cleargrad.metrics.max_sensitivity`."""
    check_input(x, ndim=4)
    if n_samples < 1:
        raise ConfigError(f"n_samples must be >= 1, got {n_samples}")
    draw = perturbation if perturbation is not None else uniform_ball(radius)
    if target is None and model is not None:
        with evaluating(model):
            t: torch.Tensor | None = targets_for(model, x, None, batch_size=batch_size)
    else:
        t = None if target is None else resolve_targets(target, x.shape[0], device=x.device)
    n = x.shape[0]
    phi0 = _explain(explain_fn, x, t, x).detach()
    norm0 = phi0.norm(dim=1)
    zero = norm0 == 0
    total = n * n_samples
    img = torch.arange(n, device=x.device).repeat_interleave(n_samples)
    chunk = batch_size if batch_size is not None else default_chunk_size(x.shape[1:], total, x.device)
    dist = torch.empty(total, dtype=phi0.dtype, device=x.device)
    for sl in chunk_slices(total, chunk):
        xi = x[img[sl]]
        ti = None if t is None else t[img[sl]]
        phi = _explain(explain_fn, xi + draw(xi, generator), ti, x).detach()
        dist[sl] = (phi - phi0[img[sl]]).norm(dim=1)
    dist = dist.view(n, n_samples)
    if normalize:
        dist = dist / torch.where(zero, torch.ones_like(norm0), norm0).view(-1, 1)
    return dist, zero


@metric(direction="lower", category="robustness", needs_model=False)
def avg_sensitivity(
    explain_fn: Callable[[torch.Tensor, torch.Tensor], Any],
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    radius: float = 0.02,
    n_samples: int = 10,
    normalize: bool = True,
    perturbation: Perturbation | None = None,
    generator: torch.Generator | None = None,
    model: nn.Module | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Avg-Sensitivity: mean change of the explanation under small uniform input perturbations; lower is better.

    Arguments, cost and the all-zero rule as :func:`cleargrad.metrics.max_sensitivity`;
    returns the mean over the ``n_samples`` draws instead of the maximum.
    """
    dist, zero = sensitivity_distances(explain_fn, x, target, radius=radius, n_samples=n_samples,
                                       normalize=normalize, perturbation=perturbation, generator=generator,
                                       model=model, batch_size=batch_size)
    return mark_undefined(dist.mean(1), zero, "avg_sensitivity", "an all-zero explanation")
