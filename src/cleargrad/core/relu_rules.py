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

:func:`relu_rule_switch` records one forward pass whose ReLU backward is chosen when the
backward runs (``switch.rule = "guided"`` / ``None`` for the ordinary gradient), so that
several gradients with different rules come from the same forward graph.
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
from .options import call_arg

__all__ = ["relu_rule", "relu_rule_switch", "RULES", "ReluRuleMode", "RuleSwitch"]

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
        ctx.rule, ctx.lo, ctx.bounded = rule, lo, math.isfinite(hi)
        if rule == "guided":
            # the forward mask 1[lo < u < hi] equals 1[lo < out < hi] for a clamp. Without
            # an upper bound, keep ``out`` itself (as autograd's own ReLU does) and apply
            # the mask with the fused ReLU-backward kernel; with one, keep a bool mask.
            ctx.save_for_backward((out > lo) & (out < hi) if ctx.bounded else out)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):
        g_pos = g.clamp(min=0)
        if ctx.rule == "guided":
            (saved,) = ctx.saved_tensors
            # unbounded: threshold_backward keeps g_pos where out > lo and zeroes the rest
            g_pos = g_pos * saved if ctx.bounded else torch.ops.aten.threshold_backward(g_pos, saved, ctx.lo)
        return g_pos, None, None, None, None


class RuleSwitch:
    """Which backward rule the ReLUs of a :func:`relu_rule_switch` forward apply *now*.

    ``rule``: ``None`` (the ordinary ReLU gradient), ``"guided"`` or ``"deconv"``; read by
    every ReLU backward when it runs, so set it before each ``autograd.grad`` call.
    """

    __slots__ = ("rule",)

    def __init__(self) -> None:
        self.rule: str | None = None


class _SwitchClamp(torch.autograd.Function):
    """``clamp(u, lo, hi)`` whose backward applies ``switch.rule`` at backward time.

    The backward uses differentiable ops only, so a gradient taken with ``create_graph=True``
    records them and can itself be differentiated (double backprop); the ordinary rule is
    the native ReLU / hardtanh backward (``g`` where ``lo < u < hi``).
    """

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, lo: float, hi: float, switch: RuleSwitch, inplace: bool):
        bounded = math.isfinite(hi)
        if inplace:
            out = u.clamp_(lo, hi) if bounded else u.clamp_(min=lo)
            ctx.mark_dirty(u)
        else:
            out = u.clamp(lo, hi) if bounded else u.clamp(min=lo)
        ctx.switch, ctx.lo, ctx.bounded = switch, lo, bounded
        ctx.save_for_backward((out > lo) & (out < hi) if bounded else out)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):
        (saved,) = ctx.saved_tensors
        rule = ctx.switch.rule
        if rule == "deconv":
            return g.clamp(min=0), None, None, None, None
        if rule == "guided":
            g = g.clamp(min=0)
        elif rule is not None:
            raise ConfigError(f"unknown ReLU rule {rule!r}; valid: None, {', '.join(RULES)}")
        g_in = g * saved if ctx.bounded else torch.ops.aten.threshold_backward(g, saved, ctx.lo)
        return g_in, None, None, None, None


def _relu(args: tuple, kwargs: dict) -> tuple[float, float, bool]:
    return 0.0, math.inf, bool(call_arg(args, kwargs, "inplace", 1, False))


def _relu_inplace(args: tuple, kwargs: dict) -> tuple[float, float, bool]:
    return 0.0, math.inf, True


def _relu6(args: tuple, kwargs: dict) -> tuple[float, float, bool]:
    return 0.0, 6.0, bool(call_arg(args, kwargs, "inplace", 1, False))


def _hardtanh(args: tuple, kwargs: dict) -> tuple[float, float, bool] | None:
    lo = float(call_arg(args, kwargs, "min_val", 1, -1.0))
    hi = float(call_arg(args, kwargs, "max_val", 2, 1.0))
    if lo != 0.0:  # only hardtanh(0, hi) is a ReLU-like clamp
        return None
    return lo, hi, bool(call_arg(args, kwargs, "inplace", 3, False))


# torch function -> parser of its ``(lo, hi, inplace)``; a dict so that the mode's
# per-op cost for every other function is a single hash lookup
_RELU_LIKE = {
    torch.relu: _relu,
    F.relu: _relu,
    torch.Tensor.relu: _relu,
    torch.relu_: _relu_inplace,
    torch.Tensor.relu_: _relu_inplace,
    F.relu_: _relu_inplace,
    F.relu6: _relu6,
    F.hardtanh: _hardtanh,
}


class ReluRuleMode(TorchFunctionMode):
    """Torch-function mode that routes ReLU-like calls through :class:`_ClampRule`.

    Only the forward pass needs the mode: the rule's backward is recorded in the graph,
    so callers may (and for speed should) leave the block before ``autograd.grad``.
    """

    def __init__(self, rule: str | RuleSwitch) -> None:
        super().__init__()
        if not isinstance(rule, RuleSwitch) and rule not in RULES:
            raise ConfigError(f"unknown ReLU rule {rule!r}; valid: {', '.join(RULES)}")
        self.rule = rule

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        parse = _RELU_LIKE.get(func)
        if parse is None:  # fast path: every op that is not ReLU-like
            return func(*args, **kwargs)
        spec = parse(args, kwargs)
        if spec is not None and torch.is_grad_enabled() and isinstance(args[0], torch.Tensor):
            lo, hi, inplace = spec
            if isinstance(self.rule, RuleSwitch):
                return _SwitchClamp.apply(args[0], lo, hi, self.rule, inplace)
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


@contextmanager
def relu_rule_switch() -> Iterator[RuleSwitch]:
    """Record a forward pass whose ReLU backward rule is chosen at backward time.

    >>> with relu_rule_switch() as switch:            # doctest: +SKIP
    ...     score = model(x).gather(1, y[:, None]).sum()
    >>> switch.rule = "guided"                        # doctest: +SKIP
    >>> guided, = torch.autograd.grad(score, x, retain_graph=True)   # doctest: +SKIP
    >>> switch.rule = None                            # doctest: +SKIP
    >>> plain, = torch.autograd.grad(score, x, create_graph=True)    # doctest: +SKIP

    Both gradients share one forward pass, which is what a second forward under
    :func:`relu_rule` would recompute (same activations, BatchNorm batch statistics and
    Dropout masks). Catches the same ReLU-like calls as :func:`relu_rule`.
    """
    switch = RuleSwitch()
    with ReluRuleMode(switch):
        yield switch
