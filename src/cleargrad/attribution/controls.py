"""A random-attribution control and Guided Grad-CAM."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..cam.capture import activations_and_gradients
from ..core import find_layer, register
from ..core.layers import LayerSpec
from ..core.sampling import image_streams
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError
from .base import Attribution, GradientAttribution

__all__ = ["GuidedGradCAM", "RandomAttribution"]

_INTERPOLATE = ("nearest", "bilinear", "bicubic", "area", "nearest-exact")


@register("random", family="attribution", aliases=("random_attribution", "random_map"))
class RandomAttribution(Attribution):
    """A random map: the control every metric should beat.

    ``attribute(x, target=None, distribution="uniform", generator=None)`` returns
    i.i.d. values shaped like ``x``: ``uniform`` on ``[0, 1)`` or standard ``normal``.
    Each image draws from its own stream seeded from ``generator``
    (:mod:`cleargrad.core.sampling`), so a batch equals its images drawn one by
    one with the same generator. The model never runs on ``x``; an explicit ``target``
    is checked against the number of classes (one probe forward of one image).
    """

    reads_model = False

    def _attribute(self, x: torch.Tensor, target: TargetLike, distribution: str = "uniform",
                   generator: torch.Generator | None = None) -> torch.Tensor:
        if distribution not in ("uniform", "normal"):
            raise ConfigError(f"distribution must be 'uniform' or 'normal', got {distribution!r}")
        if target is not None:
            self.targets(x, target)
        draw = torch.rand if distribution == "uniform" else torch.randn
        maps = [draw(x.shape[1:], generator=g, device=g.device, dtype=x.dtype)
                for g in image_streams(x.shape[0], generator, x.device)]
        return torch.stack(maps).to(x.device)


@register("guided_gradcam", family="attribution", aliases=("guided_grad_cam",))
class GuidedGradCAM(GradientAttribution):
    """Guided Grad-CAM (Selvaraju et al. 2017): Guided Backprop times the upsampled Grad-CAM map.

    ``GuidedGradCAM(model, layer="auto").attribute(x, target=None, interpolate_mode="nearest")``

    ``GuidedBackprop(x) * up(ReLU(sum_k mean(dy_c/dA^k) A^k))`` with ``A`` the layer's
    output (Grad-CAM's map, as :class:`~cleargrad.GradCAM`), shaped like ``x``; ``up``
    resizes the layer-resolution map to ``x``'s size with ``interpolate_mode``
    (``"nearest"``: Captum's ``GuidedGradCam`` default; ``"bilinear"``: as the Grad-CAM
    family upsamples, ``align_corners=False``). Two forward+backward passes: a plain one
    for Grad-CAM (whose scores give the argmax when ``target`` is None, or check the
    given targets) and a guided one.
    ``layer`` as for the CAM family (a dotted name, a module or ``"auto"``).
    """

    relu_rule = "guided"
    input_ndim: ClassVar[int | None] = 4

    def __init__(self, model: nn.Module, layer: LayerSpec = "auto", *, output: OutputSelector = None,
                 allow_train_mode: bool = False) -> None:
        super().__init__(model, output=output, allow_train_mode=allow_train_mode)
        self.layer = layer
        self._auto: dict[tuple[int, ...], nn.Module] = {}

    def __repr__(self) -> str:
        return f"GuidedGradCAM({type(self.model).__name__}, layer={self.layer!r})"

    def _module(self, x: torch.Tensor) -> nn.Module:
        if isinstance(self.layer, str) and self.layer == "auto":
            key = tuple(x.shape[1:])
            if key not in self._auto:
                self._auto[key] = find_layer(self.model, "auto", example=x, output=self.output)
            return self._auto[key]
        return find_layer(self.model, self.layer)

    def _attribute(self, x: torch.Tensor, target: TargetLike, interpolate_mode: str = "nearest") -> torch.Tensor:
        if interpolate_mode not in _INTERPOLATE:
            raise ConfigError(f"interpolate_mode must be one of {_INTERPOLATE}, got {interpolate_mode!r}")
        # the first pass resolves (argmax) or checks the targets against its own scores
        (act,), (grad,), _, t = activations_and_gradients(self.model, x, [self._module(x)], target, self.output)
        cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * act).sum(dim=1, keepdim=True))
        kw = {"align_corners": False} if interpolate_mode in ("bilinear", "bicubic") else {}
        up = F.interpolate(cam.to(x.dtype), size=x.shape[2:], mode=interpolate_mode, **kw)
        return self.gradients(x, t)[0] * up
