"""The rule of docs/guides/development.md ("Types"): a ``# type: ignore`` in ``src/`` names
its error code and says why on the same line; mypy's configuration checks all of
``src/cleargrad`` (no ``ignore_errors``). ``make typecheck`` runs mypy itself."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")


def test_every_ignore_names_its_code_and_a_reason() -> None:
    bad = []
    for path in sorted((ROOT / "src" / "cleargrad").rglob("*.py")):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = _IGNORE.search(line)
            if m and (not m.group("codes") or not re.match(r"\s*#\s*\S", m.group("rest"))):
                bad.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, "a type: ignore needs [code] and '# reason':\n" + "\n".join(bad)


def test_mypy_checks_the_whole_package() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert cfg["files"] == ["src/cleargrad"]
    assert cfg.get("warn_unused_ignores") is True
    overrides = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"].get("overrides", [])
    assert not any(o.get("ignore_errors") for o in [cfg, *overrides])
    assert "typecheck" in (ROOT / "Makefile").read_text().split("\ntest:")[1].split("\n\n")[0]
