"""Docstring text for people: reST roles and literals as plain text, the first sentence
of a docstring (what ``cleargrad methods`` and the report show)."""

from __future__ import annotations

import re

__all__ = ["first_sentence", "plain_rst"]

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``(.+?)``")
_INTERPRETED = re.compile(r"(?<![\w`])`([^`]+)`(?![\w`])")
#: a full stop that ends a sentence: not "et al." / "e.g." / "i.e.", followed by a capital or the end
_END = re.compile(r"(?<!\bal)(?<!e\.g)(?<!i\.e)(?<!\bvs)\.(?=\s+[A-Z(\[]|\s*$)")


def plain_rst(text: str) -> str:
    """``text`` with reST markup as plain text: ``:class:`~a.B``` -> ``B``'s path as
    written (without ``~``), ````x```` -> ``x``, ```x``` -> ``x``."""
    text = _ROLE.sub(lambda m: m.group(1).strip(), text)
    text = _LITERAL.sub(r"\1", text)
    return _INTERPRETED.sub(r"\1", text)


def first_sentence(doc: str | None, fallback: str = "") -> str:
    """The first sentence of ``doc``'s first paragraph, on one line (the whole paragraph
    when no sentence ends in it); ``fallback`` when ``doc`` is empty."""
    lines = (doc or "").strip().splitlines()
    para: list[str] = []
    for line in lines:
        if not line.strip():
            break
        para.append(line.strip())
    text = " ".join(para)
    if not text:
        return fallback
    # literals may hold full stops ("``x.y``"): look for the end outside them
    masked = _LITERAL.sub(lambda m: "x" * len(m.group(0)), text)
    end = _END.search(masked)
    return text[: end.end()] if end else text
