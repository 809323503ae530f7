"""Griffe extension for the API reference: the docstrings are written with Sphinx roles
(:class:`~cleargrad.X`, :func:`f`, :meth:`.m`); turn each into a code span that links to
its target when the target is documented (an optional autorefs reference: no warning, and
plain code, when it is not). reST double backticks are Markdown code spans already."""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|obj|data|exc|const|ref):`([^`]+)`")


def _replace(m: re.Match[str], scope: str) -> str:
    text = m.group(1).strip()
    title = None
    if "<" in text and text.endswith(">"):  # :class:`title <target>`
        title, text = text[:-1].split("<", 1)
        title = title.strip()
    short = text.startswith("~")
    target = text.lstrip("~.").removesuffix("()")
    shown = title or (target.rsplit(".", 1)[-1] if short else target)
    ident = target if target.startswith("cleargrad") else f"{scope}.{target}"
    return (f'<autoref identifier="{html.escape(ident)}" optional>'
            f"<code>{html.escape(shown)}</code></autoref>")


def convert(text: str, scope: str) -> str:
    return _ROLE.sub(lambda m: _replace(m, scope), text)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring once it is loaded."""

    def on_object(self, *, obj: Any, **kwargs: Any) -> None:
        doc = getattr(obj, "docstring", None)
        if doc is not None and ":" in doc.value:
            scope = obj.module.path if obj.kind.value != "module" else obj.path
            doc.value = convert(doc.value, scope)
