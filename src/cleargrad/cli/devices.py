"""``--device``: ``auto`` picks CUDA when it is available, else the CPU."""

from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(text: str) -> torch.device:
    """``"auto"`` -> ``cuda`` if ``torch.cuda.is_available()`` else ``cpu``; any other
    text is a torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    t = text.strip().lower()
    if t == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(t)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"--device {text!r} is not a torch device (auto, cpu, cuda, cuda:0, ...): {e}") from None
