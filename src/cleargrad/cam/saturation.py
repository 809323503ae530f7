"""Internal-saturation diagnostic of Expected Grad-CAM (spec § 5.3)."""

from __future__ import annotations

import torch
from torch import nn

from ..core import check_input, chunk_slices, find_layer, plan_chunk, preserved_state
from ..core.layers import LayerSpec
from ..errors import ConfigError
from .capture import layer_activations
from .integrated import broadcast_baseline

__all__ = ["internal_saturation"]


def internal_saturation(
    model: nn.Module,
    x: torch.Tensor,
    layer: LayerSpec = "auto",
    *,
    baseline: float | torch.Tensor = 0.0,
    n_points: int = 50,
    batch_size: int | None = None,
    allow_train_mode: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarity of the layer embedding along the straight path to each image.

    For ``t`` on a grid of ``n_points`` in ``[0, 1]``, returns
    ``cos(vec A(x' + t (x - x')), vec A(x))``. The layer *saturates internally* when the
    curve reaches about 1 well before ``t = 1``: the gradients there carry little signal,
    which is what Expected Grad-CAM's path integration addresses.

    Args:
        model: the classifier (left untouched).
        x: input batch ``(N, C, H, W)``.
        layer: dotted name, module or ``"auto"``.
        baseline: the path's start ``x'`` (number or tensor broadcastable to ``x``).
        n_points: grid size (``t = linspace(0, 1, n_points)``).
        batch_size: path points per forward pass (passes stop at the layer).
        allow_train_mode: accept a model in training mode.

    Returns:
        ``(t, cos)``: ``t`` of shape ``(n_points,)`` and ``cos`` of shape ``(N, n_points)``
        (0 where an embedding is all zero).
    """
    check_input(x, ndim=4)
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 2:
        raise ConfigError(f"n_points must be an int >= 2, got {n_points!r}")
    with preserved_state(model, allow_train_mode=allow_train_mode):
        module = find_layer(model, layer, example=x)
        xb = broadcast_baseline(baseline, x)
        grid = torch.linspace(0, 1, n_points, dtype=x.dtype, device=x.device)
        n = x.shape[0]
        (ref,) = layer_activations(model, x, [module])
        ref = ref.flatten(1)
        cos = torch.empty(n * n_points, dtype=x.dtype, device=x.device)
        chunk = plan_chunk(model, x.shape[1:], total=n * n_points, requested=batch_size, device=x.device, dtype=x.dtype,
                           grad=False)
        for sl in chunk_slices(n * n_points, chunk):
            j = torch.arange(sl.start, sl.stop, device=x.device)
            img, k = j // n_points, j % n_points
            pts = xb[img] + grid[k].view(-1, 1, 1, 1) * (x[img] - xb[img])
            (a,) = layer_activations(model, pts, [module])
            cos[sl] = torch.nn.functional.cosine_similarity(a.flatten(1), ref[img], dim=1, eps=1e-12)
    return grid, cos.view(n, n_points)
