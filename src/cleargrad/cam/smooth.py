"""Smooth Grad-CAM++ (Omeiza et al. 2019)."""

from __future__ import annotations

from types import MappingProxyType

import torch
from torch import nn

from ..core import register, resolve_targets
from ..core.targets import TargetLike
from .base import BaseCAM, weighted_sum
from .sampling import check_positive_int, draw_seeds, noise_scale, per_image, sample_chunks, seeded_noise
from .weights import gradcam_pp_weights

__all__ = ["SmoothGradCAMPlusPlus"]


@register("smooth_gradcam_pp", family="cam", aliases=("smooth_gradcam++", "smoothgradcampp"))
class SmoothGradCAMPlusPlus(BaseCAM):
    """Smooth Grad-CAM++: Grad-CAM++ with noise-averaged gradient powers.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True, n_samples=4,
    stdevs=0.3, generator=None, internal_batch_size=None)``

    For ``s = 1..n_samples``, ``G^(s) = dy_c/dA(x + eps_s)`` with ``eps_s ~ N(0, stdevs^2)``;
    ``D1, D2, D3`` are the means of ``G, G^2, G^3``; ``alpha = D2 / (2 D2 + S_k D3 + eps)``
    with ``S_k`` from the clean activation; ``w_k = sum_ij alpha ReLU(D1)``; the map is
    built on the clean activation ``A(x)``. Follows the paper (mean gradient ``D1`` in the
    ReLU; torch-cam uses the last sample's gradient there). ``stdevs`` is absolute, in the
    model's input units (torch-cam default 0.3); ``stdevs=0`` gives Grad-CAM++.
    The noisy passes run in chunks of ``internal_batch_size`` images.
    """

    fast_options = MappingProxyType({"n_samples": 16})

    def _raw_maps(
        self,
        x: torch.Tensor,
        target: TargetLike,
        modules: list[nn.Module],
        n_samples: int = 4,
        stdevs: float = 0.3,
        generator: torch.Generator | None = None,
        internal_batch_size: int | None = None,
    ) -> list[torch.Tensor]:
        check_positive_int("n_samples", n_samples)
        sigma = noise_scale(x, stdevs, 0.0)
        acts, scores = self.forward_pass(x, modules)
        t = resolve_targets(target, x.shape[0], scores=scores)
        seeds = draw_seeds(x.shape[0] * n_samples, generator) if float(stdevs) > 0 else None
        stats = [[torch.zeros_like(a) for _ in range(3)] for a in acts]
        chunk = self.chunk_size(x, x.shape[0] * n_samples, internal_batch_size, grad=True)
        for sl, img, _ in sample_chunks(x.shape[0], n_samples, chunk, x.device):
            xs = x[img]
            if seeds is not None:
                xs = xs + seeded_noise(seeds[sl], x) * per_image(sigma[img], x)
            _, grads, _, _ = self.gradient_pass(xs, modules, t[img])
            for (d1, d2, d3), g in zip(stats, grads):
                g2 = g * g
                d1.index_add_(0, img, g)
                d2.index_add_(0, img, g2)
                d3.index_add_(0, img, g2 * g)
        maps = []
        for a, (d1, d2, d3) in zip(acts, stats):
            w = gradcam_pp_weights(a, d1 / n_samples, d2 / n_samples, d3 / n_samples)
            maps.append(weighted_sum(w, a))
        return maps
