"""Expected Grad-CAM (Buono et al. 2024), estimator of spec § 5.2."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from ..core import (
    chunk_slices,
    register,
    resolve_targets,
)
from ..core.maps import gaussian_blur
from ..core.options import signature_options
from ..core.targets import TargetLike
from ..errors import ConfigError, InputError
from .base import BaseCAM, weighted_sum
from .sampling import (
    check_positive_int,
    draw_indices,
    draw_seeds,
    draw_uniform,
    noise_scale,
    per_image,
    sample_chunks,
    seeded_noise,
)
from .weights import gradcam_pp_weights, grid_dims

__all__ = ["ExpectedGradCAM", "DEFAULT_NOISE_FRACTION"]

#: default noise std as a fraction of each image's value range (SmoothGrad's 15 %)
DEFAULT_NOISE_FRACTION = 0.15
_NAMED = ("zeros", "noise", "uniform", "blur")
#: std of the "blur" reference as a fraction of the image side (3.5 px at 28 px, 28 px at 224 px)
BLUR_FRACTION = 0.125
_WEIGHTING = ("gradcam", "xgrad", "gradcam_pp")


@dataclass
class _References:
    kind: str  # "set", "constant", "noise", "uniform", "blur"
    images: torch.Tensor | None = None  # (R, C, H, W) for "set", (1, C, H, W) for "constant"

    @property
    def tensor(self) -> torch.Tensor:
        """The fixed images of a ``"set"``, ``"constant"`` or ``"blur"`` reference."""
        if self.images is None:
            raise ValueError(f"{self.kind!r} references are drawn per sample: there are no fixed images")
        return self.images


def _references(references: Any, x: torch.Tensor) -> _References:
    if isinstance(references, torch.Tensor):
        r = references.to(device=x.device, dtype=x.dtype)
        if r.dim() == x.dim() - 1:
            r = r.unsqueeze(0)
        if r.dim() != x.dim() or r.shape[1:] != x.shape[1:] or r.shape[0] == 0:
            raise InputError(
                f"references must be a tensor of shape (R, {', '.join(map(str, x.shape[1:]))}), "
                f"got {tuple(references.shape)}"
            )
        if not bool(torch.isfinite(r).all()):
            raise InputError("references contain NaN or Inf values")
        return _References("set", r)
    if isinstance(references, (int, float)) and not isinstance(references, bool):
        return _References("constant", torch.full_like(x[:1], float(references)))
    if references == "zeros":
        return _References("constant", torch.zeros_like(x[:1]))
    if references in ("noise", "uniform"):
        return _References(references)
    if references == "blur":
        return _References("blur", _blurred(x))
    raise ConfigError(
        f"references must be a tensor of reference images, a number, or one of {_NAMED}, got {references!r}"
    )


def _blurred(x: torch.Tensor) -> torch.Tensor:
    """Each image Gaussian-blurred (std ``BLUR_FRACTION`` of its longer side, reflect padding)."""
    if x.dim() != 4:
        raise InputError(
            f"references='blur' blurs 2-D images (a 2-D Gaussian), but x has shape {tuple(x.shape)}; for a "
            "(N, C, D, H, W) volume give references= a tensor of reference volumes, a number or 'zeros'"
        )
    return gaussian_blur(x, BLUR_FRACTION * max(x.shape[-2:]))


@register("expected_gradcam", family="cam", aliases=("expected_grad_cam", "egcam"))
class ExpectedGradCAM(BaseCAM):
    """Expected Grad-CAM: Grad-CAM whose gradient is a smoothed expectation of integrated
    gradients over sampled references.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True,
    references="zeros", n_samples=50, stdevs=None, t_sampling="uniform",
    multiply_by_delta=True, weighting="gradcam", generator=None, internal_batch_size=None)``

    For each image and ``s = 1..S`` (``S = n_samples``), drawn independently:
    reference ``x'_s`` (uniformly from the reference set); ``t_s ~ U(0, 1)``; noisy input
    ``x~_s = x + eps_s``, ``eps_s ~ N(0, sigma^2)``; path point
    ``z_s = x'_s + t_s (x~_s - x'_s)``; ``g_s = dy_c/dA(z_s)``;
    ``Delta_s = A(x~_s) - A(x'_s)`` (difference from reference in the layer's space).
    Expected layer gradient ``G^ = (1/S) sum_s Delta_s ⊙ g_s`` (see :meth:`layer_gradient`);
    weights ``w_k = (1/Z) sum_ij G^_kij``; map ``ReLU(sum_k w_k A^k(x))`` on the clean
    activation.

    Options:
        references: ``(R, C, H, W)`` reference images (data-aware: e.g. 100 training
            images; each draw picks one uniformly), a number (constant image),
            ``"zeros"`` (default; the all-zero input, i.e. the mean image for normalised
            inputs), ``"noise"`` (a fresh N(0, 1) image per draw), ``"uniform"`` (a fresh
            image uniform in ``[min(x), max(x)]`` of the explained image per draw) or
            ``"blur"`` (the explained image Gaussian-blurred with std 1/8 of its side).
        n_samples: draws per image ``S`` (50).
        stdevs: noise std ``sigma`` in input units; None (default) is
            ``0.15 * (max(x) - min(x))`` per image; 0 disables the smoothing.
        t_sampling: ``"uniform"`` (random ``t``) or ``"grid"`` (fixed midpoints
            ``t_s = (s + 1/2)/S``: a Riemann sum instead of Monte Carlo).
        multiply_by_delta: ``False`` averages the raw gradients ``g_s`` (a smoothed,
            path-averaged gradient) instead of ``Delta_s ⊙ g_s``.
        weighting: ``"gradcam"`` (global average of ``G^``), ``"xgrad"``
            (``w_k = sum_ij G^_kij / sum_ij A^k_ij``, 0 where the channel sums to 0: the
            map's total then equals the sum of ``G^`` over the channels active at x,
            completeness), or ``"gradcam_pp"``
            (Grad-CAM++ weights with ``G^`` in place of ``G``).
        generator: ``torch.Generator`` for reproducible draws (noise images come from
            per-draw seeds, so the result does not depend on ``internal_batch_size``).
        internal_batch_size: path points per forward/backward pass.

    Cost: ``S`` forward and (partial) backward passes per image, plus passes up to the
    layer for ``A(x~_s)`` (only when ``sigma > 0``) and for the references (once per
    distinct reference image, or per draw for ``"noise"``/``"uniform"``).
    """

    fast_options = MappingProxyType({"n_samples": 16})

    def layer_gradient(self, x: torch.Tensor, target: TargetLike = None, **options: Any) -> torch.Tensor:
        """The expected layer gradient ``G^`` ``(N, K, h, w)`` of the (first) target layer.

        Takes the sampling options of :meth:`attribute` (not ``weighting``).
        """
        def run(x: torch.Tensor, target: TargetLike, options: dict[str, Any]) -> torch.Tensor:
            return self._expected(x, target, self.resolve_layers(x)[:1], **options)[1][0].contiguous()

        valid = signature_options(self._expected, skip=3)[0]
        return self.guarded_call(x, target, options, hook=run, valid=valid, owner="layer_gradient")

    def option_names(self) -> list[str]:
        """``weighting`` plus the sampling options."""
        return super().option_names() + signature_options(self._expected, skip=3)[0]

    def _raw_maps(
        self,
        x: torch.Tensor,
        target: TargetLike,
        modules: list[nn.Module],
        weighting: str = "gradcam",
        **options: Any,
    ) -> list[torch.Tensor]:
        if weighting not in _WEIGHTING:
            raise ConfigError(f"weighting must be one of {_WEIGHTING}, got {weighting!r}")
        acts, ghat = self._expected(x, target, modules, **options)
        maps = []
        for a, g in zip(acts, ghat):
            if weighting == "gradcam":
                w = g.mean(dim=grid_dims(g))
            elif weighting == "xgrad":
                s = a.sum(dim=grid_dims(a))
                w = torch.where(s != 0, g.sum(dim=grid_dims(g)) / torch.where(s != 0, s, torch.ones_like(s)), 0.0)
            else:
                w = gradcam_pp_weights(a, g)
            maps.append(weighted_sum(w, a))
        return maps

    def _expected(
        self,
        x: torch.Tensor,
        target: TargetLike,
        modules: list[nn.Module],
        references: Any = "zeros",
        n_samples: int = 50,
        stdevs: float | None = None,
        t_sampling: str = "uniform",
        multiply_by_delta: bool = True,
        generator: torch.Generator | None = None,
        internal_batch_size: int | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Clean activations and the expected layer gradients, per layer."""
        check_positive_int("n_samples", n_samples)
        if t_sampling not in ("uniform", "grid"):
            raise ConfigError(f"t_sampling must be 'uniform' or 'grid', got {t_sampling!r}")
        if internal_batch_size is not None:
            check_positive_int("internal_batch_size", internal_batch_size)
        refs = _references(references, x)
        sigma = noise_scale(x, stdevs, DEFAULT_NOISE_FRACTION)
        noisy = bool((sigma > 0).any())
        acts, scores = self.forward_pass(x, modules)
        t = resolve_targets(target, x.shape[0], scores=scores)
        n, work = x.shape[0], x.shape[0] * n_samples
        chunk = self.chunk_size(x, work, internal_batch_size, grad=True)

        # every draw up front (small) or as per-draw seeds, in a fixed order
        if t_sampling == "uniform":
            ts = draw_uniform(work, generator, x)
        else:
            ts = ((torch.arange(work, device=x.device) % n_samples).to(x.dtype) + 0.5) / n_samples
        if refs.kind == "blur":  # one reference per image: the "set" path with fixed indices
            refs = _References("set", refs.images)
            ref_idx = torch.arange(work, device=x.device) // n_samples
        elif refs.kind == "set":
            ref_idx = draw_indices(refs.tensor.shape[0], work, generator, x.device)
        else:
            ref_idx = torch.empty(0, dtype=torch.long, device=x.device)  # not used by drawn references
        noise_seeds = draw_seeds(work, generator) if noisy else None
        ref_seeds = draw_seeds(work, generator) if refs.kind in ("noise", "uniform") else []

        ref_acts: list[torch.Tensor] | None = None
        ref_pos: torch.Tensor | None = None
        if multiply_by_delta and refs.kind in ("set", "constant"):
            if refs.kind == "set":
                used, ref_pos = torch.unique(ref_idx, return_inverse=True)
                imgs = refs.tensor[used]
            else:
                imgs = refs.tensor
            parts = [self.layer_pass(imgs[sl], modules) for sl in chunk_slices(imgs.shape[0], chunk)]
            ref_acts = [torch.cat([p[i] for p in parts]) for i in range(len(modules))]

        ghat = [torch.zeros_like(a) for a in acts]
        lo = per_image(x.flatten(1).amin(dim=1), x)
        hi = per_image(x.flatten(1).amax(dim=1), x)
        for sl, img, _ in sample_chunks(n, n_samples, chunk, x.device):
            xs = x[img]
            if noise_seeds is not None:
                xs = xs + seeded_noise(noise_seeds[sl], x) * per_image(sigma[img], x)
            if refs.kind == "set":
                r = refs.tensor[ref_idx[sl]]
            elif refs.kind == "constant":
                r = refs.tensor.expand_as(xs)
            elif refs.kind == "noise":
                r = seeded_noise(ref_seeds[sl], x)
            else:
                r = lo[img] + (hi[img] - lo[img]) * seeded_noise(ref_seeds[sl], x, kind="uniform")
            z = r + per_image(ts[sl], x) * (xs - r)
            _, grads, _, _ = self.gradient_pass(z, modules, t[img])
            if not multiply_by_delta:
                for total, g in zip(ghat, grads):
                    total.index_add_(0, img, g)
                continue
            deltas = self._deltas(xs, r, img, sl, acts, ref_acts, ref_pos, noisy, modules)
            for total, d, g in zip(ghat, deltas, grads):
                total.index_add_(0, img, d * g)
        return acts, [g / n_samples for g in ghat]

    def _deltas(
        self,
        xs: torch.Tensor,
        r: torch.Tensor,
        img: torch.Tensor,
        sl: slice,
        acts: list[torch.Tensor],
        ref_acts: list[torch.Tensor] | None,
        ref_pos: torch.Tensor | None,
        noisy: bool,
        modules: list[nn.Module],
    ) -> list[torch.Tensor]:
        """``A(x~_s) - A(x'_s)`` per layer, with as few passes up to the layer as possible."""
        need_x, need_r = noisy, ref_acts is None
        if need_x and need_r:
            both = self.layer_pass(torch.cat([xs, r]), modules)
            ax = [b[: xs.shape[0]] for b in both]
            ar = [b[xs.shape[0] :] for b in both]
        else:
            ax = self.layer_pass(xs, modules) if need_x else [a[img] for a in acts]
            if ref_acts is None:  # need_r
                ar = self.layer_pass(r, modules)
            elif ref_pos is not None:
                ar = [ra[ref_pos[sl]] for ra in ref_acts]
            else:
                ar = [ra.expand_as(a) for ra, a in zip(ref_acts, ax)]
        return [a - b for a, b in zip(ax, ar)]
