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
import os
import random
import sqlite3
import time
import urllib.parse
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
CREATE TABLE IF NOT EXISTS run_images (
    settings_hash TEXT NOT NULL,
    image_id TEXT NOT NULL,
    label INTEGER,
    class_name TEXT,
    source TEXT,
    UNIQUE (settings_hash, image_id)
);
CREATE TABLE IF NOT EXISTS layers (
    settings_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    layer TEXT NOT NULL,
    UNIQUE (settings_hash, method)
);
"""

_SCHEMA_TABLES = tuple(
    line.split()[5] for line in _SCHEMA.splitlines() if line.startswith("CREATE TABLE IF NOT EXISTS")
)

#: the tables every results store has (any version); a SQLite file without them is not a store
_STORE_TABLES = frozenset({"runs", "results"})


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
    """Refuse a folder, a device or other non-regular file, or an existing file that is not
    SQLite (never overwritten)."""
    if path.is_dir():
        raise ConfigError(
            f"the results store {path} is a folder; give a file path such as {path / 'results.sqlite'}"
        )
    if path.exists() and not path.is_file():
        raise ConfigError(
            f"the results store {path} is not a regular file (a device, pipe or socket); give a file path "
            "such as results.sqlite"
        )
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_HEADER))
        if head != _SQLITE_HEADER:
            raise DataError(
                f"{path} is not a cleargrad results store (not an SQLite file); give the .sqlite file "
                "written by `cleargrad evaluate --store` or `cleargrad demo`, or a new path to create one"
            )


def _readonly_uri(path: Path) -> str:
    """SQLite URI that opens ``path`` read-only; ``immutable=1`` where its folder cannot be
    written (read-only media: SQLite could not create the WAL index there)."""
    resolved = path.resolve()
    uri = f"file:{urllib.parse.quote(str(resolved))}?mode=ro"
    if not os.access(resolved.parent, os.W_OK):
        uri += "&immutable=1"
    return uri


def _damaged(path: Path, e: BaseException | str) -> DataError:
    return DataError(
        f"the results store {path} is damaged or truncated ({e}); restore it from a copy, or give a new "
        "--store path (and rerun to recompute)"
    )


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """``PRAGMA quick_check``: a damaged page raises :class:`DataError` naming the file."""
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        raise _damaged(path, e) from e
    if [tuple(r) for r in rows] != [("ok",)]:
        raise _damaged(path, "; ".join(str(r[0]) for r in rows[:3]))


def _not_a_store(path: Path) -> DataError:
    return DataError(
        f"{path} is an SQLite file but not a cleargrad results store (it has no 'results' and 'runs' "
        "tables); it was left as it was. Give the .sqlite file written by `cleargrad evaluate --store` "
        "or `cleargrad demo`"
    )


class ResultStore:
    """A SQLite results file shared safely between processes.

    Args:
        path: the ``.sqlite`` file (created with its folder if missing).
        timeout: seconds a write keeps retrying while the database is locked.
    """

    def __init__(self, path: str | Path, timeout: float = 120.0, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.timeout = timeout
        _check_store_path(self.path)
        if readonly:
            if not self.path.is_file():
                raise DataError(f"results store not found: {self.path}")
            try:
                self._conn = sqlite3.connect(_readonly_uri(self.path), uri=True, timeout=min(timeout, 30.0))
                self._conn.execute("PRAGMA busy_timeout = 30000")
                tables = self._retry(lambda: _tables(self._conn))
            except sqlite3.DatabaseError as e:
                raise _damaged(self.path, e) from e
            if not tables >= _STORE_TABLES:
                self._conn.close()
                raise _not_a_store(self.path)
            self._tables = tables
            _check_integrity(self._conn, self.path)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the folder of the results store {self.path}: {e}") from e
        if self.path.exists() and not os.access(self.path, os.W_OK) or not os.access(self.path.parent, os.W_OK):
            raise ConfigError(
                f"the results store {self.path} cannot be written (read-only file or folder); give a --store "
                "path on writable storage (`cleargrad report` and `export` read it where it is)"
            )
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=min(timeout, 30.0), isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 30000")
            tables = self._retry(lambda: _tables(self._conn))
            if tables and not tables & _STORE_TABLES:
                self._conn.close()
                raise _not_a_store(self.path)
            if tables:
                _check_integrity(self._conn, self.path)
            self._retry(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
            self._retry(lambda: self._conn.executescript(_SCHEMA))
        except sqlite3.DatabaseError as e:
            raise _damaged(self.path, e) from e
        self._tables = set(_SCHEMA_TABLES)

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
                    if "disk i/o" in msg or "readonly" in msg or "unable to open" in msg or "full" in msg:
                        raise ConfigError(f"cannot write the results store {self.path}: {e}") from e
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

        if self.readonly:
            raise ConfigError(f"the results store {self.path} was opened read-only")
        try:
            self._retry(run)
        except sqlite3.DatabaseError as e:
            if type(e) is not sqlite3.DatabaseError:  # a programming or lock error, not a damaged file
                raise
            raise _damaged(self.path, e) from e

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

    def add_images(
        self, images: Iterable[tuple[str, int | None, str | None, str | None]], settings: str | None = None
    ) -> None:
        """Record ``(image_id, label, class_name, source)`` rows of the run ``settings`` (one
        row per run and image: several runs of one store never share image metadata).
        Without ``settings`` the rows go to the store-wide table (first write wins), as
        older versions wrote them."""
        if settings is None:
            self._transaction([("INSERT OR IGNORE INTO images VALUES (?, ?, ?, ?)", images)])
            return
        data = [(settings, *tuple(r)) for r in images]
        self._transaction([("INSERT OR IGNORE INTO run_images VALUES (?, ?, ?, ?, ?)", data)])

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

    def add_layers(self, items: Iterable[tuple[str, str]], settings: str) -> None:
        """Store ``(method, layer)``: the layer(s) a CAM method explained with (what
        ``layer="auto"`` resolved to), for the report."""
        data = [(settings, m, layer) for m, layer in items]
        self._transaction([("INSERT OR REPLACE INTO layers VALUES (?, ?, ?)", data)])

    # reading -------------------------------------------------------------------------
    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._retry(lambda: self._conn.execute(sql, tuple(args)).fetchall())
        except sqlite3.OperationalError as e:
            if self.readonly and "no such table" in str(e).lower():
                return []  # a store of an older version, read as it is: the table's data is absent
            raise
        except sqlite3.DatabaseError as e:
            if type(e) is not sqlite3.DatabaseError:
                raise
            raise _damaged(self.path, e) from e

    def has_table(self, name: str) -> bool:
        """Whether the store has table ``name`` (older stores lack the newer tables)."""
        return name in self._tables

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

    def images(self, settings: str | None = None) -> dict[str, tuple[int | None, str | None, str | None]]:
        """``image_id -> (label, class_name, source)`` of the run ``settings`` (or of every run).

        Stores written before per-run image rows existed keep one ``images`` row per id
        (the first run's); those are used for images the run has no row of its own for.
        """
        legacy_rows = self._query("SELECT image_id, label, class_name, source FROM images")
        legacy = {r[0]: (r[1], r[2], r[3]) for r in legacy_rows}
        sql = "SELECT image_id, label, class_name, source FROM run_images"
        args: list[Any] = []
        if settings is not None:
            sql += " WHERE settings_hash = ?"
            args.append(settings)
        own = {r[0]: (r[1], r[2], r[3]) for r in self._query(sql + " ORDER BY settings_hash", args)}
        return {**legacy, **own}

    def metric_info(self) -> dict[str, tuple[str, str, str]]:
        """``metric name -> (direction, category, summary)``."""
        return {r[0]: (r[1], r[2], r[3]) for r in self._query("SELECT * FROM metrics")}

    def skipped(self) -> list[tuple[str, str]]:
        """``(source, reason)`` of the files that were skipped."""
        return [(a, b) for a, b in self._query("SELECT source, reason FROM skipped ORDER BY source")]

    def overlays(
        self, limit_images: int | None = None, settings: str | None = None
    ) -> list[tuple[str, str, bytes]]:
        """``(image_id, method, png)`` for the first ``limit_images`` images (by id), of the
        run ``settings`` (or of every run)."""
        sql, args = "SELECT image_id, method, png FROM overlays", []
        if settings is not None:
            sql, args = sql + " WHERE settings_hash = ?", [settings]
        rows = self._query(sql + " ORDER BY image_id, method", args)
        if limit_images is not None:
            keep = sorted({r[0] for r in rows})[:limit_images]
            rows = [r for r in rows if r[0] in set(keep)]
        return [(a, b, bytes(c)) for a, b, c in rows]

    def inputs(self, settings: str) -> dict[str, bytes]:
        """``image_id -> png`` of the stored gallery inputs of ``settings``."""
        rows = self._query("SELECT image_id, png FROM inputs WHERE settings_hash = ?", [settings])
        return {a: bytes(b) for a, b in rows}

    def layers(self, settings: str) -> dict[str, str]:
        """``method -> layer`` of the CAM methods of ``settings`` (see :meth:`add_layers`)."""
        return dict(self._query("SELECT method, layer FROM layers WHERE settings_hash = ?", [settings]))

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
