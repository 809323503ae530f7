"""Finding a layer by dotted name, module object or ``"auto"``."""

from __future__ import annotations

import difflib
from typing import Any, Union

import torch
from torch import nn

from ..errors import LayerError
from .targets import OutputSelector, pick_output, select_output
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
    nn.MaxPool3d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool3d,
    nn.LPPool3d,
    nn.FractionalMaxPool3d,
)
#: pools over the token axis of a (N, D, T) layout (HuggingFace Swin's ``pooler``): their
#: (N, D, 1) output is no token layer
_POOLS_1D = (nn.AvgPool1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d, nn.LPPool1d)


def _attention_parts(model: nn.Module) -> set[int]:
    """The submodules of the model's attention modules (a class named ``*Attention``, e.g.
    HuggingFace's ``ViTAttention`` with its ``q_proj``/``k_proj``/``v_proj``/``o_proj``,
    timm's ``Attention``; ``nn.MultiheadAttention``): per-token projections of the width of
    the residual stream, never the layer a token CAM should read."""
    parts: set[int] = set()
    for m in model.modules():
        if m is not model and (isinstance(m, nn.MultiheadAttention) or type(m).__name__.endswith("Attention")):
            parts.update(id(sub) for sub in m.modules() if sub is not m)
    return parts


def _map_of_input(out: torch.Tensor, size: tuple[int, ...]) -> bool:
    """A channels-first output ``(N, K, *grid)`` whose grid is one of the input's: ``(h, w)``
    for an image, ``(d, h, w)`` (no deeper than the input, ``(h, w)`` a grid of it) for a volume."""
    if len(size) == 3:
        return out.dim() == 5 and 1 <= out.shape[2] <= size[0] and grid_matches(out.shape[3], out.shape[4], *size[1:])
    return grid_matches(out.shape[2], out.shape[3], *size)


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
    """The layer ``layer="auto"`` explains: the last convolutional block of a CNN whose map
    is larger than 1×1 and reaches the score, the last token layer whose patch tokens reach
    the score in a vision transformer.

    Candidates are the modules' outputs in order of completion of one forward pass:
    channels-first feature maps ``(N, K, h, w)`` whose ``(h, w)`` is a grid of the input
    and has more than one cell (pooling layers, and containers whose output is a pooling
    layer's output, excluded: so are the ``1×1`` maps of classifier heads that follow a
    global pool, e.g. ``classifier.0`` of torchvision's ConvNeXt or ``head.norm`` of timm's)
    and token layers (``(N, T, D)`` with a token count that is prefix tokens plus a grid of
    the input, ``(N, h, w, D)`` channels-last maps; see :mod:`cleargrad.core.tokens`). For a
    volume input ``(N, C, D, H, W)`` the candidates are the ``(N, K, d, h, w)`` feature maps
    (3-D pooling excluded) whose ``(h, w)`` is a grid of the input: ``layer4`` of
    torchvision's ``r3d_18``.

    * When the last candidate is a feature map (every CNN), the last feature map whose
      gradient of the top score is not identically zero is chosen (one extra forward and
      backward pass on one image, cached per input shape by the CAMs): ``layer4`` of a
      ResNet, ``features.29`` of VGG-16, ``features`` of MobileNet-V2 and ConvNeXt; a branch
      that does not feed the selected output (the ``aux_classifier`` of a segmentation
      model explained through ``output="out"``) is skipped. When the model's selected
      output is itself a map ``(N, C, H, W)`` (semantic segmentation), the trailing
      feature maps with ``C`` channels (the per-class logits head) are skipped too: their
      CAM is the class's own logit map, not an explanation of it. torchvision's Swin ends
      with a ``permute`` module giving its final norm as ``(N, C, h, w)``, which is chosen
      (the same map as the final ``norm`` read channels last).
    * Otherwise (ViT, DeiT, timm Swin) the last token layer of the model's final width
      (the residual stream's, not a q/k/v or MLP projection) whose patch tokens have a
      non-zero gradient of the top score is chosen. In a class-token ViT the patch
      tokens after the last block's attention no longer reach the class token, so this is
      the input of the last block's attention: ``encoder.layers.encoder_layer_11.ln_1``
      of torchvision's ViT-B/16, ``blocks.11.norm1`` of timm's ViT/DeiT, which is the
      layer pytorch-grad-cam's ViT tutorial uses. In an average-pooled transformer it is
      the final norm (timm's Swin: ``norm``). The patch embedding is never chosen when
      any token layer follows it. HuggingFace models read the same way: ViT/DeiT
      ``vit.layers.11.layernorm_before`` (the projections inside an attention module,
      ``q_proj``/``k_proj``/``v_proj``/``o_proj``, are never candidates), Swin
      ``swin.layernorm`` (its token-axis ``pooler`` is no token layer), ConvNeXt the last
      stage ``convnext.encoder.stages.3``.

    When several nested modules return the same tensor, the outermost one is chosen (it
    finishes last).

    Raises:
        LayerError: no module of the model produces feature maps or token layers, or
            every feature map is 1×1 (the message names the last ones).
    """
    size = tuple(example.shape[2:])
    volume = len(size) == 3
    order: list[tuple[nn.Module, torch.Tensor, bool]] = []  # (module, output, is a token layer)
    pooled: dict[int, torch.Tensor] = {}  # keeps the tensors alive so ids stay unique
    inside_attention = _attention_parts(model)

    def hook(module: nn.Module, _inp: Any, out: Any) -> None:
        if not isinstance(out, torch.Tensor) or out.shape[0] != 1 or out.dim() not in ((5,) if volume else (3, 4)):
            return
        if id(module) in inside_attention or (out.dim() == 3 and isinstance(module, _POOLS_1D)):
            return
        if out.dim() >= 4 and (isinstance(module, _POOLS) or id(out) in pooled):
            pooled[id(out)] = out
            return
        try:
            layout = resolve_layout("auto", out, size, "")
        except LayerError:
            return
        if layout.identity and not _map_of_input(out, size):
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
            f"layer='auto' found no module with a {'5-D (N, K, d, h, w)' if volume else '4-D (N, K, h, w)'} "
            "feature map or (N, T, D) token output in "
            f"{type(model).__name__}; CAM methods need a convolutional or token layer: pass layer= "
            "explicitly, or use a pixel attribution method instead"
        )
    if not order[-1][2]:
        maps = [(m, out) for m, out, token in order if not token]
        spatial = [m for m, out in maps if out[0, 0].numel() > 1]
        if not spatial:
            names = ", ".join(repr(layer_name(model, m)) for m, _ in maps[-5:])
            raise LayerError(
                f"layer='auto' found only 1x1 feature maps in {type(model).__name__} (last: {names}); a CAM "
                "on them is one constant value per image. Pass layer= a convolutional layer before the "
                "global pooling, or use a larger input"
            )
        return _last_reaching_map(model, x, spatial, output)
    tail: list[nn.Module] = []
    width = order[-1][1].shape[-1]
    for module, out, token in reversed(order):
        if not token:
            break
        if out.shape[-1] == width:  # the residual stream, not q/k/v or MLP hidden projections
            tail.append(module)
    tail.reverse()
    return _last_reaching_token_layer(model, x, tail, size, output)


def _score_tensor(out: Any, output: OutputSelector) -> torch.Tensor | None:
    """The selected output of a forward's result when it is a score tensor ``(N, C, ...)``
    (a classifier's scores or a segmentation model's per-class maps), else None."""
    try:
        scores = pick_output(out, output)
    except Exception:  # noqa: BLE001 - an output that needs a target object to score: no check possible
        return None
    if not isinstance(scores, torch.Tensor) or scores.dim() < 2 or not scores.requires_grad:
        return None
    return scores


def _top_score(scores: torch.Tensor) -> torch.Tensor:
    """The summed top-class score (a map output is summed over its positions first)."""
    s = scores.flatten(2).sum(-1) if scores.dim() > 2 else scores
    return s.gather(1, s.detach().argmax(dim=1, keepdim=True)).sum()


def _last_reaching_map(
    model: nn.Module, x: torch.Tensor, candidates: list[nn.Module], output: OutputSelector
) -> nn.Module:
    """The last of the feature-map ``candidates`` whose gradient of the top score is not
    identically zero, skipping a segmentation model's trailing per-class logit maps (the
    last candidate when none reaches the score: then every map is blank, and the CAM says so).
    """
    outs: dict[int, torch.Tensor] = {}
    wanted = {id(m) for m in candidates}

    def hook(module: nn.Module, _inp: Any, out: Any) -> None:
        if id(module) in wanted and isinstance(out, torch.Tensor) and out.requires_grad:
            outs[id(module)] = out

    handles = [m.register_forward_hook(hook) for m in candidates]
    try:
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            try:
                selected = _score_tensor(model(xg), output)
            except RuntimeError as e:
                if "nference" not in str(e):
                    raise
                # a model made in inference mode: no gradient to check (gradient-free CAMs still run)
                return candidates[-1]
            mods = [m for m in candidates if id(m) in outs]
            if selected is None or not mods:
                return candidates[-1]
            grads = torch.autograd.grad(_top_score(selected), [outs[id(m)] for m in mods], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    classes = selected.shape[1] if selected.dim() == 4 else None
    skipping_head = classes is not None
    for m, g in zip(reversed(mods), reversed(grads)):
        if g is None or not bool((g != 0).any()):
            continue  # does not reach the score (e.g. an auxiliary head)
        if skipping_head and outs[id(m)].shape[1] == classes:
            continue  # a segmentation model's per-class logit map (and its resizes)
        skipping_head = False
        return m
    return candidates[-1]  # nothing reaches the score (e.g. a zero classifier): the CAM warns it is blank


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
