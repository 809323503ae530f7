"""Expected Gradients (Erion et al. 2021)."""

from __future__ import annotations

from types import MappingProxyType

import torch

from ..core import chunk_slices, register
from ..core.sampling import draw_indices, draw_uniform, image_streams, standard_normal
from ..core.targets import TargetLike
from ..errors import ConfigError, InputError
from .base import GradientAttribution

__all__ = ["ExpectedGradients", "draw_indices", "draw_uniform"]


@register("expected_gradients", family="attribution", aliases=("eg", "gradient_shap"))
class ExpectedGradients(GradientAttribution):
    """Expected Gradients: ``E_{x'~D, t~U(0,1)}[(x - x') * grad(x' + t (x - x'))]``.

    ``attribute(x, target=None, references=..., n_samples=50, stdevs=0.0,
    generator=None, internal_batch_size=None)``

    Args:
        references: ``(R, *x.shape[1:])`` reference images (e.g. training images); each
            draw picks one uniformly.
        n_samples: Monte-Carlo draws of ``(x', t)`` per image.
        stdevs: std of Gaussian noise added to ``x`` before interpolating (the
            GradientShap variant); 0 disables it.
        generator: a ``torch.Generator`` for reproducible draws. Each image gets its own
            stream seeded from it, so results do not depend on ``internal_batch_size`` and
            a batch equals its images explained one by one with the same generator.
        internal_batch_size: how many (draw, image) pairs go through the model at once.
    """

    fast_options = MappingProxyType({"n_samples": 16})

    batch_gradient = False  # gradients run in checked chunks of path points / draws

    def _attribute(
        self,
        x: torch.Tensor,
        target: TargetLike,
        references: torch.Tensor | None = None,
        n_samples: int = 50,
        stdevs: float = 0.0,
        generator: torch.Generator | None = None,
        internal_batch_size: int | None = None,
    ) -> torch.Tensor:
        if references is None:
            raise InputError("ExpectedGradients needs references=<(R, C, H, W) tensor of reference images>")
        if not isinstance(references, torch.Tensor) or references.shape[1:] != x.shape[1:]:
            raise InputError(
                f"references must be a tensor of shape (R, {', '.join(map(str, x.shape[1:]))})"
            )
        if not isinstance(n_samples, int) or n_samples < 1:
            raise ConfigError(f"n_samples must be a positive int, got {n_samples!r}")
        refs = references.to(device=x.device, dtype=x.dtype)
        if refs.shape[0] == 0 or not bool(torch.isfinite(refs).all()):
            raise InputError("references must be a non-empty set of finite images (no NaN or Inf)")
        t = self.targets(x, target)
        n = x.shape[0]
        work = n * n_samples
        # per-image streams: each image draws its reference indices and path positions up
        # front (small), then its noise item by item, so results do not depend on chunking
        streams = image_streams(n, generator, x.device)
        ref_idx = torch.cat([draw_indices(refs.shape[0], n_samples, g, x.device) for g in streams])
        alpha = torch.cat([draw_uniform(n_samples, g, x) for g in streams])
        view = (-1,) + (1,) * (x.dim() - 1)
        total = torch.zeros_like(x)
        chunk = self.chunk_size(x, work, internal_batch_size)
        for sl in chunk_slices(work, chunk):
            img = torch.arange(sl.start, sl.stop, device=x.device) // n_samples
            xs = x[img]
            if stdevs:
                eps = [standard_normal(x.shape[1:], streams[k // n_samples], x) for k in range(sl.start, sl.stop)]
                xs = xs + torch.stack(eps) * stdevs
            r = refs[ref_idx[sl]]
            d = xs - r
            z = r + alpha[sl].view(view) * d
            g, _, _ = self.gradients(z, t[img])
            total.index_add_(0, img, d * g)
        return total / n_samples
