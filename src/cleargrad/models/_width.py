"""Channel-count helpers for width multipliers."""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["check_width", "scaled", "make_divisible"]


def check_width(width: float) -> float:
    """Validate a width multiplier (a positive finite number) and return it as a float."""
    try:
        w = float(width)
    except (TypeError, ValueError):
        raise ConfigError(f"width must be a positive number, got {width!r}") from None
    if not w > 0 or w == float("inf"):
        raise ConfigError(f"width must be a positive number, got {width!r}")
    return w


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded to the nearest integer, at least 1."""
    return max(1, int(round(channels * width)))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``),
    never going more than 10% below ``value`` (the MobileNet channel rule)."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out
