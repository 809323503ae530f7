"""The SQLite results store: unique rows, atomic transactions, several writers."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest

from cleargrad.store import ResultRow, ResultStore, settings_hash


def test_rows_are_unique_and_reinserting_keeps_the_first_value(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as st:
        h = st.record_run({"a": 1}, {"torch": "x"})
        st.add_results([ResultRow("img0", "saliency", "insertion", 0.25, 1)], h)
        st.add_results(
            [ResultRow("img0", "saliency", "insertion", 0.99, 1), ResultRow("img1", "saliency", "insertion", 0.5, 0)], h
        )
        got = [(r.image_id, r.value) for r in st.results(h)]
        assert got == [("img0", 0.25), ("img1", 0.5)]
        assert st.done(h) == {("img0", "saliency", "insertion"), ("img1", "saliency", "insertion")}
        # the same key under other settings is a different row
        st.add_results([ResultRow("img0", "saliency", "insertion", 0.7)], "other")
        assert st.count() == 3
        assert st.settings_with_results() == {h, "other"}


def test_nan_and_inf_are_stored_as_undefined(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as st:
        st.add_results([ResultRow("a", "m", "rc", float("nan")), ResultRow("b", "m", "rc", float("inf"))], "h")
        assert [r.value for r in st.results("h")] == [None, None]


def test_a_failing_transaction_leaves_nothing(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as st:
        row = ("a", "m", "x", "h", 1.0, 0, 0.0)
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            st._transaction(
                [
                    ("INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)", [row]),
                    ("INSERT INTO nope VALUES (?)", [(1,)]),
                ]
            )
        assert st.count() == 0  # the first statement was rolled back with the second
        st.add_results([ResultRow("a", "m", "x", 1.0)], "h")  # the connection is usable afterwards
        assert st.count() == 1


def test_settings_hash_ignores_key_order_and_sees_values() -> None:
    assert settings_hash({"a": 1, "b": [1, 2]}) == settings_hash({"b": [1, 2], "a": 1})
    assert settings_hash({"a": 1}) != settings_hash({"a": 2})


def test_wal_mode_and_unique_key(tmp_path: Path) -> None:
    ResultStore(tmp_path / "r.sqlite").close()
    con = sqlite3.connect(str(tmp_path / "r.sqlite"))
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.execute("INSERT INTO results VALUES ('a', 'm', 'x', 'h', 1.0, 0, 0)")
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO results VALUES ('a', 'm', 'x', 'h', 2.0, 0, 0)")
    con.close()


def _writer(path: str, worker: int, n: int) -> None:
    with ResultStore(path) as st:
        for i in range(n):
            # every worker writes its own rows and also rows another worker writes
            st.add_results(
                [ResultRow(f"w{worker}-{i}", "m", "x", float(i)), ResultRow(f"shared-{i}", "m", "x", float(i))], "h"
            )


def test_concurrent_writers_lose_nothing_and_duplicate_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "r.sqlite")
    ResultStore(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 40)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with ResultStore(path) as st:
        ids = [r.image_id for r in st.results("h")]
    assert len(ids) == len(set(ids)) == 3 * 40 + 40


def test_overlays_images_skipped_and_runs_round_trip(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as st:
        h = st.record_run({"model": "x"}, {"torch": "2"})
        st.add_images([("b", 1, "<b>", "/p/b.png"), ("a", 0, "cat", "/p/a.png")])
        st.add_overlays([("b", "m", b"\x89PNG-b"), ("a", "m", b"\x89PNG-a")], h)
        st.add_skipped([("/p/bad.png", "unreadable")])
        assert st.images()["b"] == (1, "<b>", "/p/b.png")
        assert st.overlays(limit_images=1) == [("a", "m", b"\x89PNG-a")]
        assert st.has_overlay(h) == {("a", "m"), ("b", "m")}
        assert st.skipped() == [("/p/bad.png", "unreadable")]
        ((hh, settings, versions, _),) = st.runs()
        assert (hh, settings, versions) == (h, {"model": "x"}, {"torch": "2"})
