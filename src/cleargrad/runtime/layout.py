"""Memory layout of the images a public call feeds to the model.

On CPUs, oneDNN convolutions often run faster on channels-last (NHWC) inputs even when
the weights stay in the default layout, one-channel inputs included (see
:func:`channels_last`; measured: benchmarks/results/evaluate_pipeline.md, section
"Channels-last forward passes"), but not always: with the weights left in the default
layout each convolution also pays a cost per call that does not shrink with the input, so
small batches of small images of a wide network can run 1.2-2x slower channels-last
(torchvision resnet18, 2 images at 112², one thread: benchmarks/results/cam_new.md).
Inside a public call (:func:`fast_layout_call`), every image batch that cleargrad sends through the model
goes through :func:`model_input`, which returns it channels-last when the mode allows
it. The model itself is never touched, and results are returned in the default
(contiguous) layout.

Modes (:func:`set_memory_format`, or the ``CLEARGRAD_MEMORY_FORMAT`` environment
variable):

* ``"auto"`` (default): on the CPU, channels-last for a 4-D input when a one-off probe
  found it faster for that model, input shape, dtype and thread count (see
  :func:`prefers_channels_last`), else the input as it is; on other devices as it is;
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
import time
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
    "prefers_channels_last",
    "probe_layout",
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

#: channels-last is chosen only when its probe time is below this fraction of the default layout's
PROBE_MARGIN = 0.9

#: ``"auto"`` decisions per model: (C, H, W, dtype, threads) -> channels-last is faster
_decisions: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], bool]] = weakref.WeakKeyDictionary()


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
    mode allows it (4-D input; ``"channels_last"``: always; ``"auto"``: on the CPU where
    :func:`prefers_channels_last`) and ``model`` has not failed on such an input before;
    else ``x`` unchanged.

    The conversion is differentiable, so gradients with respect to ``x`` still flow."""
    scope = _scope.get()
    if scope is None or x.dim() != 4 or _mode == "contiguous" or model in _incompatible:
        return x
    if _mode == "auto" and (x.device.type != "cpu" or not prefers_channels_last(model, x)):
        return x
    scope.converted = True
    return channels_last(x)


def _probe_key(x: torch.Tensor) -> tuple[Any, ...]:
    return (*(int(s) for s in x.shape[1:]), x.dtype, torch.get_num_threads())


def _probe_allowed(model: nn.Module) -> bool:
    """The probe runs the model: only an eval-mode model with no forward hooks (a hook of the
    user's or of the call in progress would see the probe's passes)."""
    from torch.nn.modules import module as M

    if M._global_forward_hooks or M._global_forward_pre_hooks:
        return False
    return not any(m.training or m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def _measure(model: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """Seconds of ``model`` on ``x`` as given and channels-last: one warm-up pass each, then
    two timed passes each in the order given, channels-last, channels-last, given."""
    xl = channels_last(x)
    with torch.inference_mode():
        model(x)
        model(xl)
        times = {True: 0.0, False: 0.0}
        for last in (False, True, True, False):
            t0 = time.perf_counter()
            model(xl if last else x)
            times[last] += time.perf_counter() - t0
    return times[False], times[True]


def prefers_channels_last(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``"auto"`` feeds ``model`` the 4-D batch ``x`` channels-last: a one-off probe
    per model, image shape ``(C, H, W)``, dtype and thread count, cached for the model's
    lifetime and used for every batch size.

    The probe (:func:`_measure`: six inference-mode passes of the batch ``x`` itself) answers True only when
    channels-last took less than :data:`PROBE_MARGIN` times the default layout's time.
    Until a probe has run, and whenever one cannot (a model in training mode or with
    forward hooks, see :func:`probe_layout`), the answer is False. A channels-last probe
    pass that fails with a stride error marks the model incompatible."""
    per_model = _decisions.get(model)
    key = _probe_key(x)
    if per_model is not None and key in per_model:
        return per_model[key]
    if not _probe_allowed(model):
        return False
    xp = x.detach()  # the batch as given: wrappers (GAD's stacked models) check its size
    try:
        t_given, t_last = _measure(model, xp)
        decision = t_last < PROBE_MARGIN * t_given
    except RuntimeError as e:
        if not _is_layout_error(e) or not _runs_as_given(model, xp):
            raise
        _incompatible.add(model)
        decision = False
    _decisions.setdefault(model, {})[key] = decision
    return decision


def _runs_as_given(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``model`` runs on ``x`` in the default layout (then a stride error was the layout's)."""
    with torch.inference_mode():
        model(x)
    return True


def probe_layout(model: nn.Module, x: torch.Tensor) -> None:
    """Make the ``"auto"`` decision for ``x`` now (a public call does this before it
    registers any hook, so the probe can run); nothing outside ``"auto"`` on the CPU."""
    if _scope.get() is not None and _mode == "auto" and x.dim() == 4 and x.device.type == "cpu" \
            and model not in _incompatible:
        prefers_channels_last(model, x)


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
