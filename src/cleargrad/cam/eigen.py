"""Principal-component CAMs: EigenCAM, EigenGradCAM and KPCA-CAM.

The map is the projection of the layer's (gradient-weighted) channel stack on its first
(kernel) principal component; see :mod:`cleargrad.cam.projection` for the centring, the
sign convention and the scale.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core import register, resolve_targets
from ..core.targets import TargetLike
from .base import BaseCAM
from .gradient import GradientCAM
from .projection import check_kernel, first_component, kernel_component

__all__ = ["EigenCAM", "EigenGradCAM", "KPCACAM"]


@register("eigencam", family="cam", aliases=("eigen_cam",))
class EigenCAM(BaseCAM):
    """EigenCAM (Muhammad & Yeasin 2020): the first principal component of the activation.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True)``

    Class-agnostic: ``target`` is accepted (and checked) but does not change the map. One
    forward pass (up to the layer only) and one small SVD per image; no gradient, so it
    works on any model whose layer output is a feature map or a token grid (detectors,
    embedding models). ``eigen_smooth`` changes nothing (the map already is a projection).
    """

    def _raw_maps(
        self, x: torch.Tensor, target: TargetLike, modules: list[nn.Module], **options: Any
    ) -> list[torch.Tensor]:
        if options:
            raise TypeError(f"EigenCAM.attribute got unexpected options {sorted(options)}")
        if target is not None:  # check the target like every CAM does (a full pass is needed)
            acts, scores = self.forward_pass(x, modules)
            resolve_targets(target, x.shape[0], scores=scores)
        else:
            acts = self.layer_pass(x, modules)
        return [first_component(a) for a in acts]


@register("eigengradcam", family="cam", aliases=("eigen_gradcam", "eigen_grad_cam"))
class EigenGradCAM(GradientCAM):
    """EigenGradCAM: the first principal component of ``G ⊙ A`` (gradient times activation).

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True)``

    Class-specific like Grad-CAM (one forward and one backward pass), denoised like EigenCAM.
    As a gradient CAM its element weights are ``G``; its map is always the projection.
    """

    def weights(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """The gradient, one weight per activation element (then projected)."""
        return gradient

    def _raw_maps(
        self, x: torch.Tensor, target: TargetLike, modules: list[nn.Module], **options: Any
    ) -> list[torch.Tensor]:
        if options:
            raise TypeError(f"EigenGradCAM.attribute got unexpected options {sorted(options)}")
        acts, grads, _, _ = self.gradient_pass(x, modules, target)
        return [first_component(self.weights(a, g) * a) for a, g in zip(acts, grads)]


@register("kpcacam", family="cam", aliases=("kpca_cam",))
class KPCACAM(BaseCAM):
    """KPCA-CAM (Karmani et al. 2024): the first kernel principal component of the activation.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True, kernel="sigmoid",
    gamma=None, degree=3, coef0=1.0)``

    Options (pytorch-grad-cam's ``KPCA_CAM`` defaults, scikit-learn's kernel definitions):
        kernel: ``"sigmoid"`` (default), ``"rbf"``, ``"poly"``, ``"linear"`` or ``"cosine"``.
        gamma: kernel coefficient (None: ``1 / channels``).
        degree, coef0: of the polynomial (and, for coef0, sigmoid) kernel.

    Class-agnostic; one pass up to the layer and a ``P x P`` eigenproblem per image
    (``P = h·w`` positions), so it suits the small grids of the last layers.
    """

    def _raw_maps(
        self,
        x: torch.Tensor,
        target: TargetLike,
        modules: list[nn.Module],
        kernel: str = "sigmoid",
        gamma: float | None = None,
        degree: int = 3,
        coef0: float = 1.0,
    ) -> list[torch.Tensor]:
        check_kernel(kernel, gamma)
        if target is not None:
            acts, scores = self.forward_pass(x, modules)
            resolve_targets(target, x.shape[0], scores=scores)
        else:
            acts = self.layer_pass(x, modules)
        return [kernel_component(a, kernel, gamma, degree, coef0) for a in acts]
