"""Arguments of intercepted torch calls (``TorchFunctionMode`` handlers): one home for
reading an argument by keyword or position and for widening a size argument to a tuple."""

from __future__ import annotations

from typing import Any

__all__ = ["call_arg", "int_tuple"]


def call_arg(args: tuple, kwargs: dict, name: str, pos: int, default: Any) -> Any:
    """Argument ``name`` of an intercepted torch call: by keyword, else at position ``pos``, else ``default``."""
    if name in kwargs:
        return kwargs[name]
    return args[pos] if len(args) > pos else default


def int_tuple(v: Any, d: int) -> list[int]:
    """A size argument (``stride``, ``padding``, ``dilation``) as ``d`` ints: a sequence as
    it is, one number repeated ``d`` times."""
    return [int(i) for i in v] if isinstance(v, (tuple, list)) else [int(v)] * d
