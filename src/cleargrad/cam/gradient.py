"""CAMs from one forward and one backward pass: Grad-CAM, Grad-CAM++, XGrad-CAM,
LayerCAM, HiResCAM; and the original CAM of GAP-linear networks."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core import find_layer, layer_name, register, resolve_targets
from ..core.targets import TargetLike
from ..errors import LayerError
from .base import BaseCAM, LayersSpec, weighted_sum
from .weights import gradcam_pp_weights, gradcam_weights, xgrad_weights

__all__ = ["GradientCAM", "GradCAM", "GradCAMPlusPlus", "XGradCAM", "AxiomCAM", "LayerCAM", "HiResCAM", "CAM"]


class GradientCAM(BaseCAM):
    """Base of CAMs computed from the layer activation ``A`` and the gradient
    ``G = d y_c / d A`` of one forward and one backward pass (from the score down to the
    layer only; no parameter gradients). Subclasses state :meth:`weights` only.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True)``
    """

    batch_gradient = True

    def weights(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """Channel weights ``(N, K)`` or element weights ``(N, K, h, w)``."""
        raise NotImplementedError

    def _raw_maps(self, x: torch.Tensor, target: TargetLike, modules: list[nn.Module]) -> list[torch.Tensor]:
        # no options (the guard refuses unknown ones); a subclass may add keyword options
        acts, grads, _, _ = self.gradient_pass(x, modules, target)
        return [weighted_sum(self.weights(a, g), a) for a, g in zip(acts, grads)]


@register("gradcam", family="cam", aliases=("grad_cam",))
class GradCAM(GradientCAM):
    """Grad-CAM (Selvaraju et al. 2017): ``w_k = mean_ij dy_c/dA^k_ij``."""

    gap_linear_equivalent = True

    def weights(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """Global average of the gradient per channel."""
        return gradcam_weights(gradient)


@register("gradcam_pp", family="cam", aliases=("gradcam++", "gradcampp", "grad_cam_plus_plus"))
class GradCAMPlusPlus(GradientCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018): ``w_k = sum_ij alpha_kij ReLU(G_kij)`` with
    ``alpha = G^2 / (2 G^2 + S_k G^3 + eps)`` (eq. 19, exponential-free form, eps 1e-6)."""

    def weights(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """Grad-CAM++ channel weights."""
        return gradcam_pp_weights(activation, gradient)


@register("xgradcam", family="cam", aliases=("axiomcam", "xgrad_cam", "axiom_cam"))
class XGradCAM(GradientCAM):
    """XGrad-CAM / Axiom-CAM (Fu et al. 2020): ``w_k = sum_ij A^k_ij G_kij / (sum_ab A^k_ab + eps)``.

    Conservation: ``sum_k w_k sum_ij A^k_ij = sum_kij A G`` (the first-order Taylor
    share of the score carried by the layer).
    """

    gap_linear_equivalent = True

    def weights(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """Activation-weighted gradient average per channel."""
        return xgrad_weights(activation, gradient)


#: "Axiom-CAM" of the interpretable-gradient paper is XGrad-CAM
AxiomCAM = XGradCAM


@register("layercam", family="cam", aliases=("layer_cam",))
class LayerCAM(GradientCAM):
    """LayerCAM (Jiang et al. 2021): element-wise weights ``ReLU(G)``, map ``sum_k ReLU(G^k) A^k``."""

    def weights(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """Rectified gradient, one weight per activation element."""
        return torch.relu(gradient)


@register("hirescam", family="cam", aliases=("hires_cam",))
class HiResCAM(GradientCAM):
    """HiResCAM (Draelos & Carin 2020): element-wise weights ``G``, map ``sum_k G^k A^k``
    (the gradient is not averaged, so the map is faithful to the score's first-order terms)."""

    gap_linear_equivalent = True

    def weights(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """The gradient itself, one weight per activation element."""
        return gradient


@register("cam", family="cam", aliases=("class_activation_map",))
class CAM(BaseCAM):
    """CAM (Zhou et al. 2016) for GAP-linear heads: ``L_c = sum_k W_ck A^k``.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True)``; ``relu=False``
    gives the original, unrectified map. Targets are class indices (or ``ClassTarget``).

    Args:
        fc_layer: the linear classifier after global average pooling: a dotted name, a
            module, or ``"auto"`` (the last ``nn.Linear`` of the model). Its
            ``in_features`` must equal the layer's channel count ``K``.
    """

    gap_linear_equivalent = True
    #: reads the classifier's weight row of a class: other target objects are refused
    class_targets_only = True

    def __init__(
        self,
        model: nn.Module,
        layer: LayersSpec = "auto",
        *,
        fc_layer: str | nn.Module = "auto",
        **kwargs: Any,
    ) -> None:
        """``kwargs``: those of :class:`~cleargrad.cam.base.BaseCAM`."""
        super().__init__(model, layer, **kwargs)
        self.fc_layer = fc_layer

    def _fc(self) -> nn.Linear:
        if isinstance(self.fc_layer, str) and self.fc_layer == "auto":
            linears = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise LayerError(
                    "CAM needs a GAP-linear model (global average pooling then nn.Linear); this model "
                    "has no nn.Linear: use GradCAM, which equals CAM on such models"
                )
            return linears[-1]
        fc = find_layer(self.model, self.fc_layer)
        if not isinstance(fc, nn.Linear):
            raise LayerError(f"fc_layer {layer_name(self.model, fc)!r} is a {type(fc).__name__}, not nn.Linear")
        return fc

    def _raw_maps(
        self, x: torch.Tensor, target: TargetLike, modules: list[nn.Module], **options: Any
    ) -> list[torch.Tensor]:
        if options:
            raise TypeError(f"CAM.attribute got unexpected options {sorted(options)}")
        fc = self._fc()
        acts, scores = self.forward_pass(x, modules)
        t = resolve_targets(target, x.shape[0], scores=scores)
        maps = []
        for m, a in zip(modules, acts):
            if fc.in_features != a.shape[1]:
                raise LayerError(
                    f"layer {layer_name(self.model, m)!r} has {a.shape[1]} channels but the classifier "
                    f"takes {fc.in_features} features; CAM needs the layer right before global average "
                    "pooling (use GradCAM for other layers)"
                )
            w = fc.weight.detach()[t.to(fc.weight.device)].to(device=a.device, dtype=a.dtype)
            maps.append(weighted_sum(w, a))
        return maps
