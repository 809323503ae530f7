"""Layer-wise relevance propagation (LRP) backward rules.

:class:`LrpMode` is a :class:`torch.overrides.TorchFunctionMode` for one forward pass.
The backward of every layer it sees then carries relevance instead of a gradient:

* convolutions (``conv1d/2d/3d``) and ``linear``: the rule the caller's resolver picks
  for the layer (``Epsilon``, ``Gamma``, ``AlphaBeta``, ``ZPlus``, ``ZBox``, ``Flat``,
  ``WSquare``, ``Pass``);
* eval-mode ``batch_norm`` applied straight to such a layer's output is folded into that
  layer (``W' = a W``, ``b' = a (b - mean) + beta`` with ``a = gamma / sqrt(var + eps)``)
  and the layer's rule runs with the folded parameters; nothing on the model changes.
  Any other batch norm passes relevance through;
* elementwise nonlinearities (``nn.ReLU``, ``F.relu``, ``torch.relu``, in-place ReLU,
  ReLU6, ELU, LeakyReLU, Softplus, Sigmoid, Tanh, SiLU, GELU) pass relevance through
  unchanged;
* the sum of two activations (``a + b``, ``a += b``, ``torch.add``: residual
  connections) and average pooling (``avg_pool*``, ``adaptive_avg_pool*``) split
  relevance in proportion to their inputs' contributions (``R_i = x_i R / z``);
* everything else (max pooling, reshapes, dropout in eval mode, padding) keeps its
  ordinary gradient: max pooling sends relevance to the winning input.

In a rule, ``x`` is the layer input, ``z`` its output, ``R`` the relevance arriving from
above, ``W+ / W-`` the positive / negative parts of the weights (biases alike), and
``stab(z) = z + e * sign(z)`` (sign(0) = +1) with the rule's stabiliser ``e``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..errors import ConfigError
from ..runtime.callargs import int_tuple
from .deeplift_rules import rescale_functions
from .options import call_arg

__all__ = [
    "AlphaBeta",
    "Epsilon",
    "Flat",
    "Gamma",
    "LinearOp",
    "LrpMode",
    "Pass",
    "Rule",
    "WSquare",
    "ZBox",
    "ZPlus",
    "stabilize",
]


def stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``z + eps * sign(z)``, with ``sign(0) = +1``, so that no denominator is 0."""
    return z + eps * (z.sign() + (z == 0).to(z.dtype))


@dataclass
class LinearOp:
    """One affine layer call: ``func(x, weight, bias, *extra, **kwargs)``."""

    func: Callable[..., torch.Tensor]
    weight: torch.Tensor
    bias: torch.Tensor | None
    extra: tuple = ()
    kwargs: dict = field(default_factory=dict)
    module: Any = None  # the nn.Module owning ``weight`` (None for a functional call)

    @property
    def dims(self) -> int:
        return self.weight.dim() - 2  # 0 for linear

    def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        return self.func(x, w, b, *self.extra, **self.kwargs)

    def transpose(self, g: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``W^T g``: the input-gradient of ``forward(., w)`` for output-gradient ``g``."""
        if self.dims == 0:
            return g @ w
        args = dict(zip(("stride", "padding", "dilation", "groups"), self.extra))
        args.update(self.kwargs)
        padding = args.get("padding", 0)
        if not isinstance(padding, str):
            d = self.dims
            return torch.ops.aten.convolution_backward(
                g, x, w, None, int_tuple(args.get("stride", 1), d), int_tuple(padding, d),
                int_tuple(args.get("dilation", 1), d), False, [0] * d, int(args.get("groups", 1)),
                [True, False, False],
            )[0]
        with torch.enable_grad():  # string padding ("same"): let autograd transpose it
            xx = torch.zeros_like(x).requires_grad_(True)
            return torch.autograd.grad(self.forward(xx, w), xx, g)[0]


def _bias(op: LinearOp, fn: Callable[[torch.Tensor], torch.Tensor] | None, zero: bool) -> torch.Tensor | None:
    if op.bias is None or zero:
        return None
    return op.bias if fn is None else fn(op.bias)


def _pos(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(min=0)


def _neg(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(max=0)


class Rule:
    """An LRP rule for an affine layer: ``relevance(op, x, z, R) -> R_in``.

    ``z`` is the layer's actual output (bias included, batch norm folded in).
    """

    name: str = "rule"

    def relevance(self, op: LinearOp, x: torch.Tensor, z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Pass(Rule):
    """Relevance passes through unchanged (shape-preserving layers only)."""

    name = "pass"

    def relevance(self, op, x, z, r):  # noqa: ANN001
        if r.shape != x.shape:
            raise ConfigError("the pass rule only applies to layers whose output has the input's shape")
        return r


class Epsilon(Rule):
    """LRP-ε: ``R_in = x * W^T (R / stab(z))``; ``epsilon=0`` is LRP-0."""

    name = "epsilon"

    def __init__(self, epsilon: float = 1e-6, zero_bias: bool = False) -> None:
        self.epsilon, self.zero_bias = float(epsilon), bool(zero_bias)

    def relevance(self, op, x, z, r):  # noqa: ANN001
        w = op.weight
        if self.zero_bias and op.bias is not None:
            z = op.forward(x, w)
        return x * op.transpose(r / stabilize(z, self.epsilon), w, x)


class _TwoSign(Rule):
    """Rules that treat positive and negative inputs and weights apart."""

    def _terms(self, op, x, pw, nw, sp, sn, nonneg):  # noqa: ANN001
        """``x+ * (P^T sp + N^T sn) + x- * (N^T sp + P^T sn)`` (skipping zero terms:
        ``sn`` None, or no negative input, as after a ReLU)."""
        xp = _pos(x)
        gp = op.transpose(sp, pw, x)
        if sn is not None:
            gp = gp + op.transpose(sn, nw, x)
        if nonneg:
            return xp * gp
        gn = op.transpose(sp, nw, x)
        if sn is not None:
            gn = gn + op.transpose(sn, pw, x)
        return xp * gp + _neg(x) * gn


def _with_negative(op: LinearOp, z: torch.Tensor, xn: torch.Tensor | None, w: torch.Tensor) -> torch.Tensor:
    return z if xn is None else z + op.forward(xn, w)


class AlphaBeta(_TwoSign):
    """LRP-αβ (α - β = 1): positive contributions weighted by α, negative ones by β.

    ``z+ = W+ x+ + W- x- + b+``, ``z- = W- x+ + W+ x- + b-``;
    ``R_in = α (x+ W+^T + x- W-^T)(R / stab(z+)) - β (x+ W-^T + x- W+^T)(R / stab(z-))``.
    ``AlphaBeta(1, 0)`` is z⁺.
    """

    name = "alpha_beta"

    def __init__(
        self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6, zero_bias: bool = False
    ) -> None:
        if alpha < 0 or beta < 0 or not math.isclose(alpha - beta, 1.0):
            raise ConfigError(f"AlphaBeta needs alpha, beta >= 0 with alpha - beta = 1, got {alpha}, {beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.stabilizer, self.zero_bias = float(stabilizer), bool(zero_bias)

    def relevance(self, op, x, z, r):  # noqa: ANN001
        w = op.weight
        pw, nw = _pos(w), _neg(w)
        nonneg = not bool((x < 0).any())
        xp, xn = _pos(x), (None if nonneg else _neg(x))
        zp = _with_negative(op, op.forward(xp, pw, _bias(op, _pos, self.zero_bias)), xn, nw)
        sp = self.alpha * r / stabilize(zp, self.stabilizer)
        sn = None
        if self.beta:
            zn = _with_negative(op, op.forward(xp, nw, _bias(op, _neg, self.zero_bias)), xn, pw)
            sn = -self.beta * r / stabilize(zn, self.stabilizer)
        return self._terms(op, x, pw, nw, sp, sn, nonneg)


class ZPlus(AlphaBeta):
    """LRP-z⁺ (= α1β0): ``R_in = (x+ W+^T + x- W-^T)(R / stab(W+ x+ + W- x- + b+))``."""

    name = "zplus"

    def __init__(self, stabilizer: float = 1e-6, zero_bias: bool = False) -> None:
        super().__init__(1.0, 0.0, stabilizer, zero_bias)


class Gamma(_TwoSign):
    """Generalised LRP-γ: weights ``P = W + γ W+`` and ``N = W + γ W-`` (biases alike).

    Where ``z > 0``: ``R_in = (x+ P^T + x- N^T)(R / stab(P x+ + N x- + b_P))``; where
    ``z < 0``: ``(x+ N^T + x- P^T)(R / stab(N x+ + P x- + b_N))``. For non-negative inputs
    this is the γ rule of Montavon et al. (2019).
    """

    name = "gamma"

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6, zero_bias: bool = False) -> None:
        if not gamma >= 0:
            raise ConfigError(f"gamma must be >= 0, got {gamma}")
        self.gamma, self.stabilizer, self.zero_bias = float(gamma), float(stabilizer), bool(zero_bias)

    def relevance(self, op, x, z, r):  # noqa: ANN001
        g, w = self.gamma, op.weight
        pw, nw = w + g * _pos(w), w + g * _neg(w)
        nonneg = not bool((x < 0).any())
        xp, xn = _pos(x), (None if nonneg else _neg(x))
        bp = _bias(op, lambda b: b + g * _pos(b), self.zero_bias)
        bn = _bias(op, lambda b: b + g * _neg(b), self.zero_bias)
        zp = _with_negative(op, op.forward(xp, pw, bp), xn, nw)
        zn = _with_negative(op, op.forward(xp, nw, bn), xn, pw)
        sp = (z > 0).to(r.dtype) * r / stabilize(zp, self.stabilizer)
        sn = (z < 0).to(r.dtype) * r / stabilize(zn, self.stabilizer)
        return self._terms(op, x, pw, nw, sp, sn, nonneg)


class ZBox(Rule):
    """LRP-z^B for inputs bounded by ``low <= x <= high`` (the first layer).

    ``z^B = W x + b - (W+ l + b+) - (W- h + b-)``;
    ``R_in = (x W^T - l W+^T - h W-^T)(R / stab(z^B))``. ``low``/``high`` are numbers
    or tensors broadcastable to one input (e.g. ``(1, C, 1, 1)`` per channel).
    """

    name = "zbox"

    def __init__(self, low: float | torch.Tensor, high: float | torch.Tensor, stabilizer: float = 1e-6,
                 zero_bias: bool = False) -> None:
        self.low, self.high = low, high
        self.stabilizer, self.zero_bias = float(stabilizer), bool(zero_bias)

    def _bound(self, v: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(v).to(device=x.device, dtype=x.dtype)
        try:
            return torch.broadcast_to(t, x.shape)
        except RuntimeError as e:
            raise ConfigError(
                f"ZBox bounds of shape {tuple(t.shape)} do not broadcast to the layer input {tuple(x.shape)}; "
                "give numbers or tensors shaped like (1, C, 1, 1)"
            ) from e

    def relevance(self, op, x, z, r):  # noqa: ANN001
        w = op.weight
        pw, nw = _pos(w), _neg(w)
        lo, hi = self._bound(self.low, x), self._bound(self.high, x)
        zb = op.forward(x, w, _bias(op, None, self.zero_bias))
        zb = zb - op.forward(lo, pw, _bias(op, _pos, self.zero_bias))
        zb = zb - op.forward(hi, nw, _bias(op, _neg, self.zero_bias))
        s = r / stabilize(zb, self.stabilizer)
        return x * op.transpose(s, w, x) - lo * op.transpose(s, pw, x) - hi * op.transpose(s, nw, x)


class WSquare(Rule):
    """LRP-w²: ``R_in = W²^T (R / stab(W² 1 + b²))`` (independent of the input values).

    The squared bias is in the denominator as in Zennit; ``zero_bias=True`` leaves it out
    (the textbook rule, which conserves relevance).
    """

    name = "wsquare"

    def __init__(self, stabilizer: float = 1e-6, zero_bias: bool = False) -> None:
        self.stabilizer, self.zero_bias = float(stabilizer), bool(zero_bias)

    def _weight(self, w: torch.Tensor) -> torch.Tensor:
        return w * w

    def relevance(self, op, x, z, r):  # noqa: ANN001
        w = self._weight(op.weight)
        b = None if isinstance(self, Flat) else _bias(op, lambda t: t * t, self.zero_bias)
        ones = torch.ones_like(x)
        s = r / stabilize(op.forward(ones, w, b), self.stabilizer)
        return op.transpose(s, w, x)


class Flat(WSquare):
    """LRP-flat: w² with all weights 1 and no bias: relevance spread uniformly over the
    receptive field."""

    name = "flat"

    def _weight(self, w: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(w)


# --- autograd functions ------------------------------------------------------------


class _AffineRule(torch.autograd.Function):
    """Affine layer whose output ``y`` was computed by the model's own op; backward: rule."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, y: torch.Tensor, op: LinearOp, rule: Rule) -> torch.Tensor:
        ctx.op, ctx.rule, ctx.y = op, rule, y  # y: private, never modified in place
        ctx.save_for_backward(x)
        return y.clone()

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor):
        (x,) = ctx.saved_tensors
        return ctx.rule.relevance(ctx.op, x, ctx.y, r), None, None, None


class _PassThrough(torch.autograd.Function):
    """``fn(x)`` forward (in place when asked); relevance passes back unchanged."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], inplace: bool) -> torch.Tensor:
        out = fn(x)
        if inplace:
            x.copy_(out)
            ctx.mark_dirty(x)
            return x
        return out

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor):
        return r, None, None


class _SumRule(torch.autograd.Function):
    """``a + b`` forward (in place into ``a`` when asked); ``R_a = a R / stab(a + b)``."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, inplace: bool, eps: float) -> torch.Tensor:
        ctx.eps = eps
        if inplace:
            ctx.a, ctx.b = a.clone(), b.clone()
            a.add_(b)
            ctx.mark_dirty(a)
            return a
        ctx.a, ctx.b = a.detach().clone(), b.detach().clone()
        return a + b

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor):
        s = r / stabilize(ctx.a + ctx.b, ctx.eps)
        return ctx.a * s, ctx.b * s, None, None


class _PoolNorm(torch.autograd.Function):
    """Average pooling forward; ``R_in = x * pool^T (R / stab(pool(x)))``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pool: Callable[[torch.Tensor], torch.Tensor], eps: float) -> torch.Tensor:
        ctx.pool, ctx.eps = pool, eps
        ctx.save_for_backward(x)
        return pool(x)

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            y = ctx.pool(xx)
            (g,) = torch.autograd.grad(y, xx, r / stabilize(y.detach(), ctx.eps))
        return x * g, None, None


# --- the mode ------------------------------------------------------------------------

_AFFINE = {torch.conv1d, torch.conv2d, torch.conv3d, F.linear}
_POOLS = {F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
          F.adaptive_avg_pool3d}
_ADDS_INPLACE = {torch.Tensor.add_, torch.Tensor.__iadd__}
_ADDS = {torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__}
_ELEMENTWISE = rescale_functions()

#: ``resolver(op, first) -> Rule``: the rule of an affine layer (``first``: no affine
#: layer ran before it in this forward)
Resolver = Callable[[LinearOp, bool], Rule]


@dataclass
class _Record:
    out: torch.Tensor
    x: torch.Tensor
    op: LinearOp
    rule: Rule


class LrpMode(TorchFunctionMode):
    """Make the backward of one forward pass propagate LRP relevance (module docstring).

    Args:
        resolver: picks the rule of each affine layer call.
        modules: ``id(weight) -> module`` for the model's layers (to map calls to modules).
        stabilizer: the stabiliser of the sum and average-pooling rules.

    Only the forward needs the mode; ``records`` is cleared on exit.
    """

    def __init__(self, resolver: Resolver, modules: dict[int, Any], stabilizer: float = 1e-6) -> None:
        super().__init__()
        self.resolver, self.modules, self.stabilizer = resolver, modules, float(stabilizer)
        self.records: dict[int, _Record] = {}
        self.seen_affine = False

    def __exit__(self, *exc: Any) -> Any:
        self.records.clear()
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if not torch.is_grad_enabled():
            return func(*args, **kwargs)
        if func in _AFFINE:
            return self._affine(func, args, kwargs)
        if func is F.batch_norm:
            return self._batch_norm(func, args, kwargs)
        parse = _ELEMENTWISE.get(func)
        if parse is not None:
            u = args[0] if args else kwargs.get("input")
            if isinstance(u, torch.Tensor) and u.requires_grad:
                fn, inplace = parse(args, kwargs)
                return _PassThrough.apply(u, fn, inplace)
            return func(*args, **kwargs)
        if func in _POOLS:
            u = args[0] if args else kwargs.get("input")
            if isinstance(u, torch.Tensor) and u.requires_grad:
                rest, more = {k: v for k, v in kwargs.items() if k != "input"}, args[1:]
                return _PoolNorm.apply(u, lambda t: func(t, *more, **rest), self.stabilizer)
            return func(*args, **kwargs)
        if func in _ADDS or func in _ADDS_INPLACE:
            return self._add(func, args, kwargs)
        return func(*args, **kwargs)

    def _affine(self, func, args, kwargs):  # noqa: ANN001
        x = args[0] if args else kwargs.get("input")
        if not isinstance(x, torch.Tensor) or not x.requires_grad:
            return func(*args, **kwargs)
        w = call_arg(args, kwargs, "weight", 1, None)
        b = call_arg(args, kwargs, "bias", 2, None)
        rest = {k: v for k, v in kwargs.items() if k not in ("input", "weight", "bias")}
        op = LinearOp(func, w.detach(), None if b is None else b.detach(), tuple(args[3:]), rest,
                      self.modules.get(id(w)))
        rule = self.resolver(op, not self.seen_affine)
        self.seen_affine = True
        with torch.no_grad():
            y = func(*args, **kwargs)
        out = _AffineRule.apply(x, y, op, rule)
        self.records[id(out)] = _Record(out, x, op, rule)
        return out

    def _batch_norm(self, func, args, kwargs):  # noqa: ANN001
        names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
        a = {n: call_arg(args, kwargs, n, i, d) for i, (n, d) in
             enumerate(zip(names, (None, None, None, None, None, False, 0.1, 1e-5)))}
        u = a["input"]
        if not isinstance(u, torch.Tensor) or not u.requires_grad:
            return func(*args, **kwargs)
        rec = self.records.get(id(u))
        with torch.no_grad():
            y = func(*args, **kwargs)
        if rec is None or rec.out is not u or a["training"] or a["running_mean"] is None or a["running_var"] is None:
            return _PassThrough.apply(u, lambda t: y.clone(), False)
        scale = torch.rsqrt(a["running_var"].detach() + a["eps"])
        if a["weight"] is not None:
            scale = scale * a["weight"].detach()
        shift = -a["running_mean"].detach() * scale
        if a["bias"] is not None:
            shift = shift + a["bias"].detach()
        op = rec.op
        view = (-1,) + (1,) * (op.weight.dim() - 1)
        bias = shift if op.bias is None else op.bias * scale + shift
        folded = LinearOp(op.func, op.weight * scale.view(view), bias, op.extra, op.kwargs, op.module)
        out = _AffineRule.apply(rec.x, y, folded, rec.rule)
        self.records[id(out)] = _Record(out, rec.x, folded, rec.rule)
        return out

    def _add(self, func, args, kwargs):  # noqa: ANN001
        a = args[0] if args else kwargs.get("input")
        b = args[1] if len(args) > 1 else kwargs.get("other")
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        if (
            isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and alpha == 1
            and not isinstance(a, torch.nn.Parameter) and not isinstance(b, torch.nn.Parameter)
            and a.requires_grad and b.requires_grad and a.shape == b.shape
            and "out" not in kwargs
        ):
            return _SumRule.apply(a, b, func in _ADDS_INPLACE, self.stabilizer)
        return func(*args, **kwargs)
