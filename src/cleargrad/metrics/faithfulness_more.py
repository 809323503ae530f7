"""More faithfulness metrics: monotonicity (Nguyen), region perturbation, IROF, sufficiency.

- :func:`monotonicity_nguyen` (Nguyen & Martinez 2020): for each group of ``step`` pixels
  (taken in order of increasing absolute attribution), the expected squared change of
  the class score when *only that group* is replaced by a baseline value, estimated
  over ``n_samples`` baseline draws; the value is the Spearman correlation between the
  groups' summed absolute attribution and these expected changes. Higher is better.
- :func:`region_perturbation` (Samek et al. 2017): patches are removed cumulatively in
  order of decreasing (MoRF) or increasing (LeRF) summed attribution; the curve is the
  drop ``f(x) - f(x^(k))`` after ``k`` removals and the value is the AOPC
  ``sum_{k=0}^{L} (f(x) - f(x^(k))) / (L + 1)``. Higher is better for MoRF (lower for LeRF).
- :func:`irof` (Rieger & Hansen 2020): superpixels are removed cumulatively by decreasing
  mean attribution; the curve is the class score relative to the clean score,
  ``f(x^(l)) / f(x)`` for ``l = 0 .. L``, and the value is the area *over* that curve on
  a ``[0, 1]`` axis (``1 - AUC``). Higher is better.
- :func:`sufficiency` (Dasgupta et al. 2022): for each image, the fraction of the other
  images of the batch whose explanation is close to its own (distance at most
  ``threshold`` of the batch's largest distance) that the model assigns the same class.
  Higher is better. The batch is the reference set, so an image's value depends on its
  batch mates by definition.

A pixel is a feature (all its channels change together). ``baseline`` is as for
:func:`cleargrad.metrics.faithfulness_correlation` (``"black"``: each image's minimum;
``"mean"``: its mean; a number or a tensor broadcast to ``x``); ``"uniform"`` draws random
values with ``generator`` (see each function). Perturbed images are built chunk by chunk
on ``x``'s device and scored in batched passes under ``torch.inference_mode()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core import check_input
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError, InputError
from .base import metric
from .faithfulness_extra import _baseline, _pixel_attribution, removal_scores
from .maps import blank_rows, mark_undefined, prepare_attributions
from .scoring import chunked_scores, clean_scores, evaluating
from .similarity import spearman

__all__ = ["grid_segments", "irof", "monotonicity_nguyen", "region_perturbation", "slic_segments", "sufficiency"]

ORDERS = ("morf", "lerf", "random")


def _centred_patch_rank(
    a: torch.Tensor, h: int, w: int, patch: int, keys: torch.Tensor | None = None
) -> tuple[torch.Tensor, int]:
    """``(N, 1, H, W)`` rank of each pixel's patch by decreasing summed ``a`` (``(N, H W)``; 0 =
    first; ties by patch index, raster order) on a grid of ``patch x patch`` squares centred
    on the image (a remainder is split over both borders, the smaller half first), and the
    patch count. ``keys``: ``(N, n_patches)`` values to rank by instead of the sums."""
    n = a.shape[0]

    def cells(size: int) -> torch.Tensor:
        pad = (-size) % patch
        return (torch.arange(size, device=a.device) + pad // 2) // patch

    rows, cols = cells(h), cells(w)
    nph, npw = int(rows.max()) + 1, int(cols.max()) + 1
    n_patches = nph * npw
    pid = (rows.view(-1, 1) * npw + cols.view(1, -1)).reshape(-1)
    if keys is None:
        keys = torch.zeros(n, n_patches, dtype=a.dtype, device=a.device)
        keys.scatter_add_(1, pid.expand(n, -1), a)
    order = torch.argsort(keys, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n_patches, device=a.device).expand(n, -1))
    return rank[:, pid].view(n, 1, h, w), n_patches


def _draw_device(x: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else x.device


@metric(direction="higher", category="faithfulness")
def monotonicity_nguyen(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    step: int = 1,
    n_samples: int = 20,
    baseline: Any = "uniform",
    uniform_range: tuple[float, float] = (0.0, 1.0),
    fill_values: torch.Tensor | None = None,
    score: str = "prob",
    generator: torch.Generator | None = None,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Monotonicity (Nguyen & Martinez): Spearman correlation of |attribution| with the score change of its removal.

    Args:
        model, x, explanation, target: as the other metrics (the absolute per-pixel channel
            sum of the explanation ranks the pixels).
        step: pixels per group (Quantus's ``features_in_step``).
        n_samples: baseline draws per group (Quantus: 100); with a deterministic
            ``baseline`` one draw is used (every draw would be the same).
        baseline: ``"uniform"`` (default, Quantus's): every perturbed copy fills its group
            with one value drawn uniformly from ``uniform_range``; or a fixed baseline as
            in the module docstring.
        fill_values: optional ``(N, n_groups, n_samples)`` values replacing the uniform
            draws (to share draws with another implementation).
        score: ``"prob"`` (Quantus's default here) or ``"logit"``.
        generator: ``torch.Generator`` of the uniform draws.
        output, batch_size: as the other metrics.

    Returns: ``(N,)`` correlations in ``[-1, 1]``; NaN (with a warning) for an all-zero
    attribution. Cost: ``N ceil(H W / step) n_samples`` forwarded images.
    """
    check_input(x, ndim=4)
    n, _, h, w = x.shape
    hw = h * w
    if step < 1 or step > hw:
        raise ConfigError(f"step must be in [1, {hw}] (pixels per group), got {step}")
    n_groups = math.ceil(hw / step)
    a = _pixel_attribution(explanation, x).abs()
    order = torch.argsort(a, dim=1, stable=True)  # increasing attribution
    group = torch.empty_like(order)
    group.scatter_(1, order, (torch.arange(hw, device=x.device) // step).expand(n, -1))
    sums = torch.zeros(n, n_groups, dtype=a.dtype, device=x.device).scatter_add_(1, group, a)
    random_fill = isinstance(baseline, str) and baseline == "uniform"
    if fill_values is not None:
        fill_values = torch.as_tensor(fill_values, device=x.device, dtype=x.dtype)
        if fill_values.dim() != 3 or tuple(fill_values.shape[:2]) != (n, n_groups):
            raise InputError(f"fill_values must be (N, n_groups, n_samples) = ({n}, {n_groups}, k), got "
                             f"{tuple(fill_values.shape)}")
        n_samples, random_fill = fill_values.shape[2], True
    elif random_fill:
        if n_samples < 1:
            raise ConfigError(f"n_samples must be >= 1, got {n_samples}")
        lo, hi = uniform_range
        if not hi > lo:
            raise ConfigError(f"uniform_range must be (low, high) with high > low, got {uniform_range}")
        u = torch.empty(n, n_groups, n_samples, dtype=x.dtype, device=_draw_device(x, generator))
        fill_values = u.uniform_(lo, hi, generator=generator).to(x.device)
    else:
        n_samples = 1
    base = None if random_fill else _baseline(x, baseline)
    rows = n * n_groups * n_samples
    img = torch.arange(n, device=x.device).repeat_interleave(n_groups * n_samples)
    grp = torch.arange(n_groups, device=x.device).repeat_interleave(n_samples).repeat(n)
    flat_fill = None if fill_values is None else fill_values.reshape(-1)
    with evaluating(model):
        t, f0 = clean_scores(model, x, target, score=score, output=output, batch_size=batch_size)

        def build(sl: slice) -> torch.Tensor:
            i = img[sl]
            m = (group[i] == grp[sl].view(-1, 1)).view(-1, 1, h, w)
            fill = flat_fill[sl].view(-1, 1, 1, 1) if flat_fill is not None else base[i]  # type: ignore[index]  # mypy does not narrow flat_fill inside the closure
            return torch.where(m, fill, x[i])

        fp = chunked_scores(model, build, t[img], sample_shape=x.shape[1:], score=score, output=output,
                            batch_size=batch_size)
    assert fp.shape[0] == rows
    var = (fp.view(n, n_groups, n_samples) - f0.view(n, 1, 1).to(fp.dtype)).pow(2).mean(-1)
    out = spearman(sums, var).to(x.dtype)
    return mark_undefined(out, blank_rows(a), "monotonicity_nguyen")


def _fill(x: torch.Tensor, baseline: Any, generator: torch.Generator | None) -> torch.Tensor:
    """The values removed pixels take: a fixed baseline, or (``"uniform"``) one U(0, 1)
    noise image per input drawn with ``generator``."""
    if isinstance(baseline, str) and baseline == "uniform":
        u = torch.empty(x.shape, dtype=x.dtype, device=_draw_device(x, generator))
        return u.uniform_(0.0, 1.0, generator=generator).to(x.device)
    return _baseline(x, baseline)


@metric(direction="higher", category="faithfulness")
def region_perturbation(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    patch_size: int = 8,
    order: str = "morf",
    regions: int = 100,
    baseline: Any = "black",
    score: str = "prob",
    generator: torch.Generator | None = None,
    return_curves: bool = False,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Region perturbation (Samek et al. 2017): AOPC of the score drop as patches are removed by relevance.

    Args:
        model, x, explanation, target: as the other metrics (the signed per-pixel channel
            sum, summed over each patch, orders the patches).
        patch_size: side of the square patches of a grid centred on the image (a
            remainder is split over the borders, as Quantus pads).
        order: ``"morf"`` (most relevant first; higher is better), ``"lerf"`` (least
            relevant first; *lower* is better) or ``"random"`` (a permutation drawn with
            ``generator``: the control).
        regions: patches removed at most (Quantus's ``regions_evaluation``).
        baseline: as the module docstring; ``"uniform"``: one U(0, 1) noise image per
            input (the paper's substrate), drawn with ``generator``.
        return_curves: also the ``(N, L)`` drops ``f(x) - f(x^(k))``, ``k = 1 .. L``
            (Quantus's ``RegionPerturbation`` output).

    Returns: ``(N,)`` AOPC ``sum_k drop_k / (L + 1)`` (the ``k = 0`` drop is 0); NaN (with a
    warning) for an all-zero attribution. Cost: ``N (L + 1)`` forwarded images.
    """
    check_input(x, ndim=4)
    if patch_size < 1:
        raise ConfigError(f"patch_size must be >= 1, got {patch_size}")
    if order not in ORDERS:
        raise ConfigError(f"order must be one of {ORDERS}, got {order!r}")
    if regions < 1:
        raise ConfigError(f"regions must be >= 1, got {regions}")
    n, _, h, w = x.shape
    a = _pixel_attribution(explanation, x)
    if order == "random":  # a uniform permutation of the patches per image
        count = math.ceil((h + (-h) % patch_size) / patch_size) * math.ceil((w + (-w) % patch_size) / patch_size)
        keys = torch.rand(n, count, generator=generator, device=_draw_device(x, generator)).to(x.device)
        prank, n_patches = _centred_patch_rank(a, h, w, patch_size, keys=keys)
    else:
        prank, n_patches = _centred_patch_rank(a if order == "morf" else -a, h, w, patch_size)
    steps = min(regions, n_patches)
    fill = _fill(x, baseline, generator)
    img = torch.arange(n, device=x.device).repeat_interleave(steps)
    k = torch.arange(1, steps + 1, device=x.device).repeat(n)
    with evaluating(model):
        t, f0 = clean_scores(model, x, target, score=score, output=output, batch_size=batch_size)
        fp = removal_scores(model, x, prank, fill, img, k, t, score=score, output=output,
                            batch_size=batch_size).view(n, steps)
    curves = (f0.view(-1, 1).to(fp.dtype) - fp).to(x.dtype)
    value = mark_undefined(curves.sum(1) / (steps + 1), blank_rows(a), "region_perturbation")
    return (value, curves) if return_curves else value


def slic_segments(x: torch.Tensor, **slic_options: Any) -> torch.Tensor:
    """``(N, H, W)`` superpixel labels ``0 .. S-1`` of each image by scikit-image's SLIC
    (on the image as given, channels last; Quantus's IROF segmentation); options go to
    ``skimage.segmentation.slic`` (default ``start_label=0``)."""
    import numpy as np
    from skimage.segmentation import slic

    check_input(x, ndim=4)
    opts = {"start_label": 0, **slic_options}
    labels = [slic(np.moveaxis(xi.detach().cpu().double().numpy(), 0, -1), **opts) for xi in x]
    return torch.from_numpy(np.stack(labels)).to(x.device).long()


def grid_segments(x: torch.Tensor, size: int = 4) -> torch.Tensor:
    """``(N, H, W)`` labels of a grid of ``size x size`` squares (raster order; smaller at the
    right and bottom borders): a segmentation without scikit-image."""
    check_input(x, ndim=4)
    if size < 1:
        raise ConfigError(f"segment size must be >= 1, got {size}")
    n, _, h, w = x.shape
    rows, cols = torch.arange(h, device=x.device) // size, torch.arange(w, device=x.device) // size
    lab = rows.view(-1, 1) * math.ceil(w / size) + cols.view(1, -1)
    return lab.expand(n, h, w).clone()


@metric(direction="higher", category="faithfulness")
def irof(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    segments: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None,
    baseline: Any = "mean",
    score: str = "prob",
    return_curves: bool = False,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """IROF (Rieger & Hansen 2020): area over the relative-score curve as superpixels are removed by mean attribution.

    Args:
        model, x, explanation, target: as the other metrics (a superpixel's relevance is
            the mean of the explanation over its pixels and channels).
        segments: ``(N, H, W)`` integer labels, or a function ``x -> labels``; default
            :func:`slic_segments` (scikit-image SLIC, as Quantus). Labels need not be
            contiguous; each image needs at least 2 segments.
        baseline: the value removed pixels take (module docstring; ``"mean"``: each
            image's mean, the default).
        score: ``"prob"`` (Quantus's default) or ``"logit"``.
        return_curves: also the ``(N, S_max + 1)`` curves ``f(x^(l)) / f(x)``, ``l = 0 ..
            S`` (NaN after an image's own ``S`` segments).

    Returns: ``(N,)`` ``1 - AUC`` of each image's curve on ``[0, 1]``; NaN (with a warning)
    for an all-zero attribution or a zero clean score. Cost: ``sum_i S_i`` forwarded images.
    """
    check_input(x, ndim=4)
    n, _, h, w = x.shape
    lab = segments(x) if callable(segments) else (slic_segments(x) if segments is None else segments)
    lab = torch.as_tensor(lab, device=x.device)
    if lab.dim() == 4 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if tuple(lab.shape) != (n, h, w) or lab.is_floating_point() or lab.dtype == torch.bool:
        raise InputError(f"segments must be (N, H, W) = ({n}, {h}, {w}) integer labels, got "
                         f"{tuple(lab.shape)} {lab.dtype}")
    a = prepare_attributions(explanation, x)
    a = a.mean(1).reshape(n, -1)  # the channel mean: a segment's mean over pixels and channels
    ranks, counts = [], []
    for i in range(n):
        _, inv = torch.unique(lab[i].reshape(-1), return_inverse=True)
        s = int(inv.max()) + 1
        if s < 2:
            raise InputError(f"image {i} has {s} segment; IROF needs at least 2 (give finer segments)")
        sums = torch.zeros(s, dtype=a.dtype, device=x.device).scatter_add_(0, inv, a[i])
        cnt = torch.zeros(s, dtype=a.dtype, device=x.device).scatter_add_(0, inv, torch.ones_like(a[i]))
        srt = torch.argsort(sums / cnt, descending=True, stable=True)
        srank = torch.empty_like(srt)
        srank[srt] = torch.arange(s, device=x.device)
        ranks.append(srank[inv].view(1, h, w))
        counts.append(s)
    prank = torch.stack(ranks)
    base = _baseline(x, baseline)
    cnt_t = torch.tensor(counts, device=x.device)
    img = torch.arange(n, device=x.device).repeat_interleave(cnt_t)
    k = torch.cat([torch.arange(1, s + 1, device=x.device) for s in counts])
    with evaluating(model):
        t, f0 = clean_scores(model, x, target, score=score, output=output, batch_size=batch_size)
        fp = removal_scores(model, x, prank, base, img, k, t, score=score, output=output, batch_size=batch_size)
    f0 = f0.to(fp.dtype)
    zero = f0 == 0
    rel = fp / torch.where(zero, torch.ones_like(f0), f0)[img]
    curves = torch.full((n, max(counts) + 1), float("nan"), dtype=x.dtype, device=x.device)
    curves[:, 0] = 1.0
    value = torch.empty(n, dtype=x.dtype, device=x.device)
    start = 0
    for i, s in enumerate(counts):
        c = rel[start:start + s].to(x.dtype)
        start += s
        curves[i, 1:s + 1] = c
        full = curves[i, :s + 1]
        value[i] = 1 - (full.sum() - full[0] / 2 - full[-1] / 2) / s
    value = mark_undefined(value, blank_rows(a), "irof")
    value = mark_undefined(value, zero & ~blank_rows(a), "irof", "a zero clean score")
    return (value, curves) if return_curves else value


DISTANCES = ("seuclidean", "euclidean")


@metric(direction="higher", category="faithfulness")
def sufficiency(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    *,
    threshold: float = 0.6,
    distance: str = "seuclidean",
    normalise: bool = True,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Sufficiency (Dasgupta et al. 2022): share of the images with a similar explanation that get the same class.

    Args:
        model: the classifier (its predicted classes are compared; no target is needed).
        x: input batch ``(N, C, H, W)``, the reference set (a batch of one image is
            undefined: NaN with a warning).
        explanation: the explanations; their absolute values are compared.
        threshold: two explanations are similar when their distance is at most this
            fraction of the largest distance in the batch (Quantus: 0.6).
        distance: ``"seuclidean"`` (Euclidean with each feature divided by its variance
            over the batch, ddof 1; features constant over the batch are left out) or
            ``"euclidean"``.
        normalise: divide each absolute explanation by its own maximum first.
        output, batch_size: as the other metrics.

    Returns: ``(N,)`` fractions in ``[0, 1]``; NaN (with a warning) for an image with no
    similar explanation in the batch or an all-zero explanation. Cost: one pass.
    """
    check_input(x, ndim=4)
    n = x.shape[0]
    if not 0 <= threshold <= 1:
        raise ConfigError(f"threshold must be in [0, 1] (a fraction of the largest distance), got {threshold}")
    if distance not in DISTANCES:
        raise ConfigError(f"distance must be one of {DISTANCES}, got {distance!r}")
    a = prepare_attributions(explanation, x).reshape(n, -1).abs().double()
    blank = blank_rows(a)
    if n < 2:  # e.g. the last batch of an evaluation: no other image to compare with
        return mark_undefined(torch.zeros(n, dtype=x.dtype, device=x.device), torch.ones(n, dtype=torch.bool),
                              "sufficiency", "a batch of one image (it compares the batch's explanations)")
    if normalise:
        mx = a.amax(1, keepdim=True)
        a = a / torch.where(mx > 0, mx, torch.ones_like(mx))
    if distance == "seuclidean":
        var = a.var(0, unbiased=True)
        keep = var > 0
        a = a[:, keep] / var[keep].sqrt()
    d = torch.cdist(a, a)
    mx = d.max()
    d = d / mx if mx > 0 else d
    near = (d <= threshold) & ~torch.eye(n, dtype=torch.bool, device=x.device)
    with evaluating(model):
        t, _ = clean_scores(model, x, None, score="logit", output=output, batch_size=batch_size)
    same = t.view(1, -1) == t.view(-1, 1)
    k = near.sum(1)
    out = ((near & same).sum(1).double() / k.clamp_min(1)).to(x.dtype)
    out = mark_undefined(out, blank, "sufficiency", "an all-zero explanation")
    return mark_undefined(out, (k == 0) & ~blank, "sufficiency", "no similar explanation in the batch")
