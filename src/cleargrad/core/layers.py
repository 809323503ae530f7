"""Finding a layer by dotted name, module object or ``"auto"``."""

from __future__ import annotations

import difflib
from typing import Any, Union

import torch
from torch import nn

from ..errors import LayerError
from .targets import OutputSelector, select_output
from .tokens import grid_matches, resolve_layout

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


def find_layer(
    model: nn.Module, layer: LayerSpec, example: torch.Tensor | None = None, output: OutputSelector = None
) -> nn.Module:
    """Resolve ``layer`` to a submodule of ``model``.

    Args:
        model: the network.
        layer: a dotted name (``"layer4.1.conv2"``, ``"features.28"``), a module of the
            model, or ``"auto"`` (see :func:`auto_layer`; needs ``example``).
        example: an input batch, needed only for ``"auto"``.
        output: selector of the scores in the model's output (``"auto"`` on transformers).

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
        return auto_layer(model, example, output)
    modules = dict(model.named_modules())
    if layer in modules and layer != "":
        return modules[layer]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    tops = ", ".join(n for n in names if "." not in n)
    raise LayerError(f"the model has no layer named {layer!r}.{hint} Top-level layers: {tops}.")


def auto_layer(model: nn.Module, example: torch.Tensor, output: OutputSelector = None) -> nn.Module:
    """The layer ``layer="auto"`` explains: the last convolutional block of a CNN, the last
    token layer whose patch tokens reach the score in a vision transformer.

    Candidates are the modules' outputs in order of completion of one forward pass:
    channels-first feature maps ``(N, K, h, w)`` whose ``(h, w)`` is a grid of the input
    (pooling layers, and containers whose output is a pooling layer's output, excluded)
    and token layers (``(N, T, D)`` with a token count that is prefix tokens plus a grid
    of the input, ``(N, h, w, D)`` channels-last maps; see :mod:`cleargrad.core.tokens`).

    * When the last candidate is a feature map (every CNN), it is chosen, as before:
      ``layer4`` of a ResNet, ``features.29`` of VGG-16, ``features`` of MobileNet-V2;
      torchvision's Swin ends with a ``permute`` module giving its final norm as
      ``(N, C, h, w)``, which is chosen (the same map as the final ``norm`` read channels
      last).
    * Otherwise (ViT, DeiT, timm Swin) the last token layer of the model's final width
      (the residual stream's, not a q/k/v or MLP projection) whose patch tokens have a
      non-zero gradient of the top score is chosen (one extra forward and backward pass
      on one image, cached per input shape by the CAMs). In a class-token ViT the patch
      tokens after the last block's attention no longer reach the class token, so this is
      the input of the last block's attention: ``encoder.layers.encoder_layer_11.ln_1``
      of torchvision's ViT-B/16, ``blocks.11.norm1`` of timm's ViT/DeiT, which is the
      layer pytorch-grad-cam's ViT tutorial uses. In an average-pooled transformer it is
      the final norm (timm's Swin: ``norm``). The patch embedding is never chosen when
      any token layer follows it.

    When several nested modules return the same tensor, the outermost one is chosen (it
    finishes last).

    Raises:
        LayerError: no module of the model produces feature maps or token layers.
    """
    size = tuple(example.shape[-2:])
    order: list[tuple[nn.Module, torch.Tensor, bool]] = []  # (module, output, is a token layer)
    pooled: dict[int, torch.Tensor] = {}  # keeps the tensors alive so ids stay unique

    def hook(module: nn.Module, _inp: Any, out: Any) -> None:
        if not isinstance(out, torch.Tensor) or out.dim() not in (3, 4) or out.shape[0] != 1:
            return
        if out.dim() == 4 and (isinstance(module, _POOLS) or id(out) in pooled):
            pooled[id(out)] = out
            return
        try:
            layout = resolve_layout("auto", out, size, "")
        except LayerError:
            return
        if layout.identity and not grid_matches(out.shape[2], out.shape[3], *size):
            return  # e.g. per-head (N, heads, T, d) queries: not a feature map of the image
        order.append((module, out, not layout.identity))

    x = example[:1].detach()
    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise LayerError(
            f"layer='auto' found no module with a 4-D (N, K, h, w) feature map or (N, T, D) token output in "
            f"{type(model).__name__}; CAM methods need a convolutional or token layer: pass layer= "
            "explicitly, or use a pixel attribution method instead"
        )
    if not order[-1][2]:
        return order[-1][0]
    tail: list[nn.Module] = []
    width = order[-1][1].shape[-1]
    for module, out, token in reversed(order):
        if not token:
            break
        if out.shape[-1] == width:  # the residual stream, not q/k/v or MLP hidden projections
            tail.append(module)
    tail.reverse()
    return _last_reaching_token_layer(model, x, tail, size, output)


def _last_reaching_token_layer(
    model: nn.Module, x: torch.Tensor, candidates: list[nn.Module], size: tuple[int, ...], output: OutputSelector
) -> nn.Module:
    """The last of ``candidates`` whose patch tokens have a non-zero gradient of the top
    score (the last candidate when none has)."""
    outs: dict[int, torch.Tensor] = {}
    wanted = {id(m) for m in candidates}

    def hook(module: nn.Module, _inp: Any, out: Any) -> None:
        if id(module) in wanted and isinstance(out, torch.Tensor) and out.requires_grad:
            outs[id(module)] = out

    handles = [m.register_forward_hook(hook) for m in candidates]
    try:
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            scores = select_output(model(xg), output)
            mods = [m for m in candidates if id(m) in outs]
            if not mods or scores.dim() != 2:
                return candidates[-1]
            top = scores.gather(1, scores.detach().argmax(dim=1, keepdim=True)).sum()
            grads = torch.autograd.grad(top, [outs[id(m)] for m in mods], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    for m, g in zip(reversed(mods), reversed(grads)):
        if g is None:
            continue
        patches = resolve_layout("auto", g, size, "").apply(g)
        if bool((patches != 0).any()):
            return m
    return candidates[-1]
