"""Batch-norm folding for the metrics' forward passes: a faster copy of an eval-mode model.

A metric protocol sends hundreds of forward passes per image through the model, with no
hooks and no gradients. In eval mode a ``BatchNorm`` layer applied straight to the output
of a convolution (or linear layer) is an affine map with fixed numbers, so it can be
folded into that layer's weights once; every pass then skips a full read and write of the
feature map (measured: benchmarks/results/evaluate_pipeline.md, section 8).

:class:`FoldedForward` wraps the model; on its first call it makes the folded copy:

1. a deep copy of the model (the model itself is never touched);
2. one probe pass of the copy on the first image of that call, recording which batch
   norm received, as its input, the very tensor a convolution or linear layer had just
   returned (each layer called once in the pass);
3. those layers replaced in the copy by the folded layer and ``nn.Identity``, so the
   model's own ``forward`` code still runs (Python control flow and side effects inside
   the copy);
4. a check: the folded copy's output on the probe must equal the unfolded output to
   float rounding, else the model is used as it is.

Anything unusual (a module in training mode, a forward hook or pre-hook on any module,
nothing to fold, a copy or a probe that fails, a check that fails) means: the model itself,
unfolded. A hook is part of what the model computes (it may change an input or an output),
and a hook-free copy could not be checked against it without firing it.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

__all__ = ["FoldedForward", "folded_forward", "no_hooks_memo"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
#: the folded copy's probe output must agree with the unfolded one this closely (relative to its largest value)
_CHECK_RTOL = 1e-4


def no_hooks_memo(model: nn.Module) -> dict[int, Any]:
    """A ``copy.deepcopy`` memo that gives every module of the copy empty hook dictionaries
    (``copy.deepcopy(model, no_hooks_memo(model))``): no hook of the model's, and no state a
    hook holds, is copied."""
    memo: dict[int, Any] = {}
    for m in model.modules():
        for name, value in vars(m).items():
            if "hooks" in name and isinstance(value, dict):
                memo[id(value)] = type(value)()
    return memo


def _training(model: nn.Module) -> bool:
    return any(m.training for m in model.modules())


def _hooked(model: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def _foldable(bn: nn.Module) -> bool:
    return bool(bn.track_running_stats) and bn.running_mean is not None and bn.running_var is not None


class FoldedForward(nn.Module):
    """``model``'s forward passes, run on a copy with batch norms folded.

    The wrapped model is a submodule (its mode and flags are the model's own, so the
    metrics' state guard and ``evaluating`` cover it); the folded copy is not. While any
    module of ``model`` is in training mode, calls run ``model`` itself; so do all calls
    when, at the first call, a module of ``model`` has a forward hook or pre-hook (also
    cleargrad's own, of a call running on the same model in another thread: that wrapper
    then runs unfolded, with the same values to float rounding). The copy is made once, on
    the first call: later changes to the model's weights do not reach it, so make one per
    run. :attr:`folded` lists the ``(layer, norm)`` names folded; empty when the
    model runs unfolded (and :attr:`reason` says why).
    """

    model: nn.Module
    _copy: nn.Module | None
    _lock: threading.Lock

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.folded: list[tuple[str, str]] = []
        self.reason: str | None = None
        object.__setattr__(self, "_copy", None)  # not a submodule: no second registration of weights
        object.__setattr__(self, "_lock", threading.Lock())
        self._tried = False

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if _training(self.model):
            return self.model(x, *args, **kwargs)
        if not self._tried:
            with self._lock:
                if not self._tried:
                    self._make(x, args, kwargs)
                    self._tried = True
        net = self._copy if self._copy is not None else self.model
        return net(x, *args, **kwargs)

    def _make(self, x: torch.Tensor, args: tuple, kwargs: dict) -> None:
        if _hooked(self.model):
            self.reason = "the model has forward hooks (part of what it computes)"
            return
        if not any(isinstance(m, _NORMS) and _foldable(m) for m in self.model.modules()):
            self.reason = "no batch norm with running statistics"
            return
        try:
            with torch.inference_mode(False), torch.no_grad():
                twin = copy.deepcopy(self.model, no_hooks_memo(self.model))
                # default layout: a model whose forward cannot take channels-last inputs still
                # folds (its later channels-last calls fail in the copy as in the model, and
                # run_model's retry covers them)
                probe = x[:1].detach().clone(memory_format=torch.contiguous_format)
                pairs, ref = _probe_pairs(twin, probe, args, kwargs)
                if not pairs:
                    self.reason = "no batch norm applied straight to a layer's output"
                    return
                for layer_name, bn_name in pairs:
                    layer, bn = twin.get_submodule(layer_name), twin.get_submodule(bn_name)
                    fold: Any = fuse_conv_bn_eval if isinstance(layer, nn.modules.conv._ConvNd) else fuse_linear_bn_eval
                    _replace(twin, layer_name, fold(layer, bn))
                    _replace(twin, bn_name, nn.Identity())
                for p in twin.parameters():
                    p.requires_grad_(False)
                got = twin(probe, *args, **kwargs)
                if not _close(got, ref):
                    self.reason = "the folded copy's output differed from the model's"
                    return
        except Exception as e:  # noqa: BLE001 - any failure: run the model as it is
            self.reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
            return
        self.folded = pairs
        object.__setattr__(self, "_copy", twin)


def _probe_pairs(twin: nn.Module, probe: torch.Tensor, args: tuple, kwargs: dict) -> tuple[list[tuple[str, str]], Any]:
    """Run ``twin`` once on ``probe``; the (layer, norm) name pairs where the norm's input
    was the tensor the layer returned, each called once; and the output."""
    names = {m: n for n, m in twin.named_modules()}
    outputs: dict[int, str] = {}  # id of a layer's output tensor -> layer name
    calls: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []
    keep: list[torch.Tensor] = []  # keep outputs alive so that their ids stay unique

    def on_layer(m: nn.Module, _inp: tuple, out: Any) -> None:
        calls[names[m]] = calls.get(names[m], 0) + 1
        if isinstance(out, torch.Tensor):
            outputs[id(out)] = names[m]
            keep.append(out)

    def on_norm(m: nn.Module, inp: tuple, _out: Any) -> None:
        calls[names[m]] = calls.get(names[m], 0) + 1
        if inp and isinstance(inp[0], torch.Tensor) and id(inp[0]) in outputs and _foldable(m):
            pairs.append((outputs[id(inp[0])], names[m]))

    handles = [
        m.register_forward_hook(on_norm if isinstance(m, _NORMS) else on_layer)
        for m in twin.modules()
        if isinstance(m, (*_NORMS, *_LAYERS))
    ]
    try:
        ref = twin(probe, *args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    used = [n for pair in pairs for n in pair]
    pairs = [(a, b) for a, b in pairs if calls[a] == 1 and calls[b] == 1 and used.count(a) == 1]
    return pairs, ref


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or not a.is_floating_point():
            return bool(a.shape == b.shape and torch.equal(a, b))
        scale = b.abs().max().clamp(min=1e-12)
        return bool(torch.isfinite(a).all() and ((a - b).abs().max() / scale) <= _CHECK_RTOL)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_close(u, v) for u, v in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return False


def folded_forward(model: nn.Module, fold: bool = True) -> nn.Module:
    """``model`` itself when ``fold`` is False, else a :class:`FoldedForward` of it."""
    return FoldedForward(model) if fold else model
