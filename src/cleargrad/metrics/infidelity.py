"""Infidelity (Yeh et al. 2019), spec 7.3.

``INFD = E_I[(I^T Phi - (f_c(x) - f_c(x - I)))^2]`` estimated with ``n_perturb``
draws of ``I`` per image (Yeh et al. 2019, Eq. 2). The perturbations of the paper are
offered by name: ``"gaussian"`` (``I ~ N(0, sigma^2)`` around the input), ``"square"``
(a random square removed, i.e. set to a baseline) and ``"baseline"`` (the noisy-baseline
difference ``I = x - (x0 + eps)``). A 1-channel map ``Phi`` is broadcast over the channels.
The normalised (scale-invariant) variant first fits the best scale
``beta = E[(I^T Phi) df] / E[(I^T Phi)^2]`` (0 when the denominator is 0) and reports
``E[(beta I^T Phi - df)^2]``, which is never larger than the plain one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..core import check_input
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError
from .base import metric
from .maps import blank_rows, mark_undefined, prepare_attributions
from .perturbations import Perturbation, baseline_difference, gaussian_noise, square_removal
from .scoring import chunked_scores, clean_scores, evaluating

__all__ = ["PERTURBATIONS", "infidelity", "infidelity_many", "perturbation_fn"]

#: named perturbations of :func:`infidelity`
PERTURBATIONS = ("gaussian", "square", "baseline")


def perturbation_fn(kind: str | Perturbation, noise_std: float, square_size: int | None, baseline: float, h: int):
    """The draw function of infidelity's ``perturbation`` option for ``h``-pixel-high images."""
    if callable(kind):
        return kind
    if kind == "gaussian":
        return gaussian_noise(noise_std)
    if kind == "square":
        return square_removal(square_size if square_size is not None else max(1, h // 8), baseline)
    if kind == "baseline":
        return baseline_difference(baseline, noise_std)
    raise ConfigError(f"perturbation must be one of {PERTURBATIONS} or a callable, got {kind!r}")


@metric(direction="lower", category="faithfulness", shares="perturbed")
def infidelity(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    perturbation: str | Perturbation = "gaussian",
    n_perturb: int = 50,
    noise_std: float = 0.1,
    square_size: int | None = None,
    baseline: float = 0.0,
    normalize: bool = True,
    score: str = "logit",
    generator: torch.Generator | None = None,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Infidelity: mean squared error between ``I^T Phi`` and the score change ``f_c(x) - f_c(x - I)``.

    Args:
        model: the classifier (left exactly as found; evaluated in eval mode).
        x: normalised input batch ``(N, C, H, W)``.
        explanation: attribution ``Phi`` shaped like ``x`` or a 1-channel map
            ``(N, 1, H, W)`` / ``(N, H, W)`` (broadcast over channels); tensor or numpy
            array; resized bilinearly if its resolution differs.
        target: class per image, or None for the class predicted on ``x``.
        perturbation: ``"gaussian"`` (``I ~ N(0, noise_std^2)``), ``"square"`` (a random
            ``square_size`` square set to ``baseline``: ``I = x - x_masked``),
            ``"baseline"`` (noisy baseline: ``I = x - (baseline + eps)``,
            ``eps ~ N(0, noise_std^2)``, so ``f(x - I)`` is the score of a noisy
            baseline image), or a
            callable ``(x_rep, generator) -> I`` shaped like ``x_rep`` (rows of
            ``x_rep`` are image-major: row ``i * n_perturb + j`` is draw ``j`` of image ``i``).
        n_perturb: draws per image (default 50; Captum's default is 10).
        noise_std: standard deviation of the Gaussian perturbation, and of the noise
            around the baseline for ``"baseline"`` (normalised units).
        square_size: side of the removed square (default ``H // 8``).
        baseline: value the square is set to (``"square"``) or the baseline image
            value (``"baseline"``); 0 is the data mean for normalised inputs.
        normalize: the scale-invariant variant (default True; needed for maps of
            arbitrary scale such as min-max normalised CAMs). Captum's default is False.
        score: ``"logit"`` (default) or ``"prob"``.
        generator: ``torch.Generator`` for reproducible draws.
        output: selector of the class scores for models returning tuples/dicts.
        batch_size: perturbed images per forward pass.

    Returns:
        ``(N,)`` infidelity per image (lower is better). An all-zero explanation
        explains nothing: NaN with a ``RuntimeWarning`` (its draws are still made,
        so the other images' values do not depend on it), counted by
        :func:`cleargrad.metrics.nan_summary`. Cost: ``N n_perturb`` forwarded
        images plus one pass over ``x``.
    """
    check_input(x, ndim=4)
    if n_perturb < 1:
        raise ConfigError(f"n_perturb must be >= 1, got {n_perturb}")
    phi = prepare_attributions(explanation, x)
    draw = perturbation_fn(perturbation, noise_std, square_size, baseline, x.shape[-2])
    with evaluating(model):
        t, fx = clean_scores(model, x, target, score=score, output=output, batch_size=batch_size)
        (value,) = infidelity_many(
            model, x, [phi], t, fx, draw=draw, n_perturb=n_perturb, normalize=normalize, score=score,
            generator=generator, output=output, batch_size=batch_size,
        )
    return value


def infidelity_many(
    model: nn.Module,
    x: torch.Tensor,
    phis: Sequence[torch.Tensor],
    t: torch.Tensor,
    fx: torch.Tensor,
    *,
    draw: Perturbation,
    n_perturb: int,
    normalize: bool,
    score: str,
    generator: torch.Generator | None,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> list[torch.Tensor]:
    """Infidelity of several explanations of the same images from one set of draws.

    ``f_c(x - I)`` does not depend on the explanation, so the ``N n_perturb`` perturbed
    images are forwarded once and each ``I^T Phi`` is taken from the same draws: the
    value for each ``phis[j]`` equals ``infidelity(..., explanation=phis[j])`` with a
    generator in the same state. ``phis``: prepared attributions
    (:func:`~cleargrad.metrics.maps.prepare_attributions`); ``t``, ``fx``: targets and
    their clean scores of kind ``score``. Call inside
    :func:`~cleargrad.metrics.scoring.evaluating`.
    """
    n = x.shape[0]
    img = torch.arange(n, device=x.device).repeat_interleave(n_perturb)
    dots = [torch.empty(n * n_perturb, dtype=x.dtype, device=x.device) for _ in phis]

    def build(sl: slice) -> torch.Tensor:
        xi = x[img[sl]]
        pert = draw(xi, generator)
        for dot, phi in zip(dots, phis):
            dot[sl] = (pert * phi[img[sl]]).flatten(1).sum(1)
        return xi - pert

    f_pert = chunked_scores(
        model, build, t[img], sample_shape=x.shape[1:], score=score, output=output, batch_size=batch_size
    )
    df = (fx[img] - f_pert.to(fx.dtype)).view(n, n_perturb)
    out = []
    for dot, phi in zip(dots, phis):
        d = dot.view(n, n_perturb).to(df.dtype)
        if normalize:
            num = (d * df).mean(1, keepdim=True)
            den = (d * d).mean(1, keepdim=True)
            beta = torch.where(den > 0, num / den.clamp(min=torch.finfo(den.dtype).tiny), torch.zeros_like(den))
            d = beta * d
        err = ((d - df) ** 2).mean(1)
        out.append(mark_undefined(err, blank_rows(phi), "infidelity", "an all-zero explanation", stacklevel=4))
    return out
