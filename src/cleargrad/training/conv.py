"""A 2-D convolution whose input gradient has a lean double backward (issue 13, item 2).

The interpretable-gradient loss takes input gradients of the scores (only ``dL/dx``, no
weight gradients) and then differentiates the standard one again. For a convolution
``y = conv(x, W)`` the input gradient is ``gI = conv_transposed(gO, W)``; given the gradient
``ggI`` arriving at ``gI`` its derivatives are

* with respect to ``gO``: ``conv(ggI, W)`` (a forward convolution);
* with respect to ``W``: the weight gradient of a convolution with input ``ggI`` and output
  gradient ``gO``, i.e. ``convolution_backward(gO, ggI, W)`` with only the weight output;
* with respect to ``x``: zero (``gI`` does not depend on ``x``).

:class:`Conv2dInputOnly` computes exactly these with PyTorch's convolution kernels.
PyTorch's generic ``_convolution_double_backward`` computes the weight term as a
convolution of transposed copies of the tensors, which costs copies and a slower kernel.
Inside a :class:`~cleargrad.training.double_backward.BackwardPhase` with
``input_only=True`` the first backward also skips the weight gradient, as autograd does for
its own nodes when only ``dL/dx`` is asked for.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["Conv2dInputOnly"]

def _conv_grads(g_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, args: tuple, mask: list[bool],
                bias_sizes: list[int] | None = None) -> tuple:
    """``(dL/dx, dL/dW, dL/db)`` of ``conv2d(x, W)`` for ``dL/dy = g_out`` (entries not in ``mask``: None)."""
    stride, padding, dilation, groups = args
    return torch.ops.aten.convolution_backward(g_out, x, weight, bias_sizes, stride, padding, dilation, False,
                                               [0, 0], groups, mask)


class _Conv2dInputGrad(torch.autograd.Function):
    """``gI = conv_transposed(gO, W)`` with the closed-form backward of the module doc."""

    @staticmethod
    def forward(ctx: Any, g_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, args: tuple):
        g_in = _conv_grads(g_out, x, weight, args, [True, False, False])[0]
        ctx.save_for_backward(g_out, weight)
        ctx.args = args
        return g_in

    @staticmethod
    def backward(ctx: Any, gg_in: torch.Tensor):
        g_out, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.args
        gg_out = d_weight = None
        if ctx.needs_input_grad[0]:
            gg_out = F.conv2d(gg_in, weight, None, stride, padding, dilation, groups)
        if ctx.needs_input_grad[2]:
            d_weight = _conv_grads(g_out, gg_in, weight, ctx.args, [False, True, False])[1]
        return gg_out, None, d_weight, None


class Conv2dInputOnly(torch.autograd.Function):
    """``F.conv2d`` with native kernels whose backward follows a ``BackwardPhase``.

    ``apply(x, weight, bias, stride, padding, dilation, groups, phase)`` with list-valued
    ``stride``, ``padding``, ``dilation``. While ``phase.input_only`` is set, a backward
    returns only ``dL/dx`` (recorded as :class:`_Conv2dInputGrad` under ``create_graph``);
    otherwise it returns every gradient, as ``F.conv2d``'s own backward does.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: list,
                padding: list, dilation: list, groups: int, phase: Any):
        ctx.save_for_backward(x, weight)
        ctx.args = (stride, padding, dilation, groups)
        ctx.has_bias, ctx.phase = bias is not None, phase
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Any, g_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        none = (None,) * 6  # bias, stride, padding, dilation, groups, phase
        if ctx.phase.input_only:
            if torch.is_grad_enabled():
                return (_Conv2dInputGrad.apply(g_out, x, weight, ctx.args), None, *none)
            g_in = _conv_grads(g_out, x, weight, ctx.args, [True, False, False])[0]
            return (g_in, None, *none)
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        bias_sizes = [weight.shape[0]] if ctx.has_bias else None
        g_in, g_w, g_b = _conv_grads(g_out, x, weight, ctx.args, mask, bias_sizes)
        return g_in, g_w, g_b, None, None, None, None, None
