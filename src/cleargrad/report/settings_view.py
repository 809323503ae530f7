"""Run settings as readable rows: nested dictionaries flattened to dotted keys, lists and
small dictionaries written out as text (no Python reprs)."""

from __future__ import annotations

from typing import Any

__all__ = ["settings_rows", "value_text"]


def value_text(v: Any) -> str:
    """A settings value as text: ``None`` → ``–``, booleans as yes/no, floats to 6
    significant digits, lists comma-separated, dictionaries as ``key = value`` pairs."""
    if v is None:
        return "\u2013"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(value_text(x) for x in v) if v else "(none)"
    if isinstance(v, dict):
        return "; ".join(f"{k} = {value_text(x)}" for k, x in sorted(v.items())) if v else "(none)"
    return str(v)


def settings_rows(settings: dict[str, Any], prefix: str = "", depth: int = 1) -> list[tuple[str, str]]:
    """``(key, text)`` rows: dictionaries are opened up to ``depth`` levels (``a.b``),
    deeper ones are written inline by :func:`value_text`."""
    rows: list[tuple[str, str]] = []
    for k in sorted(settings):
        v = settings[k]
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and depth > 0:
            rows += settings_rows(v, key + ".", depth - 1)
        else:
            rows.append((key, value_text(v)))
    return rows
