"""Max-Sensitivity (Yeh et al. 2019), spec 7.4.

``SENS_MAX = max_{||delta||_inf <= r} ||Phi(x + delta) - Phi(x)||_F``, estimated with
``n_samples`` uniform draws of ``delta`` in the L-infinity ball; with
``normalize=True`` (Captum's behaviour, default) divided by ``||Phi(x)||_F``. An
all-zero ``Phi(x)`` gives NaN (undefined).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core import check_input, chunk_slices, default_chunk_size, resolve_targets
from ..core.target_objects import as_class_indices, is_target_object
from ..core.targets import TargetLike
from ..errors import ConfigError, InputError, TargetError
from .base import metric
from .maps import as_float_tensor, mark_undefined
from .perturbations import Perturbation, uniform_ball
from .scoring import evaluating, targets_for

__all__ = ["max_sensitivity", "sensitivity_distances"]

#: ``f(x, target)``; ``target`` is None when neither a target nor a model was given
ExplainFn = Callable[[torch.Tensor, torch.Tensor | None], Any]


def _explain(fn: ExplainFn, x: torch.Tensor, t: Any, like: torch.Tensor) -> torch.Tensor:
    a = as_float_tensor(fn(x, t), like, name="explanation returned by explain_fn")
    if a.shape[0] != x.shape[0]:
        raise InputError(f"explain_fn returned {a.shape[0]} explanations for {x.shape[0]} inputs")
    return a.reshape(a.shape[0], -1)


@metric(direction="lower", category="robustness", needs_model=False)
def max_sensitivity(
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
    """Max-Sensitivity: largest change of the explanation under small uniform input perturbations.

    Args:
        explain_fn: ``f(x, target) -> explanation`` for a batch, e.g.
            ``cleargrad.Saliency(model).attribute``; called on the clean batch and on
            chunks of perturbed copies (the targets repeated per copy).
        x: input batch ``(N, C, H, W)``.
        target: class per image; None resolves the class predicted on the *clean*
            ``x`` when ``model`` is given (so perturbed copies explain the same class),
            otherwise None is passed on to ``explain_fn``. A target object (or a list,
            one per image) is passed on too, each perturbed copy getting its image's.
        radius: L-infinity radius ``r`` of the perturbation (Captum: 0.02).
        n_samples: perturbations per image (Captum: 10).
        normalize: divide by ``||Phi(x)||_F`` (Captum's behaviour).
        perturbation: optional callable ``(x_rep, generator) -> delta`` replacing the
            uniform draw (rows image-major: row ``i * n_samples + j``).
        generator: ``torch.Generator`` for reproducible draws.
        model: only used to resolve ``target=None`` (left exactly as found).
        batch_size: perturbed images per ``explain_fn`` call.

    Returns:
        ``(N,)`` maximum (relative) Frobenius-norm change per image, lower is better.
        An image whose clean explanation is all zero gets NaN with a
        ``RuntimeWarning`` (a blank explainer would otherwise score a perfect 0),
        counted by :func:`cleargrad.metrics.nan_summary`.
        The explanation function may require gradients, so it is not run under
        inference mode; its own model guard applies.
    """
    dist, zero = sensitivity_distances(explain_fn, x, target, radius=radius, n_samples=n_samples,
                                       normalize=normalize, perturbation=perturbation, generator=generator,
                                       model=model, batch_size=batch_size)
    return mark_undefined(dist.amax(1), zero, "max_sensitivity", "an all-zero explanation")


def sensitivity_distances(
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distances (N, n_samples), undefined (N,))``: ``||Phi(x + delta_j) - Phi(x)||_F``
    (divided by ``||Phi(x)||_F`` when ``normalize``) per draw, and the images whose clean
    explanation is all zero. Arguments as :func:`cleargrad.metrics.max_sensitivity`."""
    check_input(x, ndim=4)
    if n_samples < 1:
        raise ConfigError(f"n_samples must be >= 1, got {n_samples}")
    draw = perturbation if perturbation is not None else uniform_ball(radius)
    target = as_class_indices(target)
    n = x.shape[0]
    t: Any
    if is_target_object(target):  # one target object per image, carried to its perturbed copies
        t = list(target) if isinstance(target, (list, tuple)) else [target] * n
        if len(t) not in (1, n):
            raise TargetError(f"got {len(t)} targets for a batch of {n} images; give one per image or one for all")
        t = t * n if len(t) == 1 else t
    elif target is None and model is not None:
        with evaluating(model):
            t = targets_for(model, x, None, batch_size=batch_size)
    else:
        t = None if target is None else resolve_targets(target, x.shape[0], device=x.device)
    phi0 = _explain(explain_fn, x, t, x).detach()
    norm0 = phi0.norm(dim=1)
    zero = norm0 == 0
    total = n * n_samples
    img = torch.arange(n, device=x.device).repeat_interleave(n_samples)
    chunk = batch_size if batch_size is not None else default_chunk_size(x.shape[1:], total, x.device)
    dist = torch.empty(total, dtype=phi0.dtype, device=x.device)
    for sl in chunk_slices(total, chunk):
        xi = x[img[sl]]
        ti = None if t is None else (t[img[sl]] if isinstance(t, torch.Tensor) else [t[i] for i in img[sl].tolist()])
        phi = _explain(explain_fn, xi + draw(xi, generator), ti, x).detach()
        dist[sl] = (phi - phi0[img[sl]]).norm(dim=1)
    dist = dist.view(n, n_samples)
    if normalize:
        dist = dist / torch.where(zero, torch.ones_like(norm0), norm0).view(-1, 1)
    return dist, zero
