"""Memory layout of the images a public call feeds to the model.

On CPUs, most oneDNN convolutions run faster on channels-last (NHWC) inputs even
when the weights stay in the default layout, one-channel inputs included (see
:func:`channels_last`; measured: benchmarks/results/evaluate_pipeline.md, section
"Channels-last forward passes"); wide 3x3 convolutions on small feature maps run
slower (benchmarks/results/layout_rule.md).
Inside a public call (:func:`fast_layout_call`), every image batch that cleargrad sends through the model
goes through :func:`model_input`, which returns it channels-last when the mode allows
it. The model itself is never touched, and results are returned in the default
(contiguous) layout.

Modes (:func:`set_memory_format`, or the ``CLEARGRAD_MEMORY_FORMAT`` environment
variable):

* ``"auto"`` (default): channels-last for 4-D inputs on the CPU, except for the heavy
  convolutions of :func:`heavy_conv` (dense kernels larger than 1x1 on at least 128
  channels with few output pixels per channel, the deep stages of ResNets and VGGs at
  small inputs or batches, where oneDNN's channels-last kernels are slower): those get
  their input in the default layout, and the layers after them run so. The rule is a
  function of the shapes only (no timing), so a call gives the same values on every run;
* ``"channels_last"``: channels-last for 4-D inputs on every device, every convolution
  included;
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
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any, TypeVar, cast

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import ConfigError
from .callargs import call_arg, int_tuple

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
    "heavy_conv",
    "HEAVY_CONV_MIN_CHANNELS",
    "HEAVY_CONV_PIXELS_PER_CHANNEL",
]

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")

T = TypeVar("T")

_mode = os.environ.get("CLEARGRAD_MEMORY_FORMAT", "auto")
if _mode not in MEMORY_FORMATS:  # pragma: no cover - environment typo
    raise ConfigError(f"CLEARGRAD_MEMORY_FORMAT must be one of {MEMORY_FORMATS}, got {_mode!r}")


#: :func:`heavy_conv`'s thresholds (measured: benchmarks/results/layout_rule.md)
HEAVY_CONV_MIN_CHANNELS = 128
HEAVY_CONV_PIXELS_PER_CHANNEL = 12


class _Scope:
    """A public call in progress; ``converted`` records that an input was made channels-last,
    ``rule`` that :func:`heavy_conv` is applied inside it."""

    converted = False
    rule = False


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


def _out_size(size: int, k: int, stride: int, padding: Any, dilation: int) -> int:
    if padding == "same":
        return size
    p = 0 if padding == "valid" else padding
    return (size + 2 * p - dilation * (k - 1) - 1) // stride + 1


def heavy_conv(
    x: torch.Tensor, weight: torch.Tensor, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1
) -> bool:
    """Whether ``"auto"`` gives this 2-D convolution (``torch.nn.functional.conv2d``'s
    arguments) its input in the default layout rather than channels-last.

    True for a channels-last CPU input to a dense (``groups == 1``) kernel larger than 1x1
    with ``C_in >= HEAVY_CONV_MIN_CHANNELS`` input channels whose output has fewer than
    ``HEAVY_CONV_PIXELS_PER_CHANNEL * C_in`` pixels (``N * H_out * W_out``). A function of
    the shapes only."""
    if x.dim() != 4 or weight.dim() != 4 or x.device.type != "cpu" or groups != 1:
        return False
    c_in, kh, kw = weight.shape[1], weight.shape[2], weight.shape[3]
    if c_in < HEAVY_CONV_MIN_CHANNELS or kh * kw <= 1:
        return False
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return False
    (sh, sw), (dh, dw) = int_tuple(stride, 2), int_tuple(dilation, 2)
    ph, pw = int_tuple(padding, 2) if not isinstance(padding, str) else (padding, padding)
    pixels = x.shape[0] * _out_size(x.shape[2], kh, sh, ph, dh) * _out_size(x.shape[3], kw, sw, pw, dw)
    return pixels < HEAVY_CONV_PIXELS_PER_CHANNEL * c_in


class _HeavyConvsContiguous(TorchFunctionMode):
    """Inside a public call in ``"auto"`` mode: the input of every :func:`heavy_conv`
    convolution made contiguous (differentiable; values unchanged)."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.conv2d and args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
            weight = call_arg(args, kwargs, "weight", 1, None)
            if weight is not None and heavy_conv(
                args[0], weight, call_arg(args, kwargs, "stride", 3, 1), call_arg(args, kwargs, "padding", 4, 0),
                call_arg(args, kwargs, "dilation", 5, 1), call_arg(args, kwargs, "groups", 6, 1),
            ):
                args = (args[0].contiguous(), *args[1:])
        return func(*args, **kwargs)


#: models with a parameter shaped like a heavy convolution's weight (cached: the rule is
#: entered only for them, so other models do not pay its per-operation dispatch)
_heavy_models: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def _has_heavy_convs(model: nn.Module) -> bool:
    try:
        return _heavy_models[model]
    except (KeyError, TypeError):
        pass
    found = any(
        p.dim() == 4 and p.shape[1] >= HEAVY_CONV_MIN_CHANNELS and p.shape[2] * p.shape[3] > 1
        for p in model.parameters()
    )
    with suppress(TypeError):  # a module that cannot be weakly referenced is checked every time
        _heavy_models[model] = found
    return found


def _on_cpu(model: nn.Module) -> bool:
    """Whether ``model``'s first parameter is on the CPU (elsewhere ``"auto"`` feeds inputs
    as given, and the rule's per-operation dispatch would only cost time)."""
    p = next(model.parameters(), None)
    return p is not None and p.device.type == "cpu"


@contextmanager
def fast_layout(model: nn.Module | None = None) -> Iterator[_Scope]:
    """Allow channels-last model inputs (:func:`model_input`) inside the block; with a CPU
    ``model`` given in ``"auto"`` mode, also apply :func:`heavy_conv` to its convolutions."""
    outer = _scope.get()
    scope = _Scope()
    scope.rule = outer is not None and outer.rule
    enter = not scope.rule and model is not None and _mode == "auto" and _on_cpu(model) and _has_heavy_convs(model)
    token = _scope.set(scope)
    try:
        if enter:
            scope.rule = True
            with _HeavyConvsContiguous():
                yield scope
        else:
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
    with fast_layout(model) as scope:
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
