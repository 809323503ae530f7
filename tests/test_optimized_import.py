"""Every module of the package imports under ``python -OO`` (docstrings stripped, so
``fn.__doc__`` is None): code that appends to a docstring at import time must cope.
``cleargrad.metrics.insertion_deletion`` raised ``TypeError`` there (found by mypy)."""

from __future__ import annotations

import subprocess
import sys

from cli_support import env

_WALK = """
import importlib, pkgutil
import cleargrad
failed = []
for info in pkgutil.walk_packages(cleargrad.__path__, "cleargrad."):
    try:
        importlib.import_module(info.name)
    except Exception as e:
        failed.append(f"{info.name}: {e!r}")
print("\\n".join(failed))
"""


def test_every_module_imports_with_docstrings_stripped() -> None:
    r = subprocess.run([sys.executable, "-OO", "-c", _WALK], capture_output=True, text=True, env=env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", r.stdout
