"""Exception types raised by cleargrad.

Every error a user can cause with bad input is an :class:`ExplanationError`
subclass whose message says what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ExplanationError",
    "InputError",
    "TargetError",
    "LayerError",
    "ModelStateError",
    "ConfigError",
    "DataError",
    "ResourceError",
]


class ExplanationError(Exception):
    """Base class of every error raised by cleargrad for bad input or settings."""


class InputError(ExplanationError, ValueError):
    """The input tensor has the wrong rank, dtype, device or contains NaN/Inf."""


class TargetError(ExplanationError, ValueError):
    """The target is out of range, of the wrong type or length."""


class LayerError(ExplanationError, ValueError):
    """The requested layer does not exist, is not used, or has the wrong output shape."""


class ModelStateError(ExplanationError, RuntimeError):
    """The model is in a state the method cannot explain faithfully (e.g. training mode)."""


class ConfigError(ExplanationError, ValueError):
    """An option value is invalid (unknown method name, negative step count, ...)."""


class DataError(ExplanationError, RuntimeError):
    """A dataset, weights file or image cannot be found or read."""


class ResourceError(ExplanationError, MemoryError):
    """A chunk of work does not fit in the device's memory; the message names the
    ``batch_size`` setting to lower."""
