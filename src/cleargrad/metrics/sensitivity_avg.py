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

__all__ = ["avg_sensitivity", "local_lipschitz_estimate", "sensitivity_distances"]


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


@metric(direction="lower", category="robustness", needs_model=False)
def local_lipschitz_estimate(
    explain_fn: Callable[[torch.Tensor, torch.Tensor], Any],
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    n_samples: int = 200,
    noise_std: float = 0.1,
    perturbation: Perturbation | None = None,
    generator: torch.Generator | None = None,
    model: nn.Module | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018): max ||Phi(x') - Phi(x)|| / ||x' - x|| over noisy x'.

    ``x' = x + delta`` with Gaussian ``delta`` of std ``noise_std`` (Quantus: 200 samples,
    std 0.1) or ``perturbation(x_rep, generator) -> delta``; Euclidean norms over the whole
    explanation and input. Lower is better. A draw with ``delta = 0`` is skipped (NaN when
    every draw is zero). Other arguments as :func:`cleargrad.metrics.max_sensitivity`.
    Cost: ``N (n_samples + 1)`` explanations.
    """
    from .perturbations import gaussian_noise

    draw = perturbation if perturbation is not None else gaussian_noise(noise_std)
    deltas: list[torch.Tensor] = []

    def recording(xi: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        d = draw(xi, g)
        deltas.append(d.reshape(d.shape[0], -1).norm(dim=1))
        return d

    dist, zero = sensitivity_distances(explain_fn, x, target, n_samples=n_samples, normalize=False,
                                       perturbation=recording, generator=generator, model=model,
                                       batch_size=batch_size)
    dx = torch.cat(deltas).view(x.shape[0], n_samples).to(dist.dtype)
    ratio = torch.where(dx > 0, dist / dx.clamp_min(torch.finfo(dist.dtype).tiny), torch.full_like(dist, -1.0))
    out = ratio.amax(1)
    return mark_undefined(out.masked_fill(out < 0, float("nan")), (out < 0) | zero, "local_lipschitz_estimate",
                          "an all-zero explanation or no non-zero perturbation")
