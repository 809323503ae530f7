"""Public calls that need gradients, also under an ambient ``torch.inference_mode()``.

A user serving explanations often wraps the whole request in ``torch.inference_mode()``
(or ``torch.no_grad()``). Gradient methods then still work: :func:`gradient_call`
leaves inference mode for the duration of the call (the methods enable gradients
themselves where they need them, so an ambient ``no_grad`` is harmless), and
:func:`normal_tensor` copies the *inference tensors* the caller made inside inference
mode (the input, ``baselines=``, ``references=``...), which autograd cannot record,
into ordinary tensors. What cannot be copied for the caller (parameters or buffers of
a model created or loaded inside inference mode) raises an :class:`ExplanationError`
saying what to do, never a silent all-zero map.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..errors import InputError, ModelStateError

__all__ = ["gradient_call", "normal_tensor", "normal_options"]

_MARKERS = ("inference tensor", "Inference tensor")


def normal_tensor(t: Any) -> Any:
    """``t`` as an ordinary tensor when it is an inference tensor (a copy); else ``t`` itself.

    Call inside :func:`gradient_call` (a copy made inside inference mode would be an
    inference tensor again).
    """
    if isinstance(t, torch.Tensor) and t.is_inference():
        return t.clone()
    return t


def normal_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with every inference-tensor value copied by :func:`normal_tensor`."""
    if not any(isinstance(v, torch.Tensor) and v.is_inference() for v in options.values()):
        return options
    return {k: normal_tensor(v) for k, v in options.items()}


def _inference_tensors(model: nn.Module) -> list[str]:
    named = list(model.named_parameters()) + list(model.named_buffers())
    return [name for name, t in named if t.is_inference()]


@contextmanager
def gradient_call(model: nn.Module) -> Iterator[None]:
    """Run a public call that needs gradients outside any ambient inference mode.

    Raises:
        ModelStateError: the model's parameters or buffers are inference tensors
            (the model was created or loaded inside ``torch.inference_mode()``).
        InputError: another tensor given to the call is one and could not be copied.
    """
    try:
        with torch.inference_mode(False):
            yield
    except RuntimeError as e:
        if not any(m in str(e) for m in _MARKERS):
            raise
        bad = _inference_tensors(model)
        if bad:
            raise ModelStateError(
                f"the model's tensors {', '.join(repr(b) for b in bad[:3])}{', ...' if len(bad) > 3 else ''} were "
                "created inside torch.inference_mode(), so autograd cannot compute the gradients this method "
                "needs. Create or load the model outside inference mode (wrapping only the explanation call in "
                "inference mode is fine), or replace them once with copies made outside it: "
                "`with torch.inference_mode(False): model.load_state_dict({k: v.clone() for k, v in "
                "model.state_dict().items()})`"
            ) from e
        raise InputError(
            "a tensor given to this call was created inside torch.inference_mode(), and autograd cannot use it "
            f"for gradients ({str(e).splitlines()[0]}). Create it outside inference mode, or pass "
            "`t.clone()` made outside it"
        ) from e
