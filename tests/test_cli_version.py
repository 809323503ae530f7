"""`cleargrad --version` prints the version (it used to answer "Missing command.", exit 2),
and the version has one source: ``cleargrad.__version__``, which pyproject.toml reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cleargrad as cg
from cleargrad.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_version_option() -> None:
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0, r.output
    assert r.output == f"cleargrad {cg.__version__}\n"


def test_version_from_the_console_entry_point() -> None:
    r = subprocess.run([sys.executable, "-m", "cleargrad", "--version"], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout.strip()) == (0, f"cleargrad {cg.__version__}"), r.stderr


def test_one_version_source() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (CI's)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cleargrad.__version__"}
    assert f"## {cg.__version__}" in (ROOT / "CHANGELOG.md").read_text()
