"""DeepLIFT backward rules (Rescale, and Captum's rule for max pooling).

:class:`DeepLiftMode` is a :class:`torch.overrides.TorchFunctionMode` for one forward
pass over ``cat([inputs, baselines])`` (batch ``2n``: the first ``n`` rows are the
inputs, the last ``n`` their baselines). Every nonlinearity it sees is swapped for a
custom :class:`torch.autograd.Function` whose backward applies the DeepLIFT multiplier
instead of the local derivative. Because it works at the level of torch functions it
catches ``nn.ReLU`` modules, ``F.relu``, ``torch.relu``, ``Tensor.relu`` and the in-place
variants alike (module hooks only see modules).

Rules, with ``u`` the nonlinearity's input, ``y`` its output, ``g`` the multiplier from
above and ``Δ`` the difference between an input row and its baseline row:

* Rescale (ReLU, ReLU6/hardtanh, ELU, LeakyReLU, Softplus, Sigmoid, Tanh, SiLU, GELU):
  ``g_in = g * Δy / Δu`` where ``|Δu| >= eps``, else the ordinary gradient ``g * f'(u)``.
  The same multiplier ``Δy / Δu`` is used for both halves of the batch.
* Max pooling (``F.max_pool1d/2d/3d``): with ``m = max(y, y_ref)`` the output difference
  ``Δy`` is split into ``m - y_ref``, routed back through the input's argmax positions,
  and ``y - m``, routed through the baseline's argmax positions; their sum divided by
  ``Δu`` is the multiplier (ordinary gradient where ``|Δu| < eps``). Routing
  accumulates over overlapping windows.

Linear layers (convolutions, linear, eval-mode BatchNorm, average pooling, sums) keep
their ordinary gradient, which is their DeepLIFT multiplier.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..errors import ExplanationError
from .options import call_arg

__all__ = ["DeepLiftMode", "rescale_functions"]

Fn = Callable[[torch.Tensor], torch.Tensor]


def _flag(args: tuple, kwargs: dict, pos: int) -> bool:
    return bool(call_arg(args, kwargs, "inplace", pos, False))


def _relu(a: tuple, k: dict) -> tuple[Fn, bool]:
    return torch.relu, _flag(a, k, 1)


def _relu_(a: tuple, k: dict) -> tuple[Fn, bool]:
    return torch.relu, True


def _relu6(a: tuple, k: dict) -> tuple[Fn, bool]:
    return (lambda u: F.hardtanh(u, 0.0, 6.0)), _flag(a, k, 1)


def _hardtanh(a: tuple, k: dict) -> tuple[Fn, bool]:
    lo = float(call_arg(a, k, "min_val", 1, -1.0))
    hi = float(call_arg(a, k, "max_val", 2, 1.0))
    return (lambda u: F.hardtanh(u, lo, hi)), _flag(a, k, 3)


def _elu(a: tuple, k: dict) -> tuple[Fn, bool]:
    alpha = float(call_arg(a, k, "alpha", 1, 1.0))
    return (lambda u: F.elu(u, alpha)), _flag(a, k, 2)


def _leaky(a: tuple, k: dict) -> tuple[Fn, bool]:
    slope = float(call_arg(a, k, "negative_slope", 1, 0.01))
    return (lambda u: F.leaky_relu(u, slope)), _flag(a, k, 2)


def _softplus(a: tuple, k: dict) -> tuple[Fn, bool]:
    beta = float(call_arg(a, k, "beta", 1, 1.0))
    threshold = float(call_arg(a, k, "threshold", 2, 20.0))
    return (lambda u: F.softplus(u, beta, threshold)), False


def _plain(fn: Fn, inplace: bool) -> Callable[[tuple, dict], tuple[Fn, bool]]:
    return lambda a, k: (fn, inplace)


def _silu(a: tuple, k: dict) -> tuple[Fn, bool]:
    return F.silu, _flag(a, k, 1)


def _gelu(a: tuple, k: dict) -> tuple[Fn, bool]:
    approximate = str(call_arg(a, k, "approximate", 1, "none"))
    return (lambda u: F.gelu(u, approximate=approximate)), False


def rescale_functions() -> dict[Any, Callable[[tuple, dict], tuple[Fn, bool]]]:
    """torch function -> parser giving ``(out-of-place function, in-place?)`` for the
    elementwise nonlinearities that get the Rescale rule."""
    table: dict[Any, Callable[[tuple, dict], tuple[Fn, bool]]] = {
        torch.relu: _relu,
        F.relu: _relu,
        torch.Tensor.relu: _relu,
        torch.relu_: _relu_,
        torch.Tensor.relu_: _relu_,
        F.relu_: _relu_,
        F.relu6: _relu6,
        F.hardtanh: _hardtanh,
        F.elu: _elu,
        F.leaky_relu: _leaky,
        F.softplus: _softplus,
        torch.sigmoid: _plain(torch.sigmoid, False),
        torch.Tensor.sigmoid: _plain(torch.sigmoid, False),
        torch.Tensor.sigmoid_: _plain(torch.sigmoid, True),
        F.sigmoid: _plain(torch.sigmoid, False),
        torch.tanh: _plain(torch.tanh, False),
        torch.Tensor.tanh: _plain(torch.tanh, False),
        torch.Tensor.tanh_: _plain(torch.tanh, True),
        F.tanh: _plain(torch.tanh, False),
        F.silu: _silu,
        F.gelu: _gelu,
    }
    return table


_RESCALE = rescale_functions()
_MAXPOOL = {F.max_pool1d: F.max_pool1d, F.max_pool2d: F.max_pool2d, F.max_pool3d: F.max_pool3d}


def _halves(t: torch.Tensor) -> torch.Tensor:
    """``t[:n] - t[n:]`` repeated for both halves (the difference each row is scaled by)."""
    a, b = t.chunk(2)
    d = a - b
    return torch.cat([d, d])


class _Rescale(torch.autograd.Function):
    """Elementwise ``fn`` forward; DeepLIFT Rescale multiplier backward."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, fn: Fn, inplace: bool, eps: float) -> torch.Tensor:
        out = fn(u)
        ctx.fn, ctx.eps = fn, eps
        if inplace:
            ctx.save_for_backward(u.clone(), out)
            u.copy_(out)
            ctx.mark_dirty(u)
            return u
        ctx.save_for_backward(u, out)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):
        u, y = ctx.saved_tensors
        du, dy = _halves(u), _halves(y)
        small = du.abs() < ctx.eps
        if not bool(small.any()):
            return g * dy / du, None, None, None
        with torch.enable_grad():  # the ordinary derivative, where input and baseline agree
            uu = u.detach().requires_grad_(True)
            (plain,) = torch.autograd.grad(ctx.fn(uu), uu, g)
        rescaled = g * dy / torch.where(small, torch.ones_like(du), du)
        return torch.where(small, plain, rescaled), None, None, None


class _MaxPoolRule(torch.autograd.Function):
    """Max pooling forward; DeepLIFT max-pool multiplier backward (see module docstring)."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, pool: Fn, eps: float) -> torch.Tensor:
        out = pool(u)
        ctx.pool, ctx.eps = pool, eps
        ctx.save_for_backward(u, out)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):
        u, y = ctx.saved_tensors
        y_in, y_ref = y.chunk(2)
        top = torch.maximum(y_in, y_ref)
        split = torch.cat([top - y_ref, y_in - top])
        du = _halves(u)
        small = du.abs() < ctx.eps
        need_plain = bool(small.any())
        with torch.enable_grad():
            uu = u.detach().requires_grad_(True)
            yy = ctx.pool(uu)
            (routed,) = torch.autograd.grad(yy, uu, g * split, retain_graph=need_plain)
            plain = torch.autograd.grad(yy, uu, g)[0] if need_plain else None
        a, b = routed.chunk(2)
        num = torch.cat([a + b, a + b])
        if plain is None:
            return num / du, None, None
        return torch.where(small, plain, num / torch.where(small, torch.ones_like(du), du)), None, None


class DeepLiftMode(TorchFunctionMode):
    """Route the nonlinearities of a forward over ``cat([x, baselines])`` through DeepLIFT rules.

    Args:
        n: number of input rows; the forward's batch must be ``2 * n`` at every
            nonlinearity (inputs first, then their baselines in the same order).
        eps: ``|Δu|`` below which the ordinary gradient is used (Captum's ``eps``).

    Only the forward needs the mode: the rules' backward is recorded in the graph.
    """

    def __init__(self, n: int, eps: float = 1e-10) -> None:
        super().__init__()
        self.n, self.eps = n, float(eps)

    def _check(self, u: torch.Tensor) -> None:
        if u.dim() == 0 or u.shape[0] != 2 * self.n:
            raise ExplanationError(
                f"DeepLIFT found a nonlinearity on a tensor of batch {tuple(u.shape)[:1]} inside a forward "
                f"over {2 * self.n} rows (inputs and baselines); the model must keep the batch dimension "
                "first and never mix images (eval mode, no batch reshapes)"
            )

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        parse = _RESCALE.get(func)
        pool = _MAXPOOL.get(func) if parse is None else None
        if (parse is None and pool is None) or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        u = args[0] if args else kwargs.get("input")
        if not isinstance(u, torch.Tensor) or not u.requires_grad:
            return func(*args, **kwargs)
        self._check(u)
        if parse is not None:
            fn, inplace = parse(args, kwargs)
            return _Rescale.apply(u, fn, inplace, self.eps)
        if bool(call_arg(args, kwargs, "return_indices", 6, False)):
            return func(*args, **kwargs)  # indices wanted by the model: ordinary gradient
        rest = dict(kwargs)
        rest.pop("input", None)
        more = args[1:]
        return _MaxPoolRule.apply(u, lambda t: pool(t, *more, **rest), self.eps)
