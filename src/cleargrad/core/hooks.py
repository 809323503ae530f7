"""Hooks, only ever through context managers that remove them in ``finally``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..runtime.fused import no_hooks_memo  # noqa: F401  (its home is runtime: copies of models)

__all__ = ["forward_hooks", "ActivationCapture", "capture_activations", "no_hooks_memo"]


@contextmanager
def forward_hooks(
    modules: Sequence[nn.Module], hook: Callable[[nn.Module, Any, Any], Any]
) -> Iterator[None]:
    """Register ``hook`` as a forward hook on each module; remove them all on exit."""
    handles = []
    try:
        for m in modules:
            handles.append(m.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class ActivationCapture:
    """Outputs captured from target layers during a forward pass.

    ``activations[i]`` is the output of ``modules[i]`` in the last forward. When
    ``requires_grad`` was asked for, it is a tensor of the autograd graph that the rest
    of the network consumes through a clone, so ``torch.autograd.grad(score, A)`` gives
    ``d score / d A`` even when later layers work in place.
    """

    modules: Sequence[nn.Module]
    activations: list[torch.Tensor | None] = field(default_factory=list)

    def get(self, i: int = 0) -> torch.Tensor | None:
        return self.activations[i]


@contextmanager
def capture_activations(
    modules: Sequence[nn.Module], *, requires_grad: bool = False
) -> Iterator[ActivationCapture]:
    """Capture the output of each module during forwards run inside the block.

    With ``requires_grad=True`` the captured tensor is made a graph node (a leaf when
    nothing before it requires grad, which keeps the backward pass to the part of the
    network after the layer) and the network continues on a clone of it, which protects
    it from in-place operations downstream.
    """
    cap = ActivationCapture(list(modules), [None] * len(modules))
    index = {id(m): i for i, m in enumerate(modules)}

    def hook(module: nn.Module, _inp: Any, out: Any) -> Any:
        if not isinstance(out, torch.Tensor):
            cap.activations[index[id(module)]] = out
            return None
        if not requires_grad:
            cap.activations[index[id(module)]] = out
            return None
        a = out
        if not a.requires_grad:
            a = a.detach().requires_grad_(True)
        cap.activations[index[id(module)]] = a
        return a.clone()

    with forward_hooks(cap.modules, hook):
        yield cap
