"""Attention probabilities read from a transformer's forward pass, without editing it.

:func:`attention_probabilities` records, for every self-attention module of the model in
the order they run, the attention probabilities ``softmax(q k^T / sqrt(d))`` of shape
``(N, heads, T, T)`` as tensors of the autograd graph (so the gradient of a score with
respect to them can be taken). Supported modules:

* ``torch.nn.MultiheadAttention`` (torchvision's ViT calls it with
  ``need_weights=False``): while the context is active, a
  :class:`~torch.overrides.TorchFunctionMode` sees the module's call of
  ``F.multi_head_attention_forward`` and runs it with ``need_weights=True,
  average_attn_weights=False``; the per-head probabilities are recorded and the caller
  receives what it asked for (``None`` weights when it did not ask). The probabilities
  used in the attention product are the base of the returned weights, so gradients are
  taken with respect to them.
* timm-style ``Attention`` blocks (a ``qkv`` projection, ``num_heads`` and an
  ``attn_drop`` module: timm's ViT, DeiT, ...): a call of
  ``F.scaled_dot_product_attention`` made directly by such a block is computed by its
  definition ``softmax(q k^T * scale + mask) v`` and the probabilities recorded; when
  the block computes its attention explicitly, the output of its ``attn_drop`` module is
  recorded.
* HuggingFace attention modules (transformers 5: the class a ``PreTrainedModel`` records
  as its ``"attentions"`` output, e.g. ``ViTAttention``, ``DeiTAttention``), whatever the
  model's attention implementation is: under ``"sdpa"`` (the default) their call of
  ``F.scaled_dot_product_attention`` is computed by its definition as for timm; under
  ``"eager"`` the probabilities the module returns (its second output) are recorded. The
  model's config (``output_attentions``, ``_attn_implementation``) is never changed. An
  implementation that never forms the probabilities (flash or flex attention) is a
  :class:`~cleargrad.LayerError` that says to load the model with
  ``attn_implementation="eager"`` or ``"sdpa"``.

Forward hooks mark which module is running; they and the mode are removed when the
context exits, also on error, so the model is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..core import layer_name
from ..errors import LayerError

__all__ = ["AttentionMaps", "attention_modules", "attention_probabilities"]


def _is_timm_attention(m: nn.Module) -> bool:
    return (
        isinstance(getattr(m, "qkv", None), nn.Linear)
        and isinstance(getattr(m, "num_heads", None), int)
        and isinstance(getattr(m, "attn_drop", None), nn.Module)
    )


def _hf_attention_classes(model: nn.Module) -> tuple[type, ...]:
    """The attention classes HuggingFace models inside ``model`` record as their
    ``"attentions"`` output (a class, not an ``OutputRecorder`` of a windowed stage)."""
    found: list[type] = []
    for m in model.modules():
        record = getattr(type(m), "_can_record_outputs", None)
        entry = record.get("attentions") if isinstance(record, dict) else None
        if isinstance(entry, type) and issubclass(entry, nn.Module) and entry not in found:
            found.append(entry)
    return tuple(found)


def _hf_attention_implementation(model: nn.Module, module: nn.Module) -> str | None:
    """The attention implementation the HuggingFace ``module`` runs with (its config's)."""
    config = getattr(module, "config", None) or getattr(model, "config", None)
    impl = getattr(config, "_attn_implementation", None)
    return impl if isinstance(impl, str) else None


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of ``model`` whose probabilities can be read
    (``nn.MultiheadAttention``, timm-style ``Attention`` blocks, HuggingFace attention
    modules), in module order."""
    hf = _hf_attention_classes(model)
    return [
        m for m in model.modules()
        if isinstance(m, nn.MultiheadAttention) or _is_timm_attention(m) or (hf and isinstance(m, hf))
    ]


@dataclass
class AttentionMaps:
    """Probabilities recorded during the forward passes run inside the context.

    Attributes:
        names: the dotted name of the module of each record.
        probs: ``(N, heads, T, T)`` probabilities per attention call, in call order.
        graph: for each record, the tensor of the autograd graph that holds the same
            values (``probs[i]`` itself, or the flat ``(N*heads, T, T)`` tensor it views);
            take gradients with respect to it and reshape with :meth:`gradients`.
    """

    model: nn.Module
    names: list[str] = field(default_factory=list)
    probs: list[torch.Tensor] = field(default_factory=list)
    graph: list[torch.Tensor] = field(default_factory=list)

    def add(self, module: nn.Module, probs: torch.Tensor, graph: torch.Tensor) -> None:
        self.names.append(layer_name(self.model, module))
        self.probs.append(probs)
        self.graph.append(graph)

    def gradients(self, score: torch.Tensor) -> list[torch.Tensor]:
        """``d score / d probs[i]`` for every record, each ``(N, heads, T, T)``."""
        if not self.graph:
            return []
        if not all(g.requires_grad for g in self.graph):
            raise LayerError(
                "the attention probabilities are not part of the autograd graph (was the pass run without "
                "gradient?); gradient-weighted attention needs a pass with gradients enabled"
            )
        grads = torch.autograd.grad(score, self.graph, allow_unused=True)
        return [
            torch.zeros_like(p) if g is None else g.reshape(p.shape) for p, g in zip(self.probs, grads)
        ]


def _sdpa_by_definition(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(q k^T * scale + mask) v`` and the probabilities (no dropout)."""
    if dropout_p:
        raise LayerError("attention dropout is active (training mode?); explain the model in eval mode")
    if k.shape[-3] != q.shape[-3]:
        if not enable_gqa:
            raise LayerError("query and key head counts differ; grouped-query attention is not supported")
        rep = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(rep, dim=-3), v.repeat_interleave(rep, dim=-3)
    s = scale if scale is not None else q.shape[-1] ** -0.5
    logits = (q * s) @ k.transpose(-2, -1)
    if is_causal:
        lq, lk = q.shape[-2], k.shape[-2]
        keep = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()
        logits = logits.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        is_bool = attn_mask.dtype == torch.bool
        logits = logits.masked_fill(~attn_mask, float("-inf")) if is_bool else logits + attn_mask
    probs = logits.softmax(dim=-1)
    return probs @ v, probs


class _AttentionMode(TorchFunctionMode):
    """Sees the attention calls made directly by the hooked attention modules."""

    def __init__(self, maps: AttentionMaps) -> None:
        super().__init__()
        self.maps = maps
        self.active: list[nn.Module] = []
        #: the HuggingFace attention modules (their sdpa and eager paths are both read)
        self.hf: set[nn.Module] = set()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        module = self.active[-1] if self.active else None
        if module is None:
            return func(*args, **kwargs)
        if func is F.multi_head_attention_forward and isinstance(module, nn.MultiheadAttention):
            return self._mha(module, func, args, kwargs)
        if func is F.scaled_dot_product_attention and (_is_timm_attention(module) or module in self.hf):
            out, probs = _sdpa_by_definition(*args, **kwargs)
            self.maps.add(module, probs, probs)
            return out
        return func(*args, **kwargs)

    def _mha(self, module: nn.Module, func: Any, args: tuple, kwargs: dict) -> Any:
        wanted = kwargs.get("need_weights", True)
        average = kwargs.get("average_attn_weights", True)
        out, weights = func(*args, **{**kwargs, "need_weights": True, "average_attn_weights": False})
        base = weights._base
        # the probabilities multiplied with the values are the base of the returned view
        graph = base if base is not None and base.numel() == weights.numel() else weights
        self.maps.add(module, weights, graph)
        if not wanted:
            return out, None
        return out, weights.mean(dim=1) if average else weights


@contextmanager
def attention_probabilities(model: nn.Module) -> Iterator[AttentionMaps]:
    """Record the attention probabilities of every forward pass of ``model`` run inside
    the block (see the module docstring). Raises :class:`~cleargrad.LayerError` when the
    model has no supported attention module."""
    modules = attention_modules(model)
    if not modules:
        raise LayerError(
            f"{type(model).__name__} has no self-attention module whose probabilities can be read "
            "(supported: torch.nn.MultiheadAttention as in torchvision's ViT, timm-style Attention blocks "
            "as in timm's ViT and DeiT, HuggingFace ViT/DeiT-style attention modules); attention methods need "
            "a vision transformer with global attention (for Swin, use a CAM on a token layer)"
        )
    hf_classes = _hf_attention_classes(model)
    for m in modules:
        impl = _hf_attention_implementation(model, m) if hf_classes and isinstance(m, hf_classes) else None
        if impl is not None and impl not in ("eager", "sdpa"):
            raise LayerError(
                f"{type(model).__name__} runs its attention with attn_implementation={impl!r}, which never forms "
                "the attention probabilities; load or build the model with attn_implementation='sdpa' or "
                "'eager' (e.g. model.set_attn_implementation('eager') on a copy) for attention methods"
            )
    maps = AttentionMaps(model)
    mode = _AttentionMode(maps)
    mode.hf = {m for m in modules if hf_classes and isinstance(m, hf_classes)}
    recorded_at: list[int] = []  # len(maps.probs) when each HF module was entered

    def enter(module: nn.Module, _args: Any) -> None:
        mode.active.append(module)
        if module in mode.hf:
            recorded_at.append(len(maps.probs))

    def leave(module: nn.Module, _args: Any, out: Any) -> None:
        if mode.active and mode.active[-1] is module:
            mode.active.pop()
        if module in mode.hf and recorded_at:
            start = recorded_at.pop()
            weights = out[1] if isinstance(out, tuple) and len(out) > 1 else None
            if len(maps.probs) == start and isinstance(weights, torch.Tensor) and weights.dim() == 4:
                maps.add(module, weights, weights)  # the eager path: the probabilities it returns

    def dropped(owner: nn.Module) -> Any:
        def hook(_m: nn.Module, _args: Any, out: Any) -> None:
            # the explicit path of a timm block: attn_drop's output is the probabilities used
            if mode.active and mode.active[-1] is owner and isinstance(out, torch.Tensor):
                maps.add(owner, out, out)

        return hook

    with ExitStack() as stack:
        for m in modules:
            stack.callback(m.register_forward_pre_hook(enter).remove)
            stack.callback(m.register_forward_hook(leave, always_call=True).remove)
            if _is_timm_attention(m):
                stack.callback(cast(nn.Module, m.attn_drop).register_forward_hook(dropped(m)).remove)
        stack.enter_context(mode)
        yield maps
