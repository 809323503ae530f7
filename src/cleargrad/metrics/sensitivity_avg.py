"""Avg-Sensitivity (Yeh et al. 2019): the *mean* change of the explanation under small
uniform input perturbations (Max-Sensitivity, :func:`cleargrad.metrics.max_sensitivity`,
takes the largest). Same draws, options and normalisation as Max-Sensitivity, so with the
same generator state ``avg_sensitivity <= max_sensitivity`` image by image."""

from __future__ import annotations

import torch
from torch import nn

from ..core.targets import TargetLike
from .base import metric
from .maps import mark_undefined
from .perturbations import Perturbation
from .sensitivity import ExplainFn, sensitivity_distances

__all__ = ["avg_sensitivity", "local_lipschitz_estimate", "sensitivity_distances"]


@metric(direction="lower", category="robustness", needs_model=False)
def avg_sensitivity(
    explain_fn: ExplainFn,
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
    explain_fn: ExplainFn,
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
