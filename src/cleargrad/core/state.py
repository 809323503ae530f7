"""Leave the model exactly as it was found.

:func:`preserved_state` is entered by every public call. It records every module's
``training`` flag, every parameter's ``requires_grad`` flag and ``.grad`` and (when the
caller allowed training mode, where BatchNorm would update its statistics) every
buffer, and restores all of them in ``finally``, so also when the call raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import ModelStateError

__all__ = ["preserved_state", "check_eval_mode", "unique_parameters"]


def unique_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The model's parameters, each once (shared parameters are not repeated)."""
    return list(model.parameters())


def check_eval_mode(model: nn.Module, allow_train_mode: bool = False) -> None:
    """Raise :class:`ModelStateError` when a module is in training mode.

    BatchNorm and Dropout make explanations of a model in training mode depend on
    the batch and on chance; call ``model.eval()`` first, or pass
    ``allow_train_mode=True`` if that is really what you want.
    """
    if allow_train_mode or not any(m.training for m in model.modules()):
        return
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ModelStateError(
            f"the model is in training mode ({len(training)} modules, e.g. {training[0]!r}); "
            "call model.eval() before explaining it, or pass allow_train_mode=True to explain "
            "it as it is (BatchNorm statistics are then restored after the call)"
        )


@contextmanager
def preserved_state(
    model: nn.Module, *, allow_train_mode: bool = False, freeze_params: bool = True
) -> Iterator[None]:
    """Context manager that restores the model's flags, grads and buffers on exit.

    Args:
        model: the model to guard.
        allow_train_mode: accept a model in training mode (otherwise raise
            :class:`ModelStateError`). Buffers are then snapshotted and restored.
        freeze_params: set ``requires_grad=False`` on every parameter for the
            duration, so that backward passes compute no parameter gradients.
    """
    check_eval_mode(model, allow_train_mode)
    modules = list(model.modules())
    training = [m.training for m in modules]
    params = unique_parameters(model)
    requires = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
    if any(training):
        buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        if freeze_params:
            for p in params:
                p.requires_grad_(False)
        yield
    finally:
        # write back only what changed: a call's fixed cost stays small on big models
        for m, t in zip(modules, training):
            if m.training != t:
                m.training = t
        for p, r, g in zip(params, requires, grads):
            if p.requires_grad != r:
                p.requires_grad_(r)
            if p.grad is not g:
                p.grad = g
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
