"""Channel-weight formulas shared by several CAM methods (pure tensor functions).

Activations and gradients are ``(N, K, *grid)``: ``(N, K, h, w)`` feature maps, or
``(N, K, d, h, w)`` volumes; sums and means run over every grid position.
"""

from __future__ import annotations

import torch

__all__ = ["GRADCAM_PP_EPS", "XGRAD_EPS", "gradcam_weights", "gradcam_pp_weights", "grid_dims", "xgrad_weights"]

#: eps in the Grad-CAM++ alpha denominator (pytorch-grad-cam's value, spec § 2.3)
GRADCAM_PP_EPS = 1e-6
#: eps in the XGrad-CAM normaliser (spec § 2.5)
XGRAD_EPS = 1e-7


def grid_dims(t: torch.Tensor) -> tuple[int, ...]:
    """The grid dimensions of an ``(N, K, *grid)`` tensor: ``(2, 3)``, or ``(2, 3, 4)`` for a volume."""
    return tuple(range(2, t.dim()))


def gradcam_weights(gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM: ``w_k = (1/Z) sum_ij G_kij`` (global average pooling), ``(N, K)``."""
    return gradient.mean(dim=grid_dims(gradient))


def gradcam_pp_weights(
    activation: torch.Tensor,
    d1: torch.Tensor,
    d2: torch.Tensor | None = None,
    d3: torch.Tensor | None = None,
    eps: float = GRADCAM_PP_EPS,
) -> torch.Tensor:
    """Grad-CAM++ weights ``(N, K)`` (eq. 19 of the paper, exponential-free form).

    ``alpha = D2 / (2 D2 + S_k D3 + eps)`` with ``S_k = sum_ab A^k_ab``, set to 0 where
    ``D2 = 0``; ``w_k = sum_ij alpha_kij ReLU(D1_kij)``. For plain Grad-CAM++ ``D1 = G``,
    ``D2 = G^2``, ``D3 = G^3``; Smooth Grad-CAM++ passes the noise averages of those.
    """
    if d2 is None:
        d2 = d1 * d1
    if d3 is None:
        d3 = d2 * d1
    dims = grid_dims(activation)
    s = activation.sum(dim=dims, keepdim=True)
    alpha = d2 / (2 * d2 + s * d3 + eps)
    alpha = torch.where(d2 != 0, alpha, torch.zeros_like(alpha))
    return (alpha * torch.relu(d1)).sum(dim=dims)


def xgrad_weights(activation: torch.Tensor, gradient: torch.Tensor, eps: float = XGRAD_EPS) -> torch.Tensor:
    """XGrad-CAM: ``w_k = sum_ij (A^k_ij / (sum_ab A^k_ab + eps)) G_kij``, ``(N, K)``."""
    dims = grid_dims(activation)
    s = activation.sum(dim=dims, keepdim=True)
    return (activation / (s + eps) * gradient).sum(dim=dims)
