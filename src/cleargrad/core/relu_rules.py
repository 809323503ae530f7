"""Modified ReLU backward rules (guided backpropagation, deconvolution).

The rules are switched on for the duration of a ``with relu_rule("guided"):`` block
by a :class:`torch.overrides.TorchFunctionMode` that swaps every ReLU-like call for a
custom :class:`torch.autograd.Function`. Because it works at the level of torch
functions, it catches ``nn.ReLU`` / ``nn.ReLU6`` modules, ``F.relu``, ``F.relu6``,
``F.hardtanh``, ``torch.relu``, ``Tensor.relu`` and all in-place variants, unlike
module hooks, which only see ``nn.ReLU`` modules.

Rules (``u`` the ReLU input, ``g`` the gradient arriving from above):

* ``"guided"``: ``g_in = 1[lo < u < hi] * relu(g)`` (Springenberg et al. 2015); for
  ReLU ``lo = 0, hi = inf``, for ReLU6 ``hi = 6``.
* ``"deconv"``: ``g_in = relu(g)``; the forward mask is ignored (Zeiler & Fergus).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..errors import ConfigError

__all__ = ["relu_rule", "RULES", "ReluRuleMode"]

RULES = ("guided", "deconv")


class _ClampRule(torch.autograd.Function):
    """``clamp(u, lo, hi)`` forward with a modified backward (guided or deconv)."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, lo: float, hi: float, rule: str, inplace: bool):
        if inplace:
            out = u.clamp_(lo, hi) if math.isfinite(hi) else u.clamp_(min=lo)
            ctx.mark_dirty(u)
        else:
            out = u.clamp(lo, hi) if math.isfinite(hi) else u.clamp(min=lo)
        ctx.rule = rule
        if rule == "guided":
            # the forward mask 1[lo < u < hi] equals 1[lo < out < hi] for a clamp
            mask = out > lo
            if math.isfinite(hi):
                mask &= out < hi
            ctx.save_for_backward(mask)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):
        g_pos = g.clamp(min=0)
        if ctx.rule == "guided":
            (mask,) = ctx.saved_tensors
            g_pos = g_pos * mask
        return g_pos, None, None, None, None


def _relu_like(func: Any, args: tuple, kwargs: dict) -> tuple[float, float, bool] | None:
    """``(lo, hi, inplace)`` when ``func(*args, **kwargs)`` is a ReLU-like clamp."""
    if func in (torch.relu, F.relu, torch.Tensor.relu, torch.nn.functional.relu):
        inplace = bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
        return 0.0, math.inf, inplace
    if func in (torch.relu_, torch.Tensor.relu_, F.relu_):
        return 0.0, math.inf, True
    if func is F.relu6:
        inplace = bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
        return 0.0, 6.0, inplace
    if func is F.hardtanh:
        lo = float(kwargs.get("min_val", args[1] if len(args) > 1 else -1.0))
        hi = float(kwargs.get("max_val", args[2] if len(args) > 2 else 1.0))
        inplace = bool(kwargs.get("inplace", args[3] if len(args) > 3 else False))
        if lo == 0.0:
            return lo, hi, inplace
    return None


class ReluRuleMode(TorchFunctionMode):
    """Torch-function mode that routes ReLU-like calls through :class:`_ClampRule`."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        if rule not in RULES:
            raise ConfigError(f"unknown ReLU rule {rule!r}; valid: {', '.join(RULES)}")
        self.rule = rule

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        spec = _relu_like(func, args, kwargs)
        if spec is not None and torch.is_grad_enabled() and isinstance(args[0], torch.Tensor):
            lo, hi, inplace = spec
            return _ClampRule.apply(args[0], lo, hi, self.rule, inplace)
        return func(*args, **kwargs)


@contextmanager
def relu_rule(rule: str | None) -> Iterator[None]:
    """Apply a modified ReLU backward rule (``"guided"`` or ``"deconv"``) inside the block.

    ``None`` is a no-op, so callers can write ``with relu_rule(self.rule):``.
    """
    if rule is None:
        yield
        return
    with ReluRuleMode(rule):
        yield
