"""Atomic writes, deterministically: a write that dies midway leaves the previous file
whole, and a torn overlay of an older version is redone on resume."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from cli_support import make_images, make_model_file, one_thread
from typer.testing import CliRunner

from cleargrad.atomic import atomic_write, is_complete_png, is_temp_file
from cleargrad.cli import app
from cleargrad.store import ResultRow, ResultStore


class Killed(BaseException):
    """Stands for the process dying mid-write."""


def _store(path: Path, n: int = 400) -> Path:
    with ResultStore(path) as st:
        h = st.record_run({"run": 1}, {})
        st.add_metric_info([("ins", "higher", "faithfulness", "")])
        st.add_results([ResultRow(f"i{k:04d}", "saliency", "ins", k / n, 0) for k in range(n)], h)
    return path


def test_an_export_dying_midway_leaves_the_previous_export_whole(tmp_path: Path, monkeypatch) -> None:
    from cleargrad.cli import export as export_mod

    store = _store(tmp_path / "s.sqlite")
    out = tmp_path / "s.csv"
    export_mod.export_store(store, "csv", out)
    before = out.read_bytes()
    real = csv.writer

    class Dying:
        def __init__(self, f):
            self.w = real(f)

        def writerow(self, row):
            self.w.writerow(row)

        def writerows(self, rows):
            for k, row in enumerate(rows):
                if k == 100:
                    raise Killed
                self.w.writerow(row)

    monkeypatch.setattr(export_mod.csv, "writer", Dying)
    with pytest.raises(Killed):
        export_mod.export_store(store, "csv", out)
    assert out.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if is_temp_file(p)]


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    p = tmp_path / "run.json"
    atomic_write(p, '{"a": 1}')

    def dying(tmp: Path) -> None:
        tmp.write_text('{"a": ')
        raise Killed

    with pytest.raises(Killed):
        atomic_write(p, dying)
    assert p.read_text() == '{"a": 1}'
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run.json"]


def test_a_torn_overlay_is_redone_on_resume(tmp_path: Path) -> None:
    images = make_images(tmp_path, per_class=2, corrupt=False)
    model = make_model_file(tmp_path)
    store, overlays = tmp_path / "s.sqlite", tmp_path / "ov"
    args = ["evaluate", "--model", f"{model}:factory", "--dataset", str(images), "--methods", "saliency",
            "--metrics", "sparseness", "--store", str(store), "--overlays", str(overlays), "-q"]  # fmt: skip
    with one_thread():
        assert CliRunner().invoke(app, args).exit_code == 0
    pngs = sorted(overlays.rglob("*.png"))
    assert pngs and all(is_complete_png(p) for p in pngs)
    torn = pngs[0]
    torn.write_bytes(torn.read_bytes()[:40])  # what an in-place write killed midway leaves
    assert not is_complete_png(torn)
    with one_thread():
        r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert is_complete_png(torn)
