"""Single-pass gradient methods: Saliency, Input x Gradient, Guided Backprop, Deconvolution."""

from __future__ import annotations

import torch

from ..core import register
from ..core.targets import TargetLike
from .base import GradientAttribution

__all__ = ["Saliency", "InputXGradient", "GuidedBackprop", "Deconvolution"]


@register("saliency", family="attribution", aliases=("vanilla_gradient", "gradient"))
class Saliency(GradientAttribution):
    """Saliency (Simonyan et al. 2014): the absolute input gradient of the target score.

    ``attribute(x, target=None, abs=True)`` returns ``|d y_c / d x|`` (or the signed
    gradient with ``abs=False``), shaped like ``x``.
    """

    stackable = True
    stack_by_default = True

    def _attribute(self, x: torch.Tensor, target: TargetLike, abs: bool = True) -> torch.Tensor:
        g, _, _ = self.gradients(x, target)
        return g.abs() if abs else g


@register("input_x_gradient", family="attribution", aliases=("gradient_x_input", "grad_x_input"))
class InputXGradient(GradientAttribution):
    """Gradient x Input: ``x * d y_c / d x``."""

    stackable = True
    stack_by_default = True

    def _attribute(self, x: torch.Tensor, target: TargetLike) -> torch.Tensor:
        g, _, _ = self.gradients(x, target)
        return x * g


@register("guided_backprop", family="attribution", aliases=("guided_backpropagation",))
class GuidedBackprop(GradientAttribution):
    """Guided Backpropagation (Springenberg et al. 2015).

    Every ReLU (``nn.ReLU``, ``F.relu``, ``torch.relu``, in-place variants, ReLU6)
    passes back ``1[u > 0] * relu(g)``.
    """

    stackable = True
    stack_by_default = True

    relu_rule = "guided"

    def _attribute(self, x: torch.Tensor, target: TargetLike) -> torch.Tensor:
        return self.gradients(x, target)[0]


@register("deconvolution", family="attribution", aliases=("deconvnet", "deconv"))
class Deconvolution(GradientAttribution):
    """Deconvolution (Zeiler & Fergus 2014): every ReLU passes back ``relu(g)``."""

    stackable = True
    stack_by_default = True

    relu_rule = "deconv"

    def _attribute(self, x: torch.Tensor, target: TargetLike) -> torch.Tensor:
        return self.gradients(x, target)[0]
