"""Memory layout of the images a public call feeds to the model.

On CPUs, oneDNN convolutions run markedly faster on channels-last (NHWC) inputs even
when the weights stay in the default layout, one-channel inputs included (see
:func:`channels_last`; measured: benchmarks/results/evaluate_pipeline.md, section
"Channels-last forward passes").
Inside a public call (:func:`fast_layout_call`), every image batch that cleargrad sends through the model
goes through :func:`model_input`, which returns it channels-last when the mode allows
it. The model itself is never touched, and results are returned in the default
(contiguous) layout.

Modes (:func:`set_memory_format`, or the ``CLEARGRAD_MEMORY_FORMAT`` environment
variable):

* ``"auto"`` (default): channels-last for 4-D inputs on the CPU;
* ``"channels_last"``: channels-last for 4-D inputs on every device;
* ``"contiguous"``: inputs are passed as they are.

A model whose forward cannot take a channels-last input (typically ``x.view(n, -1)``
on a spatial feature map, which needs a contiguous tensor) fails with a stride error;
the call is then run again in the default layout, and that model is remembered and
never given channels-last inputs again. On that first call the user's own forward
hooks and any side effect of the forward (up to the failing operation) therefore run
twice; ``set_memory_format("contiguous")`` before the first call avoids it. Results agree with the default layout up to
float rounding (different convolution kernels).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar, cast

import torch
from torch import nn

from ..errors import ConfigError

__all__ = [
    "MEMORY_FORMATS",
    "set_memory_format",
    "get_memory_format",
    "model_input",
    "channels_last",
    "run_model",
    "fast_layout",
    "fast_layout_call",
    "contiguous_result",
]

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")

T = TypeVar("T")

_mode = os.environ.get("CLEARGRAD_MEMORY_FORMAT", "auto")
if _mode not in MEMORY_FORMATS:  # pragma: no cover - environment typo
    raise ConfigError(f"CLEARGRAD_MEMORY_FORMAT must be one of {MEMORY_FORMATS}, got {_mode!r}")


class _Scope:
    """A public call in progress; ``converted`` records that an input was made channels-last."""

    converted = False


#: the innermost public call in progress: only inside one may model inputs be converted
_scope: ContextVar[_Scope | None] = ContextVar("cleargrad_layout_scope", default=None)

#: models whose forward failed on a channels-last input
_incompatible: weakref.WeakSet[nn.Module] = weakref.WeakSet()

_LAYOUT_ERRORS = ("view size is not compatible", "contiguous", "stride")


def set_memory_format(mode: str) -> None:
    """Choose the layout of model inputs: ``"auto"``, ``"channels_last"`` or ``"contiguous"``."""
    global _mode
    if mode not in MEMORY_FORMATS:
        raise ConfigError(f"memory format must be one of {MEMORY_FORMATS}, got {mode!r}")
    _mode = mode


def get_memory_format() -> str:
    """The current mode (see :func:`set_memory_format`)."""
    return _mode


def model_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the layout to feed ``model``: channels-last inside a public call when the
    mode allows it (4-D input; on the CPU only in ``"auto"`` mode) and ``model`` has not
    failed on such an input before; else ``x`` unchanged.

    The conversion is differentiable, so gradients with respect to ``x`` still flow."""
    scope = _scope.get()
    if scope is None or x.dim() != 4 or _mode == "contiguous":
        return x
    if (_mode == "auto" and x.device.type != "cpu") or model in _incompatible:
        return x
    scope.converted = True
    return channels_last(x)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` (4-D) in channels-last strides that convolutions recognise as such.

    For one channel, ``x.contiguous(memory_format=torch.channels_last)`` returns ``x``
    unchanged: the default strides already count as channels-last, but a convolution
    reads them as the default layout and every layer after it runs in the default layout
    (on the CPU, max-pooling in the default layout costs as much as the convolution
    before it). Here a one-channel ``x`` gets the strides ``(H*W, 1, W, 1)`` instead,
    which the first convolution reads as channels-last, so the network runs
    channels-last. Differentiable (a copy), values unchanged."""
    n, c, h, w = x.shape
    if c != 1 or h * w <= 1:
        return x.contiguous(memory_format=torch.channels_last)
    if x.stride()[1:] == (1, w, 1) and (n == 1 or x.stride(0) == h * w):
        return x  # already so
    out = torch.empty_strided(x.shape, (h * w, 1, w, 1), dtype=x.dtype, device=x.device)
    return out.copy_(x)


def _is_layout_error(e: BaseException) -> bool:
    return isinstance(e, RuntimeError) and any(s in str(e) for s in _LAYOUT_ERRORS)


def run_model(model: nn.Module, x: torch.Tensor) -> Any:
    """``model(model_input(model, x))``, run again on ``x`` as given (and ``model``
    remembered) if the channels-last input fails with a stride error.

    For hook-free passes only: a retry would fire forward hooks twice."""
    xi = model_input(model, x)
    if xi is x:
        return model(x)
    try:
        return model(xi)
    except RuntimeError as e:
        if not _is_layout_error(e):
            raise
    _incompatible.add(model)
    return model(x)


@contextmanager
def fast_layout() -> Iterator[_Scope]:
    """Allow channels-last model inputs (:func:`model_input`) inside the block."""
    scope = _Scope()
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def fast_layout_call(model: nn.Module, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run the public call ``fn(*args, **kwargs)`` with channels-last inputs allowed.

    If it fails with a stride error after an input was made channels-last, ``model``
    is remembered as incompatible and the call runs once more with inputs as
    given. ``fn`` must restore the model's state and remove its hooks on the way out
    (every public call does), so the retry starts clean.
    """
    with fast_layout() as scope:
        try:
            return fn(*args, **kwargs)
        except RuntimeError as e:
            if not (scope.converted and model not in _incompatible and _is_layout_error(e)):
                raise
        _incompatible.add(model)
        return fn(*args, **kwargs)


def contiguous_result(out: T) -> T:
    """A call's result in the default layout: tensors (also inside a tuple or list) made
    contiguous, anything else as it is."""
    if isinstance(out, torch.Tensor):
        return cast(T, out.contiguous())  # T is a tensor type here (a subclass stays one)
    if isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out):
        items = [o.contiguous() if isinstance(o, torch.Tensor) else o for o in out]
        return type(out)(items) if not hasattr(out, "_fields") else type(out)(*items)
    return out
