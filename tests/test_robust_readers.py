"""Readers never write: ``report`` and ``export`` open a store read-only, refuse an output
path that is the store, and leave a SQLite file that is not a store exactly as it was;
a store keeps image metadata per run."""

from __future__ import annotations

import csv
import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cleargrad.cli import app
from cleargrad.store import ResultRow, ResultStore

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_store(path: Path) -> Path:
    with ResultStore(path) as st:
        h = st.record_run({"model": "m", "dataset": "d"}, {"torch": "x"})
        st.add_metric_info([("ins", "higher", "faithfulness", "Insertion")])
        st.add_images([("i0", 0, "cat", "/data/i0.png"), ("i1", 1, "dog", "/data/i1.png")], h)
        st.add_results([ResultRow("i0", "saliency", "ins", 0.5, 0), ResultRow("i1", "saliency", "ins", 0.25, 1)], h)
    return path


def _is_store(path: Path) -> bool:
    with ResultStore(path, readonly=True) as st:
        return st.count() == 2


def test_export_of_a_store_named_csv_never_overwrites_the_store(tmp_path: Path) -> None:
    store = _make_store(tmp_path / "res.csv")
    before = _digest(store)
    r = invoke("export", str(store))
    assert r.exit_code == 0, r.output
    assert _digest(store) == before and _is_store(store)
    out = tmp_path / "res.export.csv"
    assert out.is_file() and len(list(csv.DictReader(out.open()))) == 2


@pytest.mark.parametrize("verb", ["export", "report"])
def test_an_output_path_equal_to_the_store_is_refused(tmp_path: Path, verb: str) -> None:
    store = _make_store(tmp_path / "s.sqlite")
    before = _digest(store)
    for out in (store, tmp_path / "." / "s.sqlite"):
        r = invoke(verb, str(store), "--out", str(out))
        assert r.exit_code != 0
        assert "is the input file" in r.output and "Traceback" not in r.output
        assert _digest(store) == before and _is_store(store)


def test_report_on_a_sqlite_file_that_is_not_a_store_leaves_it_as_it_was(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE notes (x TEXT)")
    con.execute("INSERT INTO notes VALUES ('keep me')")
    con.commit()
    con.close()
    before = _digest(other)
    for verb in ("report", "export"):
        r = invoke(verb, str(other), "--out", str(tmp_path / f"o.{verb}"))
        assert r.exit_code != 0
        assert "not a cleargrad results store" in r.output
        assert _digest(other) == before
    con = sqlite3.connect(other)
    assert [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["notes"]
    con.close()
    # an evaluate-style writer refuses it too (never adds its tables to someone else's database)
    with pytest.raises(Exception, match="not a cleargrad results store"):
        ResultStore(other)
    assert _digest(other) == before


def test_report_and_export_read_a_store_on_read_only_media(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that cannot be written (the store opened with ``immutable=1``)."""
    store = _make_store(tmp_path / "ro" / "s.sqlite")
    for side in ("-wal", "-shm"):
        assert not Path(str(store) + side).exists()
    real = os.access
    folder = store.parent.resolve()

    def access(path, mode, *a, **k):  # the read-only medium: nothing under it is writable
        if mode & os.W_OK and Path(path).resolve() in (folder, store.resolve()):
            return False
        return real(path, mode, *a, **k)

    monkeypatch.setattr(os, "access", access)
    store.chmod(0o444)
    before = _digest(store)
    r = invoke("report", str(store), "--out", str(tmp_path / "r.html"))
    assert r.exit_code == 0, r.output
    r = invoke("export", str(store), "--out", str(tmp_path / "r.csv"))
    assert r.exit_code == 0, r.output
    assert _digest(store) == before
    assert sorted(p.name for p in store.parent.iterdir()) == ["s.sqlite"]


def test_two_runs_in_one_store_keep_their_own_image_rows(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    with ResultStore(store) as st:
        h1 = st.record_run({"run": 1}, {})
        h2 = st.record_run({"run": 2}, {})
        st.add_metric_info([("ins", "higher", "faithfulness", "")])
        st.add_images([("a.png", 0, "cat", "/one/a.png")], h1)
        st.add_images([("a.png", 1, "dog", "/two/a.png")], h2)
        st.add_results([ResultRow("a.png", "saliency", "ins", 0.5, 0)], h1)
        st.add_results([ResultRow("a.png", "saliency", "ins", 0.7, 1)], h2)
        assert st.images(h1)["a.png"] == (0, "cat", "/one/a.png")
        assert st.images(h2)["a.png"] == (1, "dog", "/two/a.png")
    r = invoke("export", str(store), "--out", str(tmp_path / "e.csv"))
    assert r.exit_code == 0, r.output
    rows = csv.DictReader((tmp_path / "e.csv").open())
    got = {(row["settings_hash"], row["source"], row["class_name"]) for row in rows}
    assert got == {(h1, "/one/a.png", "cat"), (h2, "/two/a.png", "dog")}


def test_an_old_store_without_per_run_images_is_still_readable(tmp_path: Path) -> None:
    """A store of the previous schema (``images`` keyed by id alone, no ``run_images``)."""
    store = _make_store(tmp_path / "old.sqlite")
    con = sqlite3.connect(store)
    con.execute("INSERT INTO images SELECT image_id, label, class_name, source FROM run_images")
    con.execute("DROP TABLE run_images")
    con.commit()
    con.close()
    r = invoke("export", str(store), "--out", str(tmp_path / "e.csv"))
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((tmp_path / "e.csv").open()))
    assert {row["source"] for row in rows} == {"/data/i0.png", "/data/i1.png"}
    r = invoke("report", str(store), "--out", str(tmp_path / "r.html"))
    assert r.exit_code == 0, r.output
    con = sqlite3.connect(store)  # the reader added nothing
    assert "run_images" not in {t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
