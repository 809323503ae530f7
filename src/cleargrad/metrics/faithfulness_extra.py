"""Faithfulness by perturbing features: faithfulness correlation and monotonicity.

- :func:`faithfulness_correlation` (Bhatt et al. 2020): over ``n_runs`` random subsets
  of ``subset_size`` pixels, the Pearson correlation between the summed (signed)
  attribution of the subset and the drop of the class score when the subset is set to
  the baseline. Higher is better.
- :func:`monotonicity_arya` (Arya et al. 2019, "One explanation does not fit all"):
  starting from the all-baseline image, the pixels are restored from ``x`` in order of
  *increasing* attribution, ``step`` at a time; the explanation is monotonic (1) when
  the class score never decreases along the way, else 0. Higher is better. Quantus's
  ``Monotonicity`` "restores" a baseline value into the baseline image (its
  perturbation replaces the chosen features of the baseline image by the baseline
  value), so its curve is constant and it reports every explanation as monotonic; we
  follow the paper.

A pixel is a feature (all its channels change together); the attribution of a pixel is
the sum over its channels. ``baseline="black"`` is each image's minimum (Quantus's
"black"), ``"mean"`` its mean, or give a value / tensor broadcast to ``x``. Perturbed
images are built chunk by chunk on ``x``'s device and scored in batched passes under
``torch.inference_mode()``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..core import check_input
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError, InputError
from .base import metric
from .insertion_deletion import perturbation_curve, pixel_rank
from .maps import blank_rows, mark_undefined, prepare_attributions
from .scoring import chunked_scores, clean_scores, evaluating
from .similarity import pearson

__all__ = ["faithfulness_correlation", "monotonicity_arya", "selectivity"]


def removal_scores(model: nn.Module, x: torch.Tensor, rank: torch.Tensor, fill: torch.Tensor, img: torch.Tensor,
                   k: torch.Tensor, t: torch.Tensor, *, score: str, output: OutputSelector,
                   batch_size: int | None) -> torch.Tensor:
    """Scores of the perturbed rows ``r``: image ``img[r]`` with every pixel whose
    ``rank`` (per image, ``(N, 1, H, W)``) is below ``k[r]`` replaced by ``fill[img[r]]``,
    scored for ``t`` (the targets of ``x``, one per image), built and forwarded chunk by
    chunk; ``(R,)``. Call it inside :func:`evaluating`."""

    def build(sl: slice) -> torch.Tensor:
        i = img[sl]
        return torch.where(rank[i] < k[sl].view(-1, 1, 1, 1), fill[i], x[i])

    return chunked_scores(model, build, t[img], sample_shape=x.shape[1:], score=score, output=output,
                          batch_size=batch_size)


def _baseline(x: torch.Tensor, baseline: Any) -> torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        try:
            return torch.broadcast_to(baseline.to(device=x.device, dtype=x.dtype), x.shape)
        except RuntimeError as err:
            raise InputError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to x "
                             f"{tuple(x.shape)}") from err
    if baseline == "black":
        return x.amin(dim=(1, 2, 3), keepdim=True).expand_as(x)
    if baseline == "mean":
        return x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x)
    if isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline))
    raise ConfigError(f"baseline must be 'black', 'mean', a number or a tensor, got {baseline!r}")


def _pixel_attribution(explanation: Any, x: torch.Tensor) -> torch.Tensor:
    """``(N, H W)`` signed attribution per pixel (the sum over channels)."""
    a = prepare_attributions(explanation, x)
    return a.sum(1).reshape(x.shape[0], -1)


@metric(direction="higher", category="faithfulness")
def faithfulness_correlation(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    n_runs: int = 100,
    subset_size: int = 224,
    baseline: Any = "black",
    score: str = "logit",
    subsets: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Faithfulness correlation: Pearson correlation of subset attribution sums with the score drops they cause.

    Args:
        model, x, explanation, target: as the other metrics (the explanation's signed
            per-pixel sum is used).
        n_runs: random subsets per image (Quantus: 100).
        subset_size: pixels per subset (Quantus: 224).
        baseline: the value removed pixels take (see the module docstring).
        score: ``"logit"`` (Quantus's default for this metric) or ``"prob"``.
        subsets: optional ``(N, n_runs, subset_size)`` pixel indices (raster order) to use
            instead of drawing them, e.g. to share draws with another implementation.
        generator: ``torch.Generator`` of the subset draws.
        output, batch_size: as the other metrics.

    Returns: ``(N,)`` correlations; NaN (with a warning) for an all-zero attribution.
    Cost: ``N (n_runs + 1)`` forwarded images.
    """
    check_input(x, ndim=4)
    n, _, h, w = x.shape
    hw = h * w
    if subsets is None:
        if n_runs < 2 or not 1 <= subset_size <= hw:
            raise ConfigError(f"need n_runs >= 2 and 1 <= subset_size <= {hw} (pixels), got n_runs={n_runs}, "
                              f"subset_size={subset_size}")
        keys = torch.rand(n, n_runs, hw, generator=generator, device=generator.device if generator else "cpu")
        subsets = keys.argsort(-1)[..., :subset_size].to(x.device)
    else:
        subsets = torch.as_tensor(subsets, device=x.device).long()
        if subsets.dim() != 3 or subsets.shape[0] != n or int(subsets.min()) < 0 or int(subsets.max()) >= hw:
            raise InputError(f"subsets must be (N, n_runs, k) pixel indices in [0, {hw}), got "
                             f"{tuple(subsets.shape)}")
        n_runs = subsets.shape[1]
    a = _pixel_attribution(explanation, x)
    base = _baseline(x, baseline)
    with evaluating(model):
        t, f0 = clean_scores(model, x, target, score=score, output=output, batch_size=batch_size)
        img = torch.arange(n, device=x.device).repeat_interleave(n_runs)
        flat_sub = subsets.reshape(n * n_runs, -1)

        def build(sl: slice) -> torch.Tensor:
            i = img[sl]
            m = torch.zeros(len(i), hw, dtype=torch.bool, device=x.device)
            m.scatter_(1, flat_sub[sl], True)
            return torch.where(m.view(len(i), 1, h, w), base[i], x[i])

        fp = chunked_scores(model, build, t[img], sample_shape=x.shape[1:], score=score, output=output,
                            batch_size=batch_size).view(n, n_runs)
    drops = f0.view(-1, 1).to(fp.dtype) - fp
    sums = torch.gather(a, 1, subsets.reshape(n, -1)).view(n, n_runs, -1).sum(-1)
    out = pearson(sums, drops).to(x.dtype)
    return mark_undefined(out, blank_rows(a), "faithfulness_correlation")


@metric(direction="higher", category="faithfulness")
def monotonicity_arya(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    step: int = 1,
    baseline: Any = "black",
    score: str = "prob",
    tolerance: float = 0.0,
    return_curves: bool = False,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Monotonicity (Arya et al.): 1 if restoring pixels by increasing attribution never lowers the score, else 0.

    ``step``: pixels restored per step; ``tolerance``: a decrease of at most this much
    still counts as monotonic (0 = the paper's strict rule). The attribution of a pixel
    is its absolute channel sum. ``return_curves``: also the ``(N, ceil(H W / step) + 1)``
    scores. Cost: ``N (ceil(H W / step) + 1)`` forwarded images.
    """
    check_input(x, ndim=4)
    if step < 1:
        raise ConfigError(f"step must be >= 1, got {step}")
    if tolerance < 0:
        raise ConfigError(f"tolerance must be >= 0, got {tolerance}")
    a = _pixel_attribution(explanation, x).abs()
    s = (-a).view(x.shape[0], 1, *x.shape[-2:])  # restore the least important first
    base = _baseline(x, baseline)
    with evaluating(model):
        t, _ = clean_scores(model, x, target, score=score, output=output, batch_size=batch_size)
        curves = perturbation_curve(model, x, s, base, x, t, step=step, score=score, output=output,
                                    batch_size=batch_size, rank=pixel_rank(s))
    ok = (curves[:, 1:] - curves[:, :-1] >= -tolerance).all(1).to(x.dtype)
    ok = mark_undefined(ok, blank_rows(a), "monotonicity_arya")
    return (ok, curves) if return_curves else ok


def _patch_rank(a: torch.Tensor, h: int, w: int, patch: int) -> tuple[torch.Tensor, int]:
    """``(N, 1, H, W)`` rank of each pixel's patch by decreasing summed attribution (0 = first
    removed; ties by patch index) on a grid of ``patch x patch`` patches (smaller at the
    right and bottom borders), and the patch count."""
    n = a.shape[0]
    rows, cols = torch.arange(h, device=a.device) // patch, torch.arange(w, device=a.device) // patch
    npw = math.ceil(w / patch)
    n_patches = math.ceil(h / patch) * npw
    pid = (rows.view(-1, 1) * npw + cols.view(1, -1)).reshape(-1)
    sums = torch.zeros(n, n_patches, dtype=a.dtype, device=a.device)
    sums.scatter_add_(1, pid.expand(n, -1), a)
    order = torch.argsort(sums, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n_patches, device=a.device).expand(n, -1))
    return rank[:, pid].view(n, 1, h, w), n_patches


@metric(direction="lower", category="faithfulness")
def selectivity(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    patch_size: int = 8,
    baseline: Any = "black",
    score: str = "prob",
    return_curves: bool = False,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selectivity (Montavon et al. 2018): mean class score as patches are removed by decreasing relevance.

    The image is cut into ``patch_size`` squares; the patches are set to the baseline one
    after another in order of decreasing summed (signed) attribution and the score is
    recorded after each removal. Lower is better (a faithful map makes the score fall
    fast). ``return_curves``: also the ``(N, n_patches)`` curve (Quantus's ``Selectivity``
    curve). Cost: ``N n_patches`` forwarded images.
    """
    check_input(x, ndim=4)
    if patch_size < 1:
        raise ConfigError(f"patch_size must be >= 1, got {patch_size}")
    n, _, h, w = x.shape
    a = _pixel_attribution(explanation, x)
    prank, n_patches = _patch_rank(a, h, w, patch_size)
    base = _baseline(x, baseline)
    img = torch.arange(n, device=x.device).repeat_interleave(n_patches)
    k = torch.arange(1, n_patches + 1, device=x.device).repeat(n)
    with evaluating(model):
        t, _ = clean_scores(model, x, target, score=score, output=output, batch_size=batch_size)
        curves = removal_scores(model, x, prank, base, img, k, t, score=score, output=output,
                                batch_size=batch_size).view(n, n_patches).to(x.dtype)
    value = mark_undefined(curves.mean(1), blank_rows(a), "selectivity")
    return (value, curves) if return_curves else value
