"""Leave the model exactly as it was found.

:func:`preserved_state` is entered by every public call. It records every module's
``training`` flag, every parameter's ``requires_grad`` flag and ``.grad`` and (when the
caller allowed training mode, where BatchNorm would update its statistics) every
buffer, and restores all of them in ``finally``, so also when the call raises.

Concurrent calls on one model (a threaded web service explaining it) are serialised
by a per-model re-entrant lock (:func:`model_lock`) held for the whole guarded call: one call's snapshot
must never record the frozen flags of another, and one call's hooks must never see
another's forward passes. Calls on different models run in parallel; nested calls
in one thread (a metric running an explanation) re-enter the lock. To explain in
parallel, give each thread its own copy of the model (``copy.deepcopy(model)``).

A model being trained by :func:`cleargrad.training.fit` (held in :func:`training_guard`)
cannot be explained from another thread: the explanation freezes and restores the very
flags and weights the optimiser is changing, so both would break. The call raises
:class:`ModelStateError` at once; ``fit`` likewise refuses a model that another thread is
explaining. Explain a copy, or after training.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import ModelStateError

__all__ = ["preserved_state", "check_eval_mode", "model_lock", "training_guard", "unique_parameters"]

#: id(key object) -> lock; an entry is dropped when its key object is collected
_locks: dict[int, threading.RLock] = {}
_locks_guard = threading.Lock()


#: id(lock key) -> ident of the thread training that model (see training_guard)
_training: dict[int, int] = {}


def _key(model: nn.Module) -> object:
    key: object = next(model.parameters(), None)
    return model if key is None else key


_BUSY_TRAINING = (
    "the model is being trained by another thread (cleargrad.training.fit); explaining it now would "
    "break both. Explain a copy (copy.deepcopy(model)) or wait until training ends"
)


def _check_not_trained_elsewhere(model: nn.Module) -> None:
    owner = _training.get(id(_key(model)))
    if owner is not None and owner != threading.get_ident():
        raise ModelStateError(_BUSY_TRAINING)


@contextmanager
def training_guard(model: nn.Module) -> Iterator[None]:
    """Mark ``model`` as being trained by this thread for the duration: cleargrad calls on it
    from other threads raise :class:`ModelStateError`, and so does entering this guard
    while another thread is explaining or training it. Calls from this thread (a loss that
    explains the model) go on."""
    k = id(_key(model))
    me = threading.get_ident()
    with _locks_guard:
        owner = _training.get(k)
        if owner is not None and owner != me:
            raise ModelStateError("the model is already being trained by another thread; train a copy")
        _training[k] = me  # set before the lock test below: an explanation entering later sees it
    lock = model_lock(model)
    if not lock.acquire(blocking=False):  # held by an explanation in another thread
        if owner is None:
            _training.pop(k, None)
        raise ModelStateError(
            "the model is being explained by another thread; training it now would break both. "
            "Train a copy (copy.deepcopy(model)) or wait until the explanation returns"
        )
    lock.release()
    try:
        yield
    finally:
        if owner is None:
            _training.pop(k, None)


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that serialises cleargrad's calls on ``model``.

    Keyed by the model's first parameter (the model itself when it has none), so a
    wrapper that adds no parameter in front of a model (``nn.Sequential(normalize,
    model)``, GAD's stacked models) shares the model's lock and cannot run at the same
    time as a call on the bare model.
    """
    key: object = next(model.parameters(), None)
    if key is None:
        key = model
    lock = _locks.get(id(key))
    if lock is None:
        with _locks_guard:
            lock = _locks.get(id(key))
            if lock is None:
                lock = _locks[id(key)] = threading.RLock()
                weakref.finalize(key, _locks.pop, id(key), None)
    return lock


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

    Holds :func:`model_lock` of ``model`` for the duration (concurrent calls on one
    model from several threads run one after the other).

    Args:
        model: the model to guard.
        allow_train_mode: accept a model in training mode (otherwise raise
            :class:`ModelStateError`). Buffers are then snapshotted and restored.
        freeze_params: set ``requires_grad=False`` on every parameter for the
            duration, so that backward passes compute no parameter gradients.
    """
    with model_lock(model):
        _check_not_trained_elsewhere(model)
        check_eval_mode(model, allow_train_mode)
        with _restored(model, allow_train_mode=allow_train_mode, freeze_params=freeze_params):
            yield


@contextmanager
def _restored(model: nn.Module, *, allow_train_mode: bool, freeze_params: bool) -> Iterator[None]:
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
                if p.is_inference():  # a model made in inference mode: only there may the flag go back on
                    with torch.inference_mode():
                        p.requires_grad_(r)
                else:
                    p.requires_grad_(r)
            if p.grad is not g:
                p.grad = g
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
