"""Opt-in compiled forward passes for long evaluations (``torch.compile``), eager on failure.

A metric protocol forwards thousands of perturbed images through the same model with
few distinct batch shapes; compiling that forward pass can pay for its compile time
on a long run. Only the hook-free, gradient-free metric passes go through the compiled
module; explanations (hooks, gradients) keep the eager model, and so do Score-CAM's masked
passes (compiled, they moved metric values beyond float rounding). Whether compiling pays
depends on the model and the layout (measured: benchmarks/results/evaluate_pipeline.md,
sections 7 and 8).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["CompiledForward", "compiled_forward"]


class CompiledForward(nn.Module):
    """``model``'s forward through ``torch.compile``, falling back to eager on failure.

    The wrapped model is a submodule (its parameters, mode and flags are the model's
    own, so the metrics' state guard covers it). The first failure of compilation or
    of a compiled call (no C++ compiler, an unsupported operation, ...) prints one
    warning line and every later call runs eagerly. :attr:`fallback_reason` says why
    when that happened.
    """

    model: nn.Module
    _compiled: Callable[..., Any] | None
    _on_fallback: Callable[[str], None] | None

    def __init__(
        self,
        model: nn.Module,
        *,
        backend: str = "inductor",
        dynamic: bool | None = True,
        on_fallback: Callable[[str], None] | None = None,
        **options: Any,
    ):
        super().__init__()
        self.model = model
        self.backend = backend
        self.fallback_reason: str | None = None
        object.__setattr__(self, "_on_fallback", on_fallback)
        try:
            compiled = torch.compile(model, backend=backend, dynamic=dynamic, **options)
        except Exception as e:  # noqa: BLE001 - any failure means: run eagerly
            compiled = None
            self._fail(e)
        object.__setattr__(self, "_compiled", compiled)  # not a submodule: no second copy of the parameters

    def _fail(self, e: BaseException) -> None:
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        self.fallback_reason = reason
        if self._on_fallback is not None:
            self._on_fallback(reason)
        else:
            warnings.warn(f"torch.compile failed, running eagerly: {reason}", RuntimeWarning, stacklevel=3)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.fallback_reason is None and self._compiled is not None:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001
                self._fail(e)
        return self.model(*args, **kwargs)


def compiled_forward(model: nn.Module, compile: bool | str = True, **options: Any) -> nn.Module:
    """``model`` itself when ``compile`` is False, else a :class:`CompiledForward` of it.

    ``compile``: True (``torch.compile``'s default backend, inductor) or a backend name
    (``"aot_eager"``, ``"eager"``, ...). ``options`` go to ``torch.compile``.
    """
    if not compile:
        return model
    backend = "inductor" if compile is True else str(compile)
    return CompiledForward(model, backend=backend, **options)
