"""Leaner kernels for a forward pass whose input gradient is differentiated again (issue 13).

The interpretable-gradient loss records one forward pass, takes two input gradients from it
(guided, then standard with ``create_graph``) and differentiates the standard one in the
final ``backward``. :func:`double_backward_kernels` records that forward with

* :class:`~cleargrad.training.batchnorm.BatchNormTrain` for training-mode BatchNorm
  (closed-form double backward);
* :class:`~cleargrad.training.conv.Conv2dInputOnly` for 2-D convolutions (lean double
  backward of the input gradient).

Values are those of PyTorch's own functions; first and second derivatives agree to float
rounding (tested, in float64 to 1e-9). While the :class:`BackwardPhase` it yields has
``input_only`` set, backward passes through these layers compute only input gradients (no
weight gradients), which is all an ``autograd.grad(score, x)`` needs: clear it before any
backward that must produce parameter gradients. Third derivatives are not supported
through BatchNorm (a clear error).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..core.options import call_arg
from ..runtime.callargs import int_tuple
from .batchnorm import BatchNormTrain
from .conv import Conv2dInputOnly

__all__ = ["BackwardPhase", "DoubleBackwardMode", "double_backward_kernels"]


class BackwardPhase:
    """Whether the backward passes that run *now* need only input gradients.

    Read by the recorded layers when their backward runs; ``input_only=False`` (the default)
    gives every gradient, as PyTorch's own layers do.
    """

    __slots__ = ("input_only",)

    def __init__(self, input_only: bool = False) -> None:
        self.input_only = input_only


def _batch_norm(args: tuple, kwargs: dict, phase: BackwardPhase) -> torch.Tensor | None:
    x = args[0]
    running_mean = call_arg(args, kwargs, "running_mean", 1, None)
    running_var = call_arg(args, kwargs, "running_var", 2, None)
    weight = call_arg(args, kwargs, "weight", 3, None)
    bias = call_arg(args, kwargs, "bias", 4, None)
    training = call_arg(args, kwargs, "training", 5, False)
    # eval-mode BatchNorm is linear in its input, cheap to differentiate twice: left alone
    if not (training or running_mean is None) or weight is None or bias is None or x.dim() < 2:
        return None
    if training:
        # the error F.batch_norm raises for one value per channel
        F._verify_batch_size(x.size())  # type: ignore[attr-defined]  # private torch helper, not in the stub
    momentum = call_arg(args, kwargs, "momentum", 6, 0.1)
    eps = call_arg(args, kwargs, "eps", 7, 1e-5)
    return BatchNormTrain.apply(x, weight, bias, running_mean, running_var, momentum, eps, phase)


def _conv2d(args: tuple, kwargs: dict, phase: BackwardPhase) -> torch.Tensor | None:
    x, weight = args[0], call_arg(args, kwargs, "weight", 1, None)
    padding = call_arg(args, kwargs, "padding", 4, 0)
    if isinstance(padding, str) or weight is None or x.dim() != 4:  # "same"/"valid", unbatched: left alone
        return None
    bias = call_arg(args, kwargs, "bias", 2, None)
    stride = int_tuple(call_arg(args, kwargs, "stride", 3, 1), 2)
    dilation = int_tuple(call_arg(args, kwargs, "dilation", 5, 1), 2)
    groups = int(call_arg(args, kwargs, "groups", 6, 1))
    return Conv2dInputOnly.apply(x, weight, bias, stride, int_tuple(padding, 2), dilation, groups, phase)


_ROUTES = {F.batch_norm: _batch_norm, F.conv2d: _conv2d, torch.conv2d: _conv2d}


class DoubleBackwardMode(TorchFunctionMode):
    """Torch-function mode that records BatchNorm and 2-D convolutions with the lean kernels."""

    def __init__(self, phase: BackwardPhase) -> None:
        super().__init__()
        self.phase = phase

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        route = _ROUTES.get(func)
        if route is not None and torch.is_grad_enabled():
            out = route(args, kwargs, self.phase)
            if out is not None:
                return out
        return func(*args, **kwargs)


@contextmanager
def double_backward_kernels(phase: BackwardPhase | None = None) -> Iterator[BackwardPhase]:
    """Record the forward inside the block with the lean BatchNorm / convolution kernels.

    >>> with double_backward_kernels() as phase:          # doctest: +SKIP
    ...     score = model(x).gather(1, y[:, None]).sum()
    >>> phase.input_only = True                           # doctest: +SKIP
    >>> g, = torch.autograd.grad(score, x, create_graph=True)   # doctest: +SKIP
    >>> phase.input_only = False                          # doctest: +SKIP
    >>> (g.square().sum() + score).backward()             # doctest: +SKIP

    Only the forward needs the block. Yields the phase the recorded layers read.
    """
    phase = BackwardPhase() if phase is None else phase
    with DoubleBackwardMode(phase):
        yield phase
