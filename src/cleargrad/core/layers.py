"""Finding a layer by dotted name, module object or ``"auto"``."""

from __future__ import annotations

import difflib
from typing import Any, Union

import torch
from torch import nn

from ..errors import LayerError

__all__ = ["LayerSpec", "find_layer", "auto_layer", "layer_name"]

LayerSpec = Union[str, nn.Module]

_POOLS = (
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.LPPool2d,
    nn.FractionalMaxPool2d,
)


def layer_name(model: nn.Module, module: nn.Module) -> str:
    """The dotted name of ``module`` inside ``model`` (``""`` for the model itself)."""
    for name, m in model.named_modules():
        if m is module:
            return name
    raise LayerError(
        f"the module {type(module).__name__} is not part of the model; pass one of the "
        "model's own submodules or its dotted name"
    )


def find_layer(model: nn.Module, layer: LayerSpec, example: torch.Tensor | None = None) -> nn.Module:
    """Resolve ``layer`` to a submodule of ``model``.

    Args:
        model: the network.
        layer: a dotted name (``"layer4.1.conv2"``, ``"features.28"``), a module of the
            model, or ``"auto"`` for the last module whose output is 4-D (see
            :func:`auto_layer`; needs ``example``).
        example: an input batch, needed only for ``"auto"``.

    Raises:
        LayerError: the name does not exist (the message lists close matches), or the
            module is not part of the model.
    """
    if isinstance(layer, nn.Module):
        layer_name(model, layer)  # raises if foreign
        return layer
    if not isinstance(layer, str):
        raise LayerError(
            f"layer must be a dotted name, a module or 'auto', got {type(layer).__name__}"
        )
    if layer == "auto":
        if example is None:
            raise LayerError("layer='auto' needs an example input to trace the model")
        return auto_layer(model, example)
    modules = dict(model.named_modules())
    if layer in modules and layer != "":
        return modules[layer]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    tops = ", ".join(n for n in names if "." not in n)
    raise LayerError(f"the model has no layer named {layer!r}.{hint} Top-level layers: {tops}.")


def auto_layer(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The last module (in order of completion of a forward pass) whose output is 4-D.

    Pooling layers, and containers whose output is a pooling layer's output, are not
    candidates, so this is the last convolutional block: ``layer4`` of a ResNet,
    ``features.29`` (the last ReLU before the final max-pool) of VGG-16, ``features`` of
    MobileNet-V2. When several nested modules return the same tensor, the outermost one
    is chosen (it finishes last).

    Raises:
        LayerError: no module of the model produces a 4-D output.
    """
    order: list[tuple[nn.Module, Any]] = []
    pooled: dict[int, torch.Tensor] = {}  # keeps the tensors alive so ids stay unique

    def hook(module: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and out.dim() == 4:
            if isinstance(module, _POOLS) or id(out) in pooled:
                pooled[id(out)] = out
                return
            order.append((module, out))

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise LayerError(
            f"layer='auto' found no module with a 4-D (N, K, h, w) output in "
            f"{type(model).__name__}; CAM methods need a convolutional layer: pass layer= "
            "explicitly, or use a pixel attribution method instead"
        )
    return order[-1][0]
