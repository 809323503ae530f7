"""A cheaper double backward for BatchNorm in training mode (issue 13, item 2).

The interpretable-gradient loss differentiates an input gradient, so every BatchNorm
layer's backward is itself differentiated ("double backward"). PyTorch builds that second
derivative from about thirty generic element-wise ops per layer; on the CIFAR ResNet-18 it
was about 29 % of a training step. Inside
:func:`cleargrad.training.double_backward.double_backward_kernels` a training-mode
``F.batch_norm`` call is routed through :class:`BatchNormTrain`, whose
forward and first backward are PyTorch's native kernels (same values, same running
statistics update) and whose backward's backward is the closed form below, with five
per-channel reductions.

Notation, per channel with ``M`` elements: ``r = 1 / sqrt(var + eps)`` (biased variance),
``x̂ = (x - mean) * r``, ``P(v) = v - mean(v) - x̂ * mean(x̂ v)`` (self-adjoint). The first
backward is ``dx = γ r P(g)``, ``dγ = Σ g x̂``, ``dβ = Σ g``. Given the gradients ``G``,
``Gγ``, ``Gβ`` arriving at ``dx``, ``dγ``, ``dβ``, with ``m = mean(g x̂)`` and
``s = mean(G g) - mean(g) mean(G) - m mean(G x̂)``:

* ``∂/∂g = γ r P(G) + Gγ x̂ + Gβ``
* ``∂/∂γ = M r s``
* ``∂/∂x = -γ r² (s x̂ + P(m G + mean(G x̂) g)) + Gγ r P(g)``

(from ``δx̂ = r P(δx)`` and ``δr = -r² mean(x̂ δx)``). The result equals autograd's own
double backward to float tolerance (tested in float64).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

__all__ = ["BatchNormTrain"]


def _stat_shape(x: torch.Tensor) -> tuple[list[int], tuple[int, ...]]:
    """Reduction dims (all but the channel dim 1) and the per-channel broadcast shape."""
    dims = [0, *range(2, x.dim())]
    return dims, (1, x.shape[1], *([1] * (x.dim() - 2)))


class _BatchNormTrainBackward(torch.autograd.Function):
    """``(dx, dγ, dβ)`` of a training-mode BatchNorm, with a closed-form backward."""

    @staticmethod
    def forward(ctx: Any, g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor,
                invstd: torch.Tensor, eps: float):
        dx, dw, db = torch.ops.aten.native_batch_norm_backward(
            g, x, weight, None, None, mean, invstd, True, eps, [True, True, True])
        ctx.save_for_backward(g, x, weight, mean, invstd, dw, db)
        ctx.set_materialize_grads(False)  # unused outputs (dγ, dβ in a loss on dx) get None, not zeros
        return dx, dw, db

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gdx: torch.Tensor | None, gdw: torch.Tensor | None, gdb: torch.Tensor | None):
        g, x, weight, mean, invstd, dw, db = ctx.saved_tensors
        dims, shape = _stat_shape(x)
        n = x.numel() // x.shape[1]
        r = invstd.view(shape)
        gamma = weight.view(shape)
        xc = x - mean.view(shape)              # x̂ = r * xc
        g_mean = (db / n).view(shape)          # mean(g)
        m = (dw / n).view(shape)               # mean(g x̂)
        # both results are per-channel linear combinations of G, g, xc and a constant; the
        # coefficients are gathered first so that each full-size tensor is written once
        cg_G = cg_xc = cg_1 = cx_G = cx_g = cx_xc = cx_1 = None
        d_w = None
        if gdx is not None:
            G_mean = gdx.mean(dims, keepdim=True)
            Gx_mean = r * (gdx * xc).mean(dims, keepdim=True)                     # mean(G x̂)
            s = (gdx * g).mean(dims, keepdim=True) - g_mean * G_mean - m * Gx_mean
            gr = gamma * r
            cg_G, cg_xc, cg_1 = gr, -gr * r * Gx_mean, -gr * G_mean                # γ r P(G)
            k = -gr * r
            cx_G, cx_g = k * m, k * Gx_mean                                      # -γ r² (m G + mean(G x̂) g
            cx_xc = k * r * (s - 2 * m * Gx_mean)                                #   + (s - 2 m mean(G x̂)) x̂
            cx_1 = -k * (m * G_mean + Gx_mean * g_mean)                          #   - mean(v))
            d_w = (n * r * s).view(-1)
        if gdw is not None:
            gw = gdw.view(shape)
            cg_xc = gw * r if cg_xc is None else cg_xc + gw * r                   # + Gγ x̂
            cx_g = gw * r if cx_g is None else cx_g + gw * r                      # + Gγ r P(g)
            add_xc, add_1 = -gw * r * r * m, -gw * r * g_mean
            cx_xc = add_xc if cx_xc is None else cx_xc + add_xc
            cx_1 = add_1 if cx_1 is None else cx_1 + add_1
        if gdb is not None:
            gb = gdb.view(shape)
            cg_1 = gb if cg_1 is None else cg_1 + gb                              # + Gβ
        d_g = _combine(((cg_G, gdx), (cg_xc, xc)), cg_1, g)
        d_x = _combine(((cx_G, gdx), (cx_g, g), (cx_xc, xc)), cx_1, x)
        if d_w is None and ctx.needs_input_grad[2]:
            d_w = torch.zeros_like(weight)
        return d_g, d_x, d_w, None, None, None


def _combine(terms: tuple, const: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``Σ coef * tensor + const`` (per-channel coefficients), writing one full-size tensor."""
    out = None
    for coef, t in terms:
        if coef is None:
            continue
        out = t * coef if out is None else out.addcmul_(t, coef)
    if out is None:
        out = torch.zeros_like(like)
    return out if const is None else out.add_(const)


class BatchNormTrain(torch.autograd.Function):
    """Training-mode ``batch_norm`` via the native kernel; its backward is recorded as
    :class:`_BatchNormTrainBackward` when it runs with ``create_graph``.

    ``apply(x, weight, bias, running_mean, running_var, momentum, eps, phase)``; ``phase``
    (a :class:`~cleargrad.training.double_backward.BackwardPhase`) says whether a backward
    needs only ``dx`` (then ``dγ``, ``dβ`` are not computed and come back as None).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                running_mean: torch.Tensor | None, running_var: torch.Tensor | None, momentum: float, eps: float,
                phase: Any):
        out, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps, ctx.phase = eps, phase
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):
        x, weight, mean, invstd = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: record the closed-form double backward
            dx, dw, db = _BatchNormTrainBackward.apply(g, x, weight, mean, invstd, ctx.eps)
            if ctx.phase.input_only:
                dw = db = None
        else:
            mask = [True, not ctx.phase.input_only, not ctx.phase.input_only]
            dx, dw, db = torch.ops.aten.native_batch_norm_backward(
                g, x, weight, None, None, mean, invstd, True, ctx.eps, mask)
        return dx, dw, db, None, None, None, None, None
