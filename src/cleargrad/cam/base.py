"""The base class of the CAM family: it owns the whole lifecycle of a call.

A CAM method explains the output of one (or several) target layers ``A`` of shape
``(N, K, h, w)`` by a map ``L = ReLU(sum_k w_k A^k)``; the methods differ only in the
weights ``w`` (per channel, or per pixel for LayerCAM/HiResCAM). :class:`BaseCAM`
validates the input, guards the model's state, resolves the layers, and post-processes
the raw maps a subclass returns: ReLU, bilinear upsampling to the input size
(``align_corners=False``) and optional per-image min–max normalisation (§ 0 of the spec).

Volumes: a model whose first convolution is ``nn.Conv3d`` (video or volume CNNs such as
torchvision's ``r3d_18``) is explained on ``(N, C, D, H, W)`` inputs. Its layer activations
are ``(N, K, d, h, w)``; channel weights pool over ``(d, h, w)``; the raw map is
``(N, 1, d, h, w)``, upsampled trilinearly to ``(D, H, W)`` and normalised over the whole
volume. A method that needs a 2-D-only operation refuses such inputs with an
:class:`~cleargrad.InputError` that says why.

Several layers: one map per layer and a fused map. Fusion rule (as torch-cam's
``fuse_cams``): every layer's map is brought to a common size (the input size, or with
``upsample=False`` the largest layer size), min–max normalised per image, and the fused
map is their element-wise maximum (normalised again when ``normalize=True``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Union, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..core import find_layer, layer_name, plan_chunk
from ..core.inputs import conv_input_ndim
from ..core.layers import LayerSpec
from ..core.maps import NORMALIZE_EPS, upsample_maps
from ..core.maps import minmax_normalize as normalize_maps
from ..core.method import Method
from ..core.options import check_finite_result, signature_options
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError
from .blank import warn_if_blank
from .capture import (
    ReshapeArg,
    activations_and_gradients,
    forward_with_activations,
    forward_with_layers,
    layer_activations,
)
from .projection import combine_channels  # hook: cam/smoothing.py
from .smoothing import SMOOTHING_OPTIONS, smoothed_layers

__all__ = [
    "NORMALIZE_EPS", "BaseCAM", "CAMMaps", "LayersSpec", "normalize_maps", "upsample_maps", "fuse_maps", "weighted_sum",
]

LayersSpec = Union[LayerSpec, Sequence[LayerSpec]]

def fuse_maps(maps: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
    """Element-wise maximum of per-image normalised maps brought to ``size``."""
    stacked = torch.stack([normalize_maps(upsample_maps(m, size)) for m in maps])
    return stacked.amax(dim=0)


def weighted_sum(weights: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """``sum_k w_k A^k`` as an ``(N, 1, h, w)`` map (``(N, 1, d, h, w)`` for a volume
    activation); ``weights`` is ``(N, K)`` (one weight per channel) or of the activation's
    shape (one weight per activation element)."""
    if weights.dim() == 2:
        weights = weights.view(*weights.shape, *([1] * (activation.dim() - 2)))
    return combine_channels(weights * activation)  # hook: the channel sum, or eigen_smooth's projection


@dataclass(frozen=True)
class CAMMaps:
    """The result of :meth:`BaseCAM.attribute_layers`.

    Attributes:
        layers: the dotted names of the target layers.
        maps: one ``(N, 1, H, W)`` map per layer (post-processed as asked).
        fused: the fused map (the single map when there is one layer).
    """

    layers: tuple[str, ...]
    maps: tuple[torch.Tensor, ...]
    fused: torch.Tensor


class BaseCAM(Method):
    """Base of every CAM method: layers, model state, targets and post-processing.

    Subclasses implement :meth:`_raw_maps`, which returns the un-rectified, low-resolution
    map ``sum_k w_k A^k`` of every layer; most subclasses inherit it from an intermediate
    base and only state their weights.

    ``model``, ``output``, ``allow_train_mode`` and ``num_classes`` are
    :class:`~cleargrad.core.method.Method`'s.

    Args:
        layer: the target layer: a dotted name (``"layer4"``), a module of the model,
            ``"auto"`` (the last convolutional block of a CNN; for a vision transformer the
            last token layer whose patch tokens reach the score, see
            :func:`~cleargrad.core.auto_layer`), or a list of those (one map per layer plus
            a fused map).
        reshape: how a layer output becomes ``(N, K, h, w)`` (its gradient goes the same
            way): ``"auto"`` (default: feature maps as they are, ``(N, T, D)`` tokens and
            ``(N, h, w, D)`` channels-last maps detected from the input size and the token
            count), ``None`` (4-D channels-first only), ``"channels_last"``, a
            :class:`~cleargrad.TokenGrid` (prefix tokens and grid) or a callable
            ``f(out) -> (N, D, h, w)`` (as pytorch-grad-cam's ``reshape_transform``); a list
            gives one per layer. See :mod:`cleargrad.core.tokens`.
    """

    family: ClassVar[str] = "cam"
    #: the rank of a 2-D model's input; :meth:`input_rank` gives 5 for a Conv3d model
    input_ndim: ClassVar[int | None] = 4
    post_options: ClassVar[tuple[str, ...]] = ("upsample", "normalize", "relu")
    repr_fields: ClassVar[tuple[str, ...]] = ("layer",)

    def __init__(
        self,
        model: nn.Module,
        layer: LayersSpec = "auto",
        *,
        output: OutputSelector = None,
        allow_train_mode: bool = False,
        reshape: ReshapeArg = "auto",
        num_classes: int | None = None,
    ) -> None:
        super().__init__(model, output=output, allow_train_mode=allow_train_mode, num_classes=num_classes)
        self.layer = layer
        self.reshape = reshape
        self._auto: dict[tuple[int, ...], nn.Module] = {}

    # public API -------------------------------------------------------------------
    def input_rank(self) -> int:
        """5 (``(N, C, D, H, W)``) for a model whose first convolution is ``nn.Conv3d``,
        else 4 (``(N, C, H, W)``)."""
        return 5 if conv_input_ndim(self.model) == 5 else 4

    def attribute(
        self,
        x: torch.Tensor,
        target: TargetLike = None,
        *,
        upsample: bool = True,
        normalize: bool = False,
        relu: bool = True,
        **options: Any,
    ) -> torch.Tensor:
        """The class activation map of ``x`` for ``target``.

        Args:
            x: input batch ``(N, C, H, W)``; ``(N, C, D, H, W)`` for a 3-D CNN (see the
                module docstring).
            target: class per image (int, sequence, 1-D LongTensor) or None for the argmax.
            upsample: resize the map to ``(H, W)`` (bilinear; ``(D, H, W)`` trilinear for a
                volume); otherwise ``(h, w)``.
            normalize: per-image min–max normalisation to ``[0, 1]`` (zero stays zero).
            relu: rectify the map (every CAM does; ``False`` exposes the signed map).
            **options: the method's own options (see the subclass).

        Returns:
            ``(N, 1, H, W)`` (or ``(N, 1, h, w)``; ``(N, 1, D, H, W)`` for a volume) on x's
            device and dtype; with several
            layers, the fused map (see :meth:`attribute_layers`).
        """
        return self.attribute_layers(
            x, target, upsample=upsample, normalize=normalize, relu=relu, **options
        ).fused

    def attribute_layers(
        self,
        x: torch.Tensor,
        target: TargetLike = None,
        *,
        upsample: bool = True,
        normalize: bool = False,
        relu: bool = True,
        **options: Any,
    ) -> CAMMaps:
        """Like :meth:`attribute`, returning every layer's map and the fused map."""
        if "aug_smooth" in options or "eigen_smooth" in options:  # hook: cam/smoothing.py (aug_smooth, eigen_smooth)
            return smoothed_layers(self, x, target, upsample=upsample, normalize=normalize, relu=relu, **options)
        modules, raw = self.guarded_call(x, target, options)
        names = tuple(layer_name(self.model, m) for m in modules)
        if relu:
            warn_if_blank([F.relu(m) for m in raw], names, type(self).__name__, self.layer)
        maps = []
        for m in raw:
            m = m.to(dtype=x.dtype)
            if relu:
                m = F.relu(m)
            if upsample:
                m = upsample_maps(m, x.shape[2:])
            if normalize:
                m = normalize_maps(m)
            maps.append(m)
        if len(maps) == 1:
            fused = maps[0]
        else:
            size = x.shape[2:] if upsample else max((tuple(m.shape[2:]) for m in maps), key=math.prod)
            fused = fuse_maps(maps, size)
            if normalize:
                fused = normalize_maps(fused)
        return CAMMaps(names, tuple(maps), fused)

    def _run(
        self, x: torch.Tensor, target: TargetLike, options: dict[str, Any]
    ) -> tuple[list[nn.Module], list[torch.Tensor]]:
        """Layers and raw maps of one guarded call."""
        modules = self.resolve_layers(x)
        return modules, [m.contiguous() for m in self._raw_maps(x, target, modules, **options)]

    def _check_finite(self, out: Any, flags: Sequence[torch.Tensor]) -> None:
        for r in out[1]:
            check_finite_result(r, type(self).__name__, flags)

    def option_names(self) -> list[str]:
        """The method's own options of :meth:`attribute` (besides ``upsample``,
        ``normalize`` and ``relu``)."""
        return signature_options(self._raw_maps, skip=3)[0] + list(SMOOTHING_OPTIONS)  # hook: cam/smoothing.py

    def resolve_layers(self, x: torch.Tensor) -> list[nn.Module]:
        """The target layer modules (``"auto"`` is looked up once per input shape)."""
        specs = list(self.layer) if isinstance(self.layer, (list, tuple)) else [self.layer]
        if not specs:
            raise ConfigError("layer= is an empty list; give at least one layer or 'auto'")
        modules = []
        for spec in specs:
            if isinstance(spec, str) and spec == "auto":
                key = tuple(x.shape[1:])
                if key not in self._auto:
                    self._auto[key] = find_layer(self.model, "auto", example=x, output=self.output)
                modules.append(self._auto[key])
            else:
                modules.append(find_layer(self.model, cast(Union[str, nn.Module], spec)))
        return modules

    # subclass interface -----------------------------------------------------------
    if TYPE_CHECKING:  # the hook: each method takes its own keyword options
        _raw_maps: Callable[..., list[torch.Tensor]]
    else:

        def _raw_maps(
            self, x: torch.Tensor, target: TargetLike, modules: list[nn.Module], **options: Any
        ) -> list[torch.Tensor]:
            """The maps ``sum_k w_k A^k`` ``(N, 1, h, w)`` (``(N, 1, d, h, w)`` for a volume)
            of every layer, before ReLU."""
            raise NotImplementedError

    # passes, for subclasses -------------------------------------------------------
    def chunk_size(
        self, x: torch.Tensor, total: int, requested: int | None, *, grad: bool, option: str = "internal_batch_size",
        default: int | None = None,
    ) -> int:
        """Inputs per pass of a loop over ``total`` inputs shaped like ``x``'s (forward and
        backward passes with ``grad``): ``requested`` (the ``option``) or the default
        (``default``, else the memory budget's), checked to fit in memory before the loop
        starts (:func:`~cleargrad.core.plan_chunk`)."""
        return plan_chunk(self.model, x.shape[1:], total=total, requested=requested, device=x.device,
                          dtype=x.dtype, grad=grad, option=option, default=default)

    def forward_pass(self, x: torch.Tensor, modules: Sequence[nn.Module]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One full forward pass (no gradient needed): ``(activations, scores)``."""
        return forward_with_activations(self.model, x, modules, self.output, self.reshape)

    def raw_forward_pass(
        self, x: torch.Tensor, modules: Sequence[nn.Module]
    ) -> tuple[list[torch.Tensor], list[Any], torch.Tensor]:
        """One full forward pass: the layers' raw outputs, their layouts and the scores."""
        return forward_with_layers(self.model, x, modules, self.output, self.reshape)

    def layer_pass(self, x: torch.Tensor, modules: Sequence[nn.Module]) -> list[torch.Tensor]:
        """The layers' outputs, running the network only up to the last of them."""
        return layer_activations(self.model, x, modules, stop=True, reshape=self.reshape)

    def gradient_pass(
        self, x: torch.Tensor, modules: Sequence[nn.Module], target: TargetLike
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """One forward and one backward pass: ``(activations, gradients, scores, targets)``."""
        return activations_and_gradients(self.model, x, modules, target, self.output, self.reshape)
