"""Integrated Grad-CAM (Sattarzadeh et al. 2021)."""

from __future__ import annotations

from types import MappingProxyType

import torch
from torch import nn

from ..core import register, resolve_targets
from ..core.inputs import broadcast_like
from ..core.targets import TargetLike
from ..errors import ConfigError
from .base import BaseCAM, weighted_sum
from .sampling import check_positive_int, per_image, sample_chunks
from .weights import gradcam_weights

__all__ = ["IntegratedGradCAM", "broadcast_baseline"]


def broadcast_baseline(baseline: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A baseline (number, or tensor broadcastable to ``x``) as a tensor of x's shape."""
    return broadcast_like(baseline, x, "baseline")


@register("integrated_gradcam", family="cam", aliases=("integrated_grad_cam", "igcam"))
class IntegratedGradCAM(BaseCAM):
    """Integrated Grad-CAM: Grad-CAM maps accumulated along the straight path from a baseline.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True, baselines=0.0,
    n_steps=50, form="official", internal_batch_size=None)``

    Path points ``x_m = x' + (m/M)(x - x')``, ``m = 0..M-1`` (``M = n_steps``).

    * ``form="official"`` (default; the authors' code): the sum over ``m`` of the Grad-CAM
      maps ``ReLU(sum_k GAP(dy_c/dA^k(x_m)) A^k(x_m))``.
    * ``form="paper"`` (an alternative reading, flagged as a proposal in the spec): weights
      ``w_k = (1/M) sum_m GAP(dy_c/dA^k(x_m))``, map ``sum_k w_k (A^k(x) - A^k(x'))``.

    The ``N·M`` path points run as chunks of ``internal_batch_size`` images.
    """

    fast_options = MappingProxyType({"n_steps": 16})

    def _raw_maps(
        self,
        x: torch.Tensor,
        target: TargetLike,
        modules: list[nn.Module],
        baselines: float | torch.Tensor = 0.0,
        n_steps: int = 50,
        form: str = "official",
        internal_batch_size: int | None = None,
    ) -> list[torch.Tensor]:
        check_positive_int("n_steps", n_steps)
        if form not in ("official", "paper"):
            raise ConfigError(f"form must be 'official' or 'paper', got {form!r}")
        xb = broadcast_baseline(baselines, x)
        acts, scores = self.forward_pass(x, modules)
        t = resolve_targets(target, x.shape[0], scores=scores)
        acc = [
            torch.zeros_like(a[:, :1]) if form == "official" else torch.zeros_like(a.flatten(2)[:, :, 0]) for a in acts
        ]
        chunk = self.chunk_size(x, x.shape[0] * n_steps, internal_batch_size, grad=True)
        for _, img, m in sample_chunks(x.shape[0], n_steps, chunk, x.device):
            alpha = per_image(m.to(x.dtype) / n_steps, x)
            xm = xb[img] + alpha * (x[img] - xb[img])
            acts_m, grads, _, _ = self.gradient_pass(xm, modules, t[img])
            for total, am, g in zip(acc, acts_m, grads):
                w = gradcam_weights(g)
                total.index_add_(0, img, torch.relu(weighted_sum(w, am)) if form == "official" else w)
        if form == "official":
            return acc
        base_acts = self.layer_pass(xb, modules)
        return [weighted_sum(w / n_steps, a - ab) for w, a, ab in zip(acc, acts, base_acts)]
