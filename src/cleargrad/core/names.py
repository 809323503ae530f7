"""How user-typed names are normalised before a look-up (one home for the rule of each
kind of name)."""

from __future__ import annotations

__all__ = ["dashed_key", "method_key", "snake_key"]


def snake_key(name: str) -> str:
    """``" Integrated-Gradients "`` -> ``"integrated_gradients"``: the key of a metric,
    strategy or option name (stripped, lower case, ``-`` as ``_``)."""
    return name.strip().lower().replace("-", "_")


def method_key(name: str) -> str:
    """The key of a method name or alias: :func:`snake_key` with spaces as ``_`` too."""
    return snake_key(name).replace(" ", "_")


def dashed_key(name: object) -> str:
    """``"Fashion_MNIST"`` -> ``"fashion-mnist"``: the key of a model or data set name
    (stripped, lower case, ``_`` as ``-``)."""
    return str(name).strip().lower().replace("_", "-")
