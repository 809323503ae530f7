"""The command line's ``--reshape`` text parsed into a reshape spec of
:mod:`cleargrad.core.tokens`."""

from __future__ import annotations

from ..core.tokens import CHANNELS_LAST_NAMES, ReshapeSpec, TokenGrid
from ..errors import ConfigError

__all__ = ["parse_reshape"]


def parse_reshape(text: str | None) -> ReshapeSpec:
    """A reshape spec from its command-line form: ``auto``, ``none``, ``channels_last``
    (``nhwc``), ``tokens`` (prefix and grid inferred), ``tokens:P`` (``P`` prefix tokens) or
    ``tokens:P:HxW``."""
    if text is None:
        return "auto"
    t = text.strip().lower()
    if t in ("auto", ""):
        return "auto"
    if t in ("none", "nchw", "channels_first"):
        return None
    if t in CHANNELS_LAST_NAMES:
        return "channels_last"
    head, _, rest = t.partition(":")
    if head == "tokens":
        if not rest:
            return TokenGrid(prefix=None)
        p, _, g = rest.partition(":")
        try:
            prefix = int(p) if p else None
            grid = None
            if g:
                h, sep, w = g.partition("x")
                if not sep:
                    raise ValueError
                grid = (int(h), int(w))
        except ValueError:
            raise ConfigError(f"--reshape {text!r}: write tokens:P or tokens:P:HxW (e.g. tokens:1:14x14)") from None
        return TokenGrid(prefix=prefix, grid=grid)
    raise ConfigError(
        f"unknown reshape {text!r}: use auto, none, channels_last, tokens, tokens:P or tokens:P:HxW"
    )
