"""Forward-only perturbation methods: Occlusion, Feature Ablation, Shapley Value Sampling,
LIME, KernelSHAP and RISE.

Every method perturbs the input many times and reads the target score of each perturbed
copy; attributions are built from those scores. The perturbed copies of all images go
through the model as one expanded batch, in chunks of ``internal_batch_size`` copies
checked against the memory budget before the first one runs
(:func:`~cleargrad.core.plan_chunk`), under ``torch.inference_mode()``; each chunk is
built just before it runs. The clean (and baseline) pass runs in the call's ordinary
grad mode, on a model whose parameters are frozen, so no graph is recorded.

Features: ``feature_mask`` is an integer tensor broadcastable to the input
(``(H, W)``, ``(1 or C, H, W)`` or ``(1 or N, 1 or C, H, W)``); equal values form one
feature. Ids are relabelled ``0..F-1`` in increasing order over the whole mask (the
identity for a mask already numbered that way). Build one with :func:`grid_mask` or
:func:`slic_mask`. Without a mask, the methods that need features use an 8x8 grid of
cells shared by the channels (Captum's default is one feature per input element).

Random draws (permutations, interpretable samples, RISE masks) come from one stream per
image seeded from ``generator`` (:mod:`cleargrad.core.sampling`), so a batch
equals its images explained one by one; each sampled method also takes its samples as
an option (``permutations=``, ``samples=``, ``masks=``), which makes it reproduce any
other implementation fed the same samples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..core import chunk_slices, gather_scores, memory_guard, model_input, plan_chunk, register, select_output
from ..core.sampling import image_streams
from ..core.target_objects import class_probabilities
from ..core.targets import TargetLike, resolve_targets
from ..errors import ConfigError, InputError
from .base import Attribution
from .integrated import BaselineLike, make_baseline

#: ``on_chunk(sl, copies, img, scores)``: called with each chunk of perturbed copies.
ChunkHook = Callable[[slice, torch.Tensor, torch.Tensor, torch.Tensor], None]

__all__ = [
    "FeatureAblation",
    "KernelShap",
    "Lime",
    "Occlusion",
    "PerturbationAttribution",
    "RISE",
    "ShapleyValueSampling",
    "grid_mask",
    "rise_masks",
    "shapley_kernel_coalitions",
    "slic_mask",
]

#: cells per side of the default feature grid (and of Occlusion's default window)
_DEFAULT_GRID = 8
#: largest feature count for which KernelShap(exact=True) enumerates every coalition
MAX_EXACT_FEATURES = 16


# ----------------------------------------------------------------------------- masks
def grid_mask(shape: Sequence[int], cells: int | Sequence[int] = _DEFAULT_GRID, *,
              device: torch.device | str | None = None) -> torch.Tensor:
    """A ``(1, 1, H, W)`` feature mask of ``cells`` x ``cells`` rectangular cells (row-major ids).

    ``shape`` ends with ``(H, W)`` (an input's shape will do); ``cells`` is one count for
    both sides or ``(rows, cols)``; each is capped at the side's length. Cell ``(i, j)``
    covers rows ``floor(i H / rows)`` to ``floor((i+1) H / rows) - 1``.
    """
    if len(shape) < 2:
        raise InputError(f"grid_mask needs a shape ending with (H, W), got {tuple(shape)}")
    h, w = int(shape[-2]), int(shape[-1])
    rows, cols = (cells, cells) if isinstance(cells, int) else tuple(int(c) for c in cells)
    if rows < 1 or cols < 1:
        raise ConfigError(f"cells must be positive, got {cells!r}")
    rows, cols = min(rows, h), min(cols, w)
    r = torch.arange(h, device=device) * rows // h
    c = torch.arange(w, device=device) * cols // w
    return (r[:, None] * cols + c[None, :]).view(1, 1, h, w)


def slic_mask(x: torch.Tensor, n_segments: int = 50, compactness: float = 10.0, *,
              mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
              **slic_options: Any) -> torch.Tensor:
    """Superpixel feature masks ``(N, 1, H, W)`` from scikit-image's SLIC, one per image.

    ``x`` is ``(N, C, H, W)``; give the model's ``mean``/``std`` normalisation to segment
    the de-normalised image. Ids are numbered from 0 in each image (``skimage`` starts
    at 1; ``start_label=0`` is passed). Uses ``scikit-image`` (a dependency of cleargrad).
    """
    try:
        from skimage.segmentation import slic
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError("slic_mask needs scikit-image: pip install scikit-image") from e
    if x.dim() != 4:
        raise InputError(f"slic_mask takes a batch (N, C, H, W), got shape {tuple(x.shape)}")
    img = x.detach().float().cpu()
    if mean is not None and std is not None:
        img = img * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    out = []
    for im in img:
        arr = im.permute(1, 2, 0).numpy()
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) if hi > lo else arr * 0
        seg = slic(arr, n_segments=n_segments, compactness=compactness, start_label=0,
                   channel_axis=-1, **slic_options)
        out.append(torch.as_tensor(seg, dtype=torch.long))
    return torch.stack(out).unsqueeze(1).to(x.device)


def shapley_kernel_coalitions(num_features: int, *, device: torch.device | str | None = None,
                              dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Every proper coalition of ``num_features`` players and its Shapley-kernel weight.

    Returns ``(samples, weights)``: ``samples`` ``(2^M - 2, M)`` in {0, 1} and
    ``weights[i] = (M - 1) / (C(M, s) s (M - s))`` with ``s = samples[i].sum()`` (Lundberg
    & Lee 2017). KernelSHAP's constrained weighted least squares over all of them gives
    the exact Shapley values.
    """
    m = int(num_features)
    if m < 2:
        raise ConfigError(f"the Shapley kernel needs at least 2 features, got {m}")
    rows = [c for c in itertools.product((0, 1), repeat=m) if 0 < sum(c) < m]
    z = torch.tensor(rows, dtype=dtype, device=device)
    s = z.sum(1)
    binom = torch.tensor([math.comb(m, int(k)) for k in s.tolist()], dtype=dtype, device=device)
    return z, (m - 1) / (binom * s * (m - s))


def rise_masks(n_masks: int, size: Sequence[int], *, cells: int = 7, p: float = 0.5,
               generator: torch.Generator | None = None, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n_masks`` RISE masks ``(n_masks, 1, H, W)`` (Petsiuk et al. 2018).

    Each is a ``cells`` x ``cells`` grid of Bernoulli(``p``) values, bilinearly upsampled
    (``align_corners=False``) to ``(cells + 1) * ceil(H / cells)`` (likewise for W) and
    cropped to ``(H, W)`` at a random offset in ``[0, ceil(H / cells))``. The grids, then
    the offsets, are drawn from ``generator``.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    grids, shifts = _rise_draws(n_masks, cells, p, size, generator, dev)
    return _rise_build(grids, shifts, size, dtype)


def _rise_draws(n: int, cells: int, p: float, size: Sequence[int], gen: torch.Generator | None,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = int(size[0]), int(size[1])
    ch, cw = math.ceil(h / cells), math.ceil(w / cells)
    gdev = gen.device if gen is not None else torch.device("cpu")
    grids = torch.rand((n, cells, cells), generator=gen, device=gdev) < p
    sy = torch.randint(ch, (n,), generator=gen, device=gdev)
    sx = torch.randint(cw, (n,), generator=gen, device=gdev)
    return grids.to(device), torch.stack([sy, sx], 1).to(device)


def _rise_build(grids: torch.Tensor, shifts: torch.Tensor, size: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    h, w = int(size[0]), int(size[1])
    cells = grids.shape[-1]
    up = ((cells + 1) * math.ceil(h / cells), (cells + 1) * math.ceil(w / cells))
    big = F.interpolate(grids[:, None].to(dtype), size=up, mode="bilinear", align_corners=False)
    b = grids.shape[0]
    rows = shifts[:, 0, None] + torch.arange(h, device=grids.device)
    cols = shifts[:, 1, None] + torch.arange(w, device=grids.device)
    ar = torch.arange(b, device=grids.device)[:, None, None]
    return big[ar, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


# ------------------------------------------------------------------------------ base
class PerturbationAttribution(Attribution):
    """Base of the forward-only methods: chunked, memory-checked perturbed passes."""

    batch_gradient: ClassVar[bool] = False

    def forward_chunk(self, x: torch.Tensor, total: int, requested: int | None) -> int:
        """Perturbed copies per forward pass (``internal_batch_size`` or the memory default)."""
        return plan_chunk(self.model, x.shape[1:], total=total, requested=requested, device=x.device,
                          dtype=x.dtype, grad=False, option="internal_batch_size")

    def clean_scores(self, x: torch.Tensor, target: TargetLike) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores (N, C), targets (N,))`` of the clean input (one ordinary forward)."""
        s = self.scores(x).detach()
        return s, resolve_targets(target, x.shape[0], scores=s)

    def target_scores(self, x: torch.Tensor, t: torch.Tensor, total: int, chunk: int,
                      build: Callable[[slice], tuple[torch.Tensor, torch.Tensor]],
                      transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      on_chunk: ChunkHook | None = None) -> torch.Tensor:
        """The target score of ``total`` perturbed copies, ``(total,)`` in float32.

        ``build(sl)`` returns the copies ``sl`` and the image each belongs to; the
        scores go through ``transform`` (e.g. a softmax) before the target is read.
        ``on_chunk(sl, copies, img, scores)`` sees every chunk with its target scores in
        the model's dtype (e.g. to compute similarities, or to accumulate masks).
        """
        parts = []
        with torch.inference_mode():
            for sl in chunk_slices(total, chunk):
                z, img = build(sl)
                with memory_guard(sl.stop - sl.start, x.shape[1:], x.device):
                    s = select_output(self.model(model_input(self.model, z)), self.output)
                if transform is not None:
                    s = transform(s)
                y = gather_scores(s, t[img])
                parts.append(y.float())
                if on_chunk is not None:
                    on_chunk(sl, z, img, y)
        return torch.cat(parts).clone() if parts else torch.empty(0, device=x.device)

    def baseline_scores(self, base: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Target scores of the baselines (one ordinary forward)."""
        return gather_scores(self.scores(base).detach(), t).float()


def _features(feature_mask: torch.Tensor | None, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The mask as ``(1 or N, 1 or C, *spatial)`` ids ``0..F-1`` on x's device, and ``F``."""
    if feature_mask is None:
        feature_mask = grid_mask(x.shape, device=x.device)
    if not isinstance(feature_mask, torch.Tensor):
        raise InputError(f"feature_mask must be an integer tensor, got {type(feature_mask).__name__}")
    if feature_mask.dtype.is_floating_point or feature_mask.dtype.is_complex or feature_mask.dtype == torch.bool:
        raise InputError(f"feature_mask must hold integer ids (e.g. torch.long), got {feature_mask.dtype}")
    m = feature_mask.to(x.device)
    while m.dim() < x.dim():
        m = m.unsqueeze(0)
    ok = m.dim() == x.dim() and all(a in (1, b) for a, b in zip(m.shape, x.shape))
    if not ok:
        raise InputError(
            f"feature_mask of shape {tuple(feature_mask.shape)} does not broadcast to the input's shape "
            f"{tuple(x.shape)}; give (H, W), (1 or C, H, W) or (1 or N, 1 or C, H, W)"
        )
    if m.numel() == 0:
        raise InputError("feature_mask is empty")
    ids, inv = torch.unique(m, return_inverse=True)
    return inv.view(m.shape), int(ids.numel())


def _spread(values: torch.Tensor, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-feature values ``(N, F)`` written to every element of their feature, x's shape."""
    n = x.shape[0]
    m = mask.expand(n, *mask.shape[1:])
    out = values.gather(1, m.reshape(n, -1)).view(m.shape)
    return out.expand_as(x).to(x.dtype).contiguous()


def _select(mask: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    return mask[img] if mask.shape[0] > 1 else mask.expand(img.numel(), *mask.shape[1:])


def _keep(z: torch.Tensor, mask: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """``keep[b, pos] = z[b, mask[img_b, pos]]``: copy item b's feature choice to its elements."""
    m = _select(mask, img)
    b = m.shape[0]
    return z.gather(1, m.reshape(b, -1)).view(m.shape)


def _check_positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{name} must be a positive int, got {v!r}")
    return v


# ------------------------------------------------------------------------- occlusion
def _window_axes(x: torch.Tensor, window: Sequence[int] | None, strides: int | Sequence[int] | None,
                 ) -> list[tuple[int, int, int]]:
    """``(size, window, stride)`` per non-batch dimension."""
    dims = tuple(int(d) for d in x.shape[1:])
    if window is None:
        window = (dims[0],) + tuple(max(1, math.ceil(d / _DEFAULT_GRID)) for d in dims[1:])
        if strides is None:
            strides = tuple(max(1, math.ceil(w / 2)) for w in window)
    window = tuple(int(w) for w in window) if not isinstance(window, int) else (int(window),) * (len(dims) - 1)
    if len(window) == len(dims) - 1:
        window = (dims[0],) + window  # a spatial window covers every channel
    if len(window) != len(dims):
        raise ConfigError(
            f"sliding_window_shapes {window} must have {len(dims)} values (one per non-batch dimension "
            f"of the input {tuple(x.shape)}) or {len(dims) - 1} (spatial; all channels)"
        )
    if strides is None:
        strides = 1
    strides = (int(strides),) * len(dims) if isinstance(strides, int) else tuple(int(s) for s in strides)
    if len(strides) == len(dims) - 1:
        strides = (1,) + strides
    if len(strides) != len(dims):
        raise ConfigError(f"strides {strides} must be one int or one per window dimension ({len(dims)})")
    axes = []
    for d, w, s in zip(dims, window, strides):
        if w < 1 or s < 1:
            raise ConfigError(f"window and strides must be positive, got window {window}, strides {strides}")
        if w > d:
            raise ConfigError(f"sliding window {window} exceeds the input's dimensions {dims}")
        if w < d and s > w:
            raise ConfigError(f"stride {s} is larger than the window side {w}: some elements would never be occluded")
        axes.append((d, w, s))
    return axes


def _axis_windows(d: int, w: int, s: int, device: torch.device) -> torch.Tensor:
    """``(count, d)`` 0/1 rows: window ``i`` covers ``[i s, min(i s + w, d))``; as Captum,
    ``count = ceil((d - w) / s) + 1`` (the last window may be cut at the edge)."""
    count = math.ceil((d - w) / s) + 1
    start = torch.arange(count, device=device)[:, None] * s
    pos = torch.arange(d, device=device)[None, :]
    return ((pos >= start) & (pos < start + w)).float()


@register("occlusion", family="attribution")
class Occlusion(PerturbationAttribution):
    """Occlusion (Zeiler & Fergus 2014): the score drop when a sliding window is set to the baseline.

    ``attribute(x, target=None, sliding_window_shapes=None, strides=None, baselines=0.0,
    internal_batch_size=None)``

    Every window position ``p`` gives ``d_p = y_c(x) - y_c(x with window p set to the
    baseline)``; an element's attribution is the mean of ``d_p`` over the windows that
    cover it (Captum's ``Occlusion``: window starts ``i * stride`` for
    ``i < ceil((D - window) / stride) + 1``, the last one cut at the edge).

    Args:
        sliding_window_shapes: the window, one size per non-batch dimension
            (``(C, h, w)``, as Captum), or spatial only (``(h, w)``: every channel).
            Default: all channels x ``ceil(H/8)`` x ``ceil(W/8)``, with strides half the
            window (Captum requires a window, and its default stride is 1).
        strides: one int, or one per window dimension (spatial only: channel stride 1).
        baselines: what occluded elements become (a scalar, a tensor broadcastable to
            ``x``, or a callable ``x -> x'``).
        internal_batch_size: occluded copies per forward pass.
    """

    def _attribute(self, x: torch.Tensor, target: TargetLike,
                   sliding_window_shapes: Sequence[int] | None = None,
                   strides: int | Sequence[int] | None = None,
                   baselines: BaselineLike = 0.0,
                   internal_batch_size: int | None = None) -> torch.Tensor:
        axes = _window_axes(x, sliding_window_shapes, strides)
        base = make_baseline(baselines, x)
        rows = [_axis_windows(d, w, s, x.device) for d, w, s in axes]
        counts = [r.shape[0] for r in rows]
        n, npos = x.shape[0], math.prod(counts)
        s0, t = self.clean_scores(x, target)
        y0 = gather_scores(s0, t).float()
        total = n * npos
        chunk = self.forward_chunk(x, total, internal_batch_size)

        def build(sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
            k = torch.arange(sl.start, sl.stop, device=x.device)
            img, p = k // npos, k % npos
            m = None
            for ax in range(len(rows) - 1, -1, -1):  # position p is row-major over the axes' windows
                i = p % counts[ax]
                p = p // counts[ax]
                r = rows[ax][i].view((k.numel(),) + (1,) * ax + (axes[ax][0],) + (1,) * (len(rows) - 1 - ax))
                m = r if m is None else m * r
            assert m is not None  # rows has one entry per spatial axis, at least one
            m = m.bool()
            return torch.where(m, base[img], x[img]), img

        y = self.target_scores(x, t, total, chunk, build)
        d = (y0[:, None] - y.view(n, npos)).view(n, *counts)
        # attribution = sum_p d_p mask_p / sum_p mask_p, with separable masks
        letters = "abcdefghij"[: len(rows)]
        outs = "ABCDEFGHIJ"[: len(rows)]
        spec = "n" + letters + "," + ",".join(a + b for a, b in zip(letters, outs)) + "->n" + outs
        acc = torch.einsum(spec, d, *rows)
        cover = torch.einsum(",".join(a + b for a, b in zip(letters, outs)) + "->" + outs, *rows)
        return (acc / cover).to(x.dtype)


# ------------------------------------------------------------------ feature ablation
@register("feature_ablation", family="attribution", aliases=("ablation",))
class FeatureAblation(PerturbationAttribution):
    """Feature Ablation: each feature's score drop when that feature alone is set to the baseline.

    ``attribute(x, target=None, feature_mask=None, baselines=0.0, internal_batch_size=None)``

    ``a(e) = y_c(x) - y_c(x with feature(e) set to the baseline)`` for every element ``e``
    (Captum's ``FeatureAblation``). ``feature_mask``: see the module docstring (default:
    an 8x8 grid shared by the channels). One perturbed copy per image and feature.
    """

    def _attribute(self, x: torch.Tensor, target: TargetLike,
                   feature_mask: torch.Tensor | None = None,
                   baselines: BaselineLike = 0.0,
                   internal_batch_size: int | None = None) -> torch.Tensor:
        mask, nf = _features(feature_mask, x)
        base = make_baseline(baselines, x)
        s0, t = self.clean_scores(x, target)
        y0 = gather_scores(s0, t).float()
        n = x.shape[0]
        total = n * nf
        chunk = self.forward_chunk(x, total, internal_batch_size)
        view = (-1,) + (1,) * (x.dim() - 1)

        def build(sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
            k = torch.arange(sl.start, sl.stop, device=x.device)
            img, f = k // nf, k % nf
            off = _select(mask, img) == f.view(view)
            return torch.where(off, base[img], x[img]), img

        y = self.target_scores(x, t, total, chunk, build)
        return _spread(y0[:, None] - y.view(n, nf), mask, x)


# ----------------------------------------------------------------- shapley sampling
def _per_image(v: torch.Tensor, n: int, name: str, tail: int) -> torch.Tensor:
    """``v`` as ``(N, S, tail)``: shared ``(S, tail)`` samples are used for every image."""
    if v.dim() == 2:
        v = v.unsqueeze(0).expand(n, *v.shape)
    if v.dim() != 3 or v.shape[0] != n or v.shape[2] != tail:
        raise InputError(
            f"{name} must be (S, {tail}) for every image or ({n}, S, {tail}) per image, got {tuple(v.shape)}"
        )
    if v.shape[1] < 1:
        raise InputError(f"{name} is empty: give at least one sample")
    return v


@register("shapley_value_sampling", family="attribution", aliases=("shapley_sampling", "shapley"))
class ShapleyValueSampling(PerturbationAttribution):
    """Shapley Value Sampling (Castro et al. 2009): mean marginal contributions over random orders.

    ``attribute(x, target=None, feature_mask=None, baselines=0.0, n_samples=25,
    permutations=None, generator=None, internal_batch_size=None)``

    For each of ``n_samples`` feature orders, the features are added one by one to the
    baseline in that order; a feature's attribution is the mean of the score increase
    its addition causes (Captum's ``ShapleyValueSampling``). ``permutations``: the orders
    themselves, ``(S, F)`` for every image or ``(N, S, F)`` per image (then ``n_samples``
    is ignored); else each image draws its own from ``generator``. Cost: ``N * S * F``
    perturbed copies and one baseline pass.
    """

    def _attribute(self, x: torch.Tensor, target: TargetLike,
                   feature_mask: torch.Tensor | None = None,
                   baselines: BaselineLike = 0.0,
                   n_samples: int = 25,
                   permutations: torch.Tensor | None = None,
                   generator: torch.Generator | None = None,
                   internal_batch_size: int | None = None) -> torch.Tensor:
        mask, nf = _features(feature_mask, x)
        base = make_baseline(baselines, x)
        n = x.shape[0]
        if permutations is None:
            _check_positive_int("n_samples", n_samples)
            streams = image_streams(n, generator, x.device)
            perms = torch.stack([
                torch.stack([torch.randperm(nf, generator=g, device=g.device) for _ in range(n_samples)])
                for g in streams
            ]).to(x.device)
        else:
            perms = _per_image(torch.as_tensor(permutations, device=x.device).long(), n, "permutations", nf)
            if not bool((perms.sort(dim=2).values == torch.arange(nf, device=x.device)).all()):
                raise InputError(f"every row of permutations must be a permutation of 0..{nf - 1}")
        ns = perms.shape[1]
        rank = torch.empty_like(perms)
        rank.scatter_(2, perms, torch.arange(nf, device=x.device).expand_as(perms).contiguous())
        _, t = self.clean_scores(x, target)
        yb = self.baseline_scores(base, t)
        total = n * ns * nf
        chunk = self.forward_chunk(x, total, internal_batch_size)
        per = ns * nf

        def build(sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
            k = torch.arange(sl.start, sl.stop, device=x.device)
            img, s, j = k // per, (k % per) // nf, k % nf
            keep = _keep((rank[img, s] <= j[:, None]).to(torch.uint8), mask, img).bool()
            return torch.where(keep, x[img], base[img]), img

        y = self.target_scores(x, t, total, chunk, build).view(n, ns, nf)
        prev = torch.cat([yb.view(n, 1, 1).expand(n, ns, 1), y[:, :, :-1]], dim=2)
        gain = y - prev  # gain[:, s, j]: of feature perms[:, s, j]
        phi = gain.gather(2, rank).mean(1)
        return _spread(phi, mask, x)


# ---------------------------------------------------------------- LIME / KernelSHAP
def _wls(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted least squares with an intercept, per image: coefficients ``(N, F)``.

    ``z (N, S, F)``, ``y, w (N, S)``; float64 on the input's device; minimum-norm when
    the system is underdetermined (as ``sklearn.linear_model.LinearRegression``).
    """
    wn = w / w.sum(1, keepdim=True)
    zm = (wn[:, :, None] * z).sum(1, keepdim=True)
    ym = (wn * y).sum(1, keepdim=True)
    sw = wn.sqrt()
    a = (z - zm) * sw[:, :, None]
    b = ((y - ym) * sw)[:, :, None]
    if not bool(torch.isfinite(b).all()):  # NaN scores: LAPACK would abort; the guard names the images
        return torch.full((a.shape[0], a.shape[2], 1), float("nan"), dtype=a.dtype, device=a.device)
    return torch.linalg.pinv(a) @ b if a.device.type != "cpu" else torch.linalg.lstsq(a, b, driver="gelsd").solution


def _lasso(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float,
           max_iter: int = 100000, tol: float = 1e-11) -> torch.Tensor:
    """Weighted Lasso with an intercept, per image: sklearn's objective
    ``P(b) = sum_i w_i r_i^2 / (2 sum_i w_i) + alpha |b|_1``, all images at once, in
    float64 on the input's device.

    Accelerated proximal gradient (FISTA, step ``1 / L`` with ``L`` the largest
    eigenvalue of the weighted Gram matrix, adaptive restart) on the centred problem; stops
    when every image's duality gap is at most ``tol`` times its weighted variance of ``y``
    (sklearn's rule, with its default ``tol=1e-4`` made much tighter), checked every 50
    iterations, or after ``max_iter``.
    """
    wn = w / w.sum(1, keepdim=True)
    zm = (wn[:, :, None] * z).sum(1, keepdim=True)
    ym = (wn * y).sum(1, keepdim=True)
    zc, yc = z - zm, y - ym
    g = torch.einsum("ns,nsf,nsk->nfk", wn, zc, zc)
    c = torch.einsum("ns,nsf,ns->nf", wn, zc, yc)
    bb = (wn * yc * yc).sum(1)
    lip = torch.linalg.eigvalsh(g)[:, -1:].clamp_min(1e-300)
    beta = torch.zeros_like(c)
    v = beta.clone()
    tk = torch.ones_like(lip)
    for it in range(max_iter):
        u = v - (torch.einsum("nfk,nk->nf", g, v) - c) / lip
        new = torch.sign(u) * (u.abs() - alpha / lip).clamp_min(0)
        restart = (((v - new) * (new - beta)).sum(1, keepdim=True) > 0)
        tn = (1 + torch.sqrt(1 + 4 * tk * tk)) / 2
        v = torch.where(restart, new, new + ((tk - 1) / tn) * (new - beta))
        beta, tk = new, torch.where(restart, torch.ones_like(tn), tn)
        if it % 50 == 49 and bool((_lasso_gap(g, c, bb, beta, alpha) <= tol * bb.clamp_min(1e-300)).all()):
            break
    return beta


def _lasso_gap(g: torch.Tensor, c: torch.Tensor, bb: torch.Tensor, beta: torch.Tensor, alpha: float) -> torch.Tensor:
    """Duality gap of ``1/2 |b - A beta|^2 + alpha |beta|_1`` from ``G = A'A``, ``c = A'b``, ``bb = b'b``."""
    gb = torch.einsum("nfk,nk->nf", g, beta)
    cb = (beta * c).sum(1)
    rr = (bb - 2 * cb + (beta * gb).sum(1)).clamp_min(0)  # |r|^2
    corr = (c - gb).abs().amax(1)  # |A' r|_inf
    sc = torch.where(corr > alpha, alpha / corr.clamp_min(1e-300), torch.ones_like(corr))
    primal = 0.5 * rr + alpha * beta.abs().sum(1)
    dual = 0.5 * bb - 0.5 * (bb - 2 * sc * (bb - cb) + sc * sc * rr)
    return primal - dual


class _SurrogateAttribution(PerturbationAttribution):
    """Shared loop of LIME and KernelSHAP: interpretable samples -> perturbed copies -> scores."""

    def _sample_scores(self, x: torch.Tensor, t: torch.Tensor, base: torch.Tensor, mask: torch.Tensor,
                       z: torch.Tensor, chunk_req: int | None,
                       on_chunk: ChunkHook | None = None) -> torch.Tensor:
        n, ns, nf = z.shape
        total = n * ns
        chunk = self.forward_chunk(x, total, chunk_req)
        zu = z.to(torch.uint8)

        def build(sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
            k = torch.arange(sl.start, sl.stop, device=x.device)
            img, s = k // ns, k % ns
            keep = _keep(zu[img, s], mask, img).bool()
            return torch.where(keep, x[img], base[img]), img

        return self.target_scores(x, t, total, chunk, build, on_chunk=on_chunk).view(n, ns)


def _check_samples(samples: Any, n: int, nf: int, device: torch.device) -> torch.Tensor:
    z = _per_image(torch.as_tensor(samples, device=device), n, "samples", nf)
    if not bool(((z == 0) | (z == 1)).all()):
        raise InputError("samples must hold 0/1 values (1: the feature keeps its input value)")
    return z.to(torch.float64)


@register("lime", family="attribution")
class Lime(_SurrogateAttribution):
    """LIME (Ribeiro et al. 2016): a weighted linear surrogate over random feature subsets.

    ``attribute(x, target=None, feature_mask=None, baselines=0.0, n_samples=50,
    samples=None, interpretable_model="lasso", alpha=0.01, distance="cosine",
    kernel_width=1.0, generator=None, internal_batch_size=None)``

    Each interpretable sample ``z`` in {0, 1}^F (Bernoulli(0.5) per feature, drawn per
    image from ``generator``, or given as ``samples`` ``(S, F)`` / ``(N, S, F)``) keeps the
    features with ``z = 1`` and sets the rest to the baseline. The surrogate is fitted to
    the target scores with weights ``exp(-d^2 / (2 kernel_width^2))``, ``d`` the cosine
    distance (or ``"euclidean"``) between the flattened input and the perturbed copy;
    each feature's coefficient is the attribution of its elements. As Captum's ``Lime``
    defaults: a Lasso with ``alpha=0.01`` and an intercept (sklearn's objective), solved
    here to a duality gap of 1e-11 of the score variance by accelerated proximal gradient
    on the input's device; ``interpretable_model="linear"``: weighted least squares.
    """

    def _attribute(self, x: torch.Tensor, target: TargetLike,
                   feature_mask: torch.Tensor | None = None,
                   baselines: BaselineLike = 0.0,
                   n_samples: int = 50,
                   samples: torch.Tensor | None = None,
                   interpretable_model: str = "lasso",
                   alpha: float = 0.01,
                   distance: str = "cosine",
                   kernel_width: float = 1.0,
                   generator: torch.Generator | None = None,
                   internal_batch_size: int | None = None) -> torch.Tensor:
        if interpretable_model not in ("lasso", "linear"):
            raise ConfigError(f"interpretable_model must be 'lasso' or 'linear', got {interpretable_model!r}")
        if distance not in ("cosine", "euclidean"):
            raise ConfigError(f"distance must be 'cosine' or 'euclidean', got {distance!r}")
        if not kernel_width > 0:
            raise ConfigError(f"kernel_width must be > 0, got {kernel_width!r}")
        if interpretable_model == "lasso" and not alpha >= 0:
            raise ConfigError(f"alpha must be >= 0, got {alpha!r}")
        mask, nf = _features(feature_mask, x)
        base = make_baseline(baselines, x)
        n = x.shape[0]
        if samples is None:
            _check_positive_int("n_samples", n_samples)
            streams = image_streams(n, generator, x.device)
            z = torch.stack([
                (torch.rand((n_samples, nf), generator=g, device=g.device) < 0.5) for g in streams
            ]).to(x.device, torch.float64)
        else:
            z = _check_samples(samples, n, nf, x.device)
        _, t = self.clean_scores(x, target)
        sims: list[torch.Tensor] = []
        flat = x.flatten(1).float()

        def similarity(sl: slice, pert: torch.Tensor, img: torch.Tensor, _scores: torch.Tensor) -> None:
            p = pert.flatten(1).float()
            if distance == "cosine":
                d = 1 - F.cosine_similarity(flat[img], p, dim=1, eps=1e-8)
            else:
                d = (flat[img] - p).norm(dim=1)
            sims.append(torch.exp(-(d.double() ** 2) / (2 * kernel_width**2)))

        y = self._sample_scores(x, t, base, mask, z, internal_batch_size, on_chunk=similarity).double()
        w = torch.cat(sims).clone().view(z.shape[:2])
        phi = _lasso(z, y, w, float(alpha)) if interpretable_model == "lasso" else _wls(z, y, w).squeeze(2)
        return _spread(phi.float(), mask, x)


@register("kernel_shap", family="attribution", aliases=("kernelshap",))
class KernelShap(_SurrogateAttribution):
    """KernelSHAP (Lundberg & Lee 2017): Shapley values as a constrained weighted regression.

    ``attribute(x, target=None, feature_mask=None, baselines=0.0, n_samples=25,
    samples=None, sample_weights=None, exact=False, generator=None,
    internal_batch_size=None)``

    Coalitions ``z`` in {0, 1}^F keep the features with ``z = 1`` (the rest take the
    baseline). Drawn as Captum's ``KernelShap``: the full and the empty coalition first,
    then ``n_samples - 2`` coalitions whose size ``k`` follows ``(F-1) / (k (F-k))`` and
    whose members are uniform, each of weight 1. ``samples`` ``(S, F)`` / ``(N, S, F)``
    and ``sample_weights`` ``(S,)`` / ``(N, S)`` give them instead (weights default to 1);
    ``exact=True`` uses every proper coalition with its Shapley-kernel weight (exact
    Shapley values; at most 16 features).

    The fit enforces ``phi_0 = y_c(baseline)`` and ``sum(phi) = y_c(x) - y_c(baseline)``
    exactly (efficiency), which Captum approximates with weight 1e6 on the full and the
    empty coalition: the two agree to about 1e-6 relative when the system is determined.
    """

    def _attribute(self, x: torch.Tensor, target: TargetLike,
                   feature_mask: torch.Tensor | None = None,
                   baselines: BaselineLike = 0.0,
                   n_samples: int = 25,
                   samples: torch.Tensor | None = None,
                   sample_weights: torch.Tensor | None = None,
                   exact: bool = False,
                   generator: torch.Generator | None = None,
                   internal_batch_size: int | None = None) -> torch.Tensor:
        mask, nf = _features(feature_mask, x)
        base = make_baseline(baselines, x)
        n = x.shape[0]
        if nf < 2:
            raise ConfigError("KernelSHAP needs at least 2 features; give a finer feature_mask")
        if exact:
            if samples is not None or sample_weights is not None:
                raise ConfigError("exact=True enumerates the coalitions itself; drop samples= / sample_weights=")
            if nf > MAX_EXACT_FEATURES:
                raise ConfigError(
                    f"exact=True enumerates 2^F coalitions: at most {MAX_EXACT_FEATURES} features, got {nf}"
                )
            zs, ws = shapley_kernel_coalitions(nf, device=x.device)
            z, w = zs.expand(n, *zs.shape), ws.expand(n, -1)
        elif samples is None:
            _check_positive_int("n_samples", n_samples)
            z = torch.stack([self._draw(nf, n_samples, g) for g in image_streams(n, generator, x.device)])
            z = z.to(x.device, torch.float64)
            w = torch.ones(z.shape[:2], dtype=torch.float64, device=x.device)
        else:
            z = _check_samples(samples, n, nf, x.device)
            if sample_weights is None:
                w = torch.ones(z.shape[:2], dtype=torch.float64, device=x.device)
            else:
                w = torch.as_tensor(sample_weights, device=x.device, dtype=torch.float64)
                if w.dim() == 1:
                    w = w.expand(n, -1)
                if w.shape != z.shape[:2] or not bool((w >= 0).all()):
                    raise InputError(
                        f"sample_weights must be >= 0 and shaped (S,) or (N, S) = {tuple(z.shape[:2])}, "
                        f"got {tuple(w.shape)}"
                    )
        s0, t = self.clean_scores(x, target)
        fx = gather_scores(s0, t).double()
        fb = self.baseline_scores(base, t).double()
        # the full and the empty coalition are fitted exactly by the constraints: skip their passes
        size = z.sum(2)
        live = ((size > 0) & (size < nf)).any(0)
        zl, wl = z[:, live], w[:, live]
        if zl.shape[1] == 0:
            raise ConfigError("KernelSHAP needs coalitions other than the full and the empty one; give more samples")
        y = self._sample_scores(x, t, base, mask, zl, internal_batch_size).double()
        phi = _constrained_wls(zl, y - fb[:, None], wl, fx - fb)
        return _spread(phi.float(), mask, x)

    @staticmethod
    def _draw(nf: int, n_samples: int, g: torch.Generator) -> torch.Tensor:
        k = torch.arange(1, nf, dtype=torch.float64)
        probs = (nf - 1) / (k * (nf - k))
        out = [torch.ones(nf), torch.zeros(nf)][: min(n_samples, 2)]
        if n_samples > 2:
            sizes = torch.multinomial(probs.to(g.device), n_samples - 2, replacement=True, generator=g) + 1
            keys = torch.rand((n_samples - 2, nf), generator=g, device=g.device)
            order = keys.argsort(1)
            ranks = torch.empty_like(order)
            ranks.scatter_(1, order, torch.arange(nf, device=g.device).expand_as(order).contiguous())
            out += list((ranks < sizes[:, None]).float().cpu())
        return torch.stack(out)


def _constrained_wls(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """``argmin sum_i w_i (y_i - z_i . phi)^2`` subject to ``sum(phi) = total``, per image
    (the last coefficient eliminated), float64, minimum-norm when underdetermined."""
    last = z[:, :, -1:]
    a = (z[:, :, :-1] - last) * w.sqrt()[:, :, None]
    b = ((y - last.squeeze(2) * total[:, None]) * w.sqrt())[:, :, None]
    if not bool(torch.isfinite(b).all()):  # NaN scores: LAPACK would abort; the guard names the images
        return torch.full(z.shape[::2], float("nan"), dtype=z.dtype, device=z.device)
    if a.device.type == "cpu":
        head = torch.linalg.lstsq(a, b, driver="gelsd").solution.squeeze(2)
    else:
        head = (torch.linalg.pinv(a) @ b).squeeze(2)
    return torch.cat([head, (total - head.sum(1))[:, None]], dim=1)


# ---------------------------------------------------------------------------- RISE
@register("rise", family="attribution")
class RISE(PerturbationAttribution):
    """RISE (Petsiuk et al. 2018): the score-weighted mean of random smooth masks.

    ``attribute(x, target=None, n_masks=1000, cells=7, p=0.5, masks=None, baselines=0.0,
    scores="probability", generator=None, internal_batch_size=None)``

    ``S(e) = sum_i f(x * M_i + b * (1 - M_i)) M_i(e) / (n_masks * p)`` with ``f`` the
    target's softmax probability (``scores="logit"``: the logit). Masks as
    :func:`rise_masks` (a ``cells`` x ``cells`` Bernoulli(``p``) grid, upsampled with a
    random shift), drawn per image from ``generator``, built chunk by chunk; or
    ``masks`` ``(M, 1, H, W)`` given for every image (then ``p`` only normalises).
    Returns ``(N, 1, H, W)``: the masks are shared by the channels.
    """

    input_ndim: ClassVar[int | None] = 4

    def _attribute(self, x: torch.Tensor, target: TargetLike,
                   n_masks: int = 1000,
                   cells: int = 7,
                   p: float = 0.5,
                   masks: torch.Tensor | None = None,
                   baselines: BaselineLike = 0.0,
                   scores: str = "probability",
                   generator: torch.Generator | None = None,
                   internal_batch_size: int | None = None) -> torch.Tensor:
        if scores not in ("probability", "logit"):
            raise ConfigError(f"scores must be 'probability' or 'logit', got {scores!r}")
        if not 0 < p <= 1:
            raise ConfigError(f"p must be in (0, 1], got {p!r}")
        n, size = x.shape[0], x.shape[-2:]
        base = make_baseline(baselines, x)
        if masks is not None:
            masks = torch.as_tensor(masks).to(x.device, x.dtype)
            if masks.dim() != 4 or masks.shape[1] != 1 or tuple(masks.shape[-2:]) != tuple(size):
                raise InputError(f"masks must be (M, 1, {size[0]}, {size[1]}), got {tuple(masks.shape)}")
            nm = masks.shape[0]
        else:
            nm = _check_positive_int("n_masks", n_masks)
            _check_positive_int("cells", cells)
            draws = [_rise_draws(nm, cells, p, size, g, x.device) for g in image_streams(n, generator, x.device)]
            grids = torch.stack([d[0] for d in draws])
            shifts = torch.stack([d[1] for d in draws])
        _, t = self.clean_scores(x, target)
        total = n * nm
        chunk = self.forward_chunk(x, total, internal_batch_size)
        sal = torch.zeros(n, 1, *size, dtype=torch.float64, device=x.device)
        current: dict[str, torch.Tensor] = {}

        def build(sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
            k = torch.arange(sl.start, sl.stop, device=x.device)
            img, j = k // nm, k % nm
            m = masks[j] if masks is not None else _rise_build(grids[img, j], shifts[img, j], size, x.dtype)
            current["m"] = m
            return x[img] * m + base[img] * (1 - m), img

        transform = (lambda s: class_probabilities(s, self.output)) if scores == "probability" else None

        # the masks of a chunk are used twice (input and accumulation), never all held at once
        def accumulate(sl: slice, z: torch.Tensor, img: torch.Tensor, y: torch.Tensor) -> None:
            sal.index_add_(0, img, y.double().view(-1, 1, 1, 1) * current["m"].double())

        self.target_scores(x, t, total, chunk, build, transform, on_chunk=accumulate)
        return (sal / (nm * p)).to(x.dtype).clone()
