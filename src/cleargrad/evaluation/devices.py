"""``--device``: ``auto`` picks CUDA when it is available, else the CPU."""

from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["check_available", "resolve_device"]


def resolve_device(text: str) -> torch.device:
    """``"auto"`` -> ``cuda`` if ``torch.cuda.is_available()`` else ``cpu``; any other
    text is a torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    t = text.strip().lower()
    if t == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(t)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"--device {text!r} is not a torch device (auto, cpu, cuda, cuda:0, ...): {e}") from None
    check_available(dev, text)
    return dev


def check_available(dev: torch.device, text: str | None = None) -> None:
    """Refuse a device this machine does not have (a usage error, exit 2), before any
    model is built: ``cuda`` without a visible GPU, ``cuda:K`` past the last GPU, ``mps``
    off Apple silicon."""
    shown = text if text is not None else str(dev)
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(
                f"--device {shown}: PyTorch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                "use --device cpu, or --device auto to take a GPU only when there is one"
            )
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"--device {shown}: this machine has {n} CUDA GPU(s) (cuda:0..cuda:{n - 1})")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"--device {shown}: the Apple MPS backend is not available here; use --device cpu")
