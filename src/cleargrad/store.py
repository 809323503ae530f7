"""Results store: per-image metric values in SQLite, written as they are computed.

One row per ``(image_id, method, metric, settings_hash)`` (a UNIQUE key), inserted with
``INSERT OR IGNORE`` inside short transactions. A run that is killed at any point
(SIGKILL included) leaves only whole transactions behind, and rerunning the same
command skips the rows that are already there, so nothing is recomputed twice or
duplicated. The database is in WAL mode and every write retries while another process
holds the lock, so several processes (``torchrun`` ranks) can share one file.

Besides the values the store keeps what a report needs: the images (label, class name),
overlay PNGs, files that were skipped as unreadable, the run settings and the versions;
for the gallery images the input (PNG) and each method's 2-D map (float16), and the
per-image curves of curve metrics (insertion, deletion), so the report can draw maps on
one colour scale, region hulls and mean curves.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sqlite3
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError, DataError

__all__ = ["ResultRow", "ResultStore", "settings_hash"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    settings_hash TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    versions TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    image_id TEXT PRIMARY KEY,
    label INTEGER,
    class_name TEXT,
    source TEXT
);
CREATE TABLE IF NOT EXISTS results (
    image_id TEXT NOT NULL,
    method TEXT NOT NULL,
    metric TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    value REAL,
    target INTEGER,
    created REAL NOT NULL,
    UNIQUE (image_id, method, metric, settings_hash)
);
CREATE TABLE IF NOT EXISTS metrics (
    name TEXT PRIMARY KEY,
    direction TEXT NOT NULL,
    category TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS overlays (
    image_id TEXT NOT NULL,
    method TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    png BLOB NOT NULL,
    UNIQUE (image_id, method, settings_hash)
);
CREATE TABLE IF NOT EXISTS inputs (
    image_id TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    png BLOB NOT NULL,
    UNIQUE (image_id, settings_hash)
);
CREATE TABLE IF NOT EXISTS maps (
    image_id TEXT NOT NULL,
    method TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (image_id, method, settings_hash)
);
CREATE TABLE IF NOT EXISTS curves (
    image_id TEXT NOT NULL,
    method TEXT NOT NULL,
    metric TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (image_id, method, metric, settings_hash)
);
CREATE TABLE IF NOT EXISTS skipped (
    source TEXT PRIMARY KEY,
    reason TEXT NOT NULL
);
"""


def settings_hash(settings: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable settings dict (key order ignored)."""
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ResultRow:
    """One per-image metric value. ``value`` is None where the metric is undefined."""

    image_id: str
    method: str
    metric: str
    value: float | None
    target: int | None = None


_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_store_path(path: Path) -> None:
    """Refuse a folder, or an existing file that is not SQLite (never overwritten)."""
    if path.is_dir():
        raise ConfigError(
            f"the results store {path} is a folder; give a file path such as {path / 'results.sqlite'}"
        )
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_HEADER))
        if head != _SQLITE_HEADER:
            raise DataError(
                f"{path} is not a cleargrad results store (not an SQLite file); give the .sqlite file "
                "written by `cleargrad evaluate --store` or `cleargrad demo`, or a new path to create one"
            )


class ResultStore:
    """A SQLite results file shared safely between processes.

    Args:
        path: the ``.sqlite`` file (created with its folder if missing).
        timeout: seconds a write keeps retrying while the database is locked.
    """

    def __init__(self, path: str | Path, timeout: float = 120.0) -> None:
        self.path = Path(path)
        _check_store_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._conn = sqlite3.connect(str(self.path), timeout=min(timeout, 30.0), isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._retry(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
        self._retry(lambda: self._conn.executescript(_SCHEMA))

    # context manager ---------------------------------------------------------------
    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # writing -------------------------------------------------------------------------
    def _retry(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, retrying with jittered back-off while SQLite reports a lock."""
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as e:
                msg = str(e).lower()
                if ("locked" not in msg and "busy" not in msg) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)

    def _transaction(self, statements: Sequence[tuple[str, Iterable[Sequence[Any]]]]) -> None:
        """Execute ``(sql, rows)`` pairs in one IMMEDIATE transaction (all or nothing)."""
        materialised = [(sql, [tuple(r) for r in rows]) for sql, rows in statements]

        def run() -> None:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in materialised:
                    cur.executemany(sql, rows)
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    cur.execute("ROLLBACK")
                raise

        self._retry(run)

    def record_run(self, settings: dict[str, Any], versions: dict[str, str]) -> str:
        """Store the run settings (once per hash); returns the settings hash."""
        h = settings_hash(settings)
        blob = json.dumps(settings, sort_keys=True, default=str)
        self._transaction(
            [
                (
                    "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?)",
                    [(h, blob, json.dumps(versions, sort_keys=True), time.time())],
                )
            ]
        )
        return h

    def add_images(self, images: Iterable[tuple[str, int | None, str | None, str | None]]) -> None:
        """Record ``(image_id, label, class_name, source)`` rows (first write wins)."""
        self._transaction([("INSERT OR IGNORE INTO images VALUES (?, ?, ?, ?)", images)])

    def add_metric_info(self, infos: Iterable[tuple[str, str, str, str]]) -> None:
        """Record ``(name, direction, category, summary)`` of metrics (for the report)."""
        self._transaction([("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)", infos)])

    def add_skipped(self, items: Iterable[tuple[str, str]]) -> None:
        """Record ``(source, reason)`` of input files that could not be read."""
        self._transaction([("INSERT OR REPLACE INTO skipped VALUES (?, ?)", items)])

    def add_results(
        self,
        rows: Iterable[ResultRow],
        settings: str,
        curves: Iterable[tuple[str, str, str, Sequence[float]]] = (),
    ) -> None:
        """Insert rows in one transaction; rows already stored are left as they are.

        ``curves``: ``(image_id, method, metric, values)`` per-image curves of the same
        rows (insertion/deletion), written in the same transaction.
        """
        now = time.time()
        curve_rows = [
            (i, m, mt, settings, sqlite3.Binary(array("d", [float(v) for v in c]).tobytes()))
            for i, m, mt, c in curves
        ]
        data = [
            (
                r.image_id,
                r.method,
                r.metric,
                settings,
                None if r.value is None or not math.isfinite(r.value) else float(r.value),
                r.target,
                now,
            )
            for r in rows
        ]
        self._transaction(
            [
                ("INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)", data),
                ("INSERT OR IGNORE INTO curves VALUES (?, ?, ?, ?, ?)", curve_rows),
            ]
        )

    def add_overlays(self, items: Iterable[tuple[str, str, bytes]], settings: str) -> None:
        """Store ``(image_id, method, png_bytes)`` overlays for the report gallery."""
        data = [(i, m, settings, sqlite3.Binary(png)) for i, m, png in items]
        self._transaction([("INSERT OR IGNORE INTO overlays VALUES (?, ?, ?, ?)", data)])

    def add_inputs(self, items: Iterable[tuple[str, bytes]], settings: str) -> None:
        """Store ``(image_id, png_bytes)`` of the model inputs shown in the report gallery."""
        data = [(i, settings, sqlite3.Binary(png)) for i, png in items]
        self._transaction([("INSERT OR IGNORE INTO inputs VALUES (?, ?, ?)", data)])

    def add_maps(self, items: Iterable[tuple[str, str, Any]], settings: str) -> None:
        """Store ``(image_id, method, map)`` 2-D maps (anything numpy reads as ``(H, W)``),
        as float16, for the report gallery."""
        import numpy as np

        data = []
        for i, m, a in items:
            arr = np.asarray(a, dtype=np.float16)
            if arr.ndim != 2:
                raise ValueError(f"a stored map must be 2-D, got shape {arr.shape}")
            data.append((i, m, settings, arr.shape[0], arr.shape[1], sqlite3.Binary(arr.tobytes())))
        self._transaction([("INSERT OR IGNORE INTO maps VALUES (?, ?, ?, ?, ?, ?)", data)])

    # reading -------------------------------------------------------------------------
    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._retry(lambda: self._conn.execute(sql, tuple(args)).fetchall())

    def done(self, settings: str, method: str | None = None) -> set[tuple[str, str, str]]:
        """The ``(image_id, method, metric)`` keys already stored for ``settings``."""
        sql = "SELECT image_id, method, metric FROM results WHERE settings_hash = ?"
        args: list[Any] = [settings]
        if method is not None:
            sql += " AND method = ?"
            args.append(method)
        return {tuple(r) for r in self._query(sql, args)}

    def has_overlay(self, settings: str) -> set[tuple[str, str]]:
        """The ``(image_id, method)`` pairs that already have an overlay."""
        rows = self._query("SELECT image_id, method FROM overlays WHERE settings_hash = ?", [settings])
        return {(a, b) for a, b in rows}

    def results(self, settings: str | None = None) -> list[ResultRow]:
        """Every stored row (optionally of one settings hash), sorted by key."""
        sql = "SELECT image_id, method, metric, value, target FROM results"
        args: list[Any] = []
        if settings is not None:
            sql += " WHERE settings_hash = ?"
            args.append(settings)
        sql += " ORDER BY method, metric, image_id"
        return [ResultRow(*r) for r in self._query(sql, args)]

    def settings_with_results(self) -> set[str]:
        """The settings hashes that have at least one result row."""
        return {r[0] for r in self._query("SELECT DISTINCT settings_hash FROM results")}

    def count(self) -> int:
        """Number of result rows."""
        return int(self._query("SELECT COUNT(*) FROM results")[0][0])

    def images(self) -> dict[str, tuple[int | None, str | None, str | None]]:
        """``image_id -> (label, class_name, source)``."""
        return {r[0]: (r[1], r[2], r[3]) for r in self._query("SELECT * FROM images")}

    def metric_info(self) -> dict[str, tuple[str, str, str]]:
        """``metric name -> (direction, category, summary)``."""
        return {r[0]: (r[1], r[2], r[3]) for r in self._query("SELECT * FROM metrics")}

    def skipped(self) -> list[tuple[str, str]]:
        """``(source, reason)`` of the files that were skipped."""
        return [(a, b) for a, b in self._query("SELECT source, reason FROM skipped ORDER BY source")]

    def overlays(self, limit_images: int | None = None) -> list[tuple[str, str, bytes]]:
        """``(image_id, method, png)`` for the first ``limit_images`` images (by id)."""
        rows = self._query("SELECT image_id, method, png FROM overlays ORDER BY image_id, method")
        if limit_images is not None:
            keep = sorted({r[0] for r in rows})[:limit_images]
            rows = [r for r in rows if r[0] in set(keep)]
        return [(a, b, bytes(c)) for a, b, c in rows]

    def inputs(self, settings: str) -> dict[str, bytes]:
        """``image_id -> png`` of the stored gallery inputs of ``settings``."""
        rows = self._query("SELECT image_id, png FROM inputs WHERE settings_hash = ?", [settings])
        return {a: bytes(b) for a, b in rows}

    def maps(self, settings: str) -> dict[tuple[str, str], Any]:
        """``(image_id, method) -> (H, W) float32 array`` of the stored maps of ``settings``."""
        import numpy as np

        rows = self._query(
            "SELECT image_id, method, height, width, data FROM maps WHERE settings_hash = ?", [settings]
        )
        return {
            (i, m): np.frombuffer(bytes(d), dtype=np.float16).reshape(h, w).astype(np.float32)
            for i, m, h, w, d in rows
        }

    def curves(self, settings: str, metric: str | None = None) -> dict[tuple[str, str, str], list[float]]:
        """``(image_id, method, metric) -> curve`` of ``settings`` (optionally one metric)."""
        sql = "SELECT image_id, method, metric, data FROM curves WHERE settings_hash = ?"
        args: list[Any] = [settings]
        if metric is not None:
            sql += " AND metric = ?"
            args.append(metric)
        return {(i, m, mt): array("d", bytes(d)).tolist() for i, m, mt, d in self._query(sql, args)}

    def runs(self) -> list[tuple[str, dict[str, Any], dict[str, str], float]]:
        """``(settings_hash, settings, versions, created)`` of every recorded run."""
        out = []
        for h, s, v, c in self._query("SELECT settings_hash, settings, versions, created FROM runs ORDER BY created"):
            out.append((h, json.loads(s), json.loads(v), c))
        return out
