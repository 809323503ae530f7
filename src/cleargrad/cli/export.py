"""``cleargrad export``: a results store as one flat table (CSV, or Parquet with pyarrow).

One row per stored value: ``settings_hash, image_id, source, label, class_name, method,
metric, direction, value, target``. ``value`` is empty (CSV) or null (Parquet) where the
metric was undefined (NaN in the store). The run settings behind each ``settings_hash``
are written beside it as ``<name>.runs.json``.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError

__all__ = ["EXPORT_COLUMNS", "FORMATS", "export_store"]

FORMATS = ("csv", "parquet")
EXPORT_COLUMNS = (
    "settings_hash",
    "image_id",
    "source",
    "label",
    "class_name",
    "method",
    "metric",
    "direction",
    "value",
    "target",
)

_QUERY = """
SELECT r.settings_hash, r.image_id, i.source, i.label, i.class_name, r.method, r.metric, m.direction,
       r.value, r.target
FROM results r
LEFT JOIN images i ON i.image_id = r.image_id
LEFT JOIN metrics m ON m.name = r.metric
{where}
ORDER BY r.settings_hash, r.image_id, r.method, r.metric
"""


def _rows(store: Path, settings: str | None) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, str, float]]]:
    if not store.is_file():
        raise DataError(f"results store not found: {store}")
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        where, args = ("WHERE r.settings_hash = ?", (settings,)) if settings else ("", ())
        try:
            rows = con.execute(_QUERY.format(where=where), args).fetchall()
            runs = con.execute("SELECT settings_hash, settings, versions, created FROM runs").fetchall()
        except sqlite3.DatabaseError as e:
            raise DataError(f"{store} is not a cleargrad results store: {e}") from e
    finally:
        con.close()
    if settings and not rows:
        known = ", ".join(sorted(h for h, *_ in runs)) or "none"
        raise ConfigError(f"no results with settings {settings!r} in {store}; stored settings: {known}")
    return rows, runs


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def export_store(store: Path, fmt: str = "csv", out: Path | None = None, settings: str | None = None) -> Path:
    """Write the results of ``store`` (optionally one ``settings`` hash) as ``fmt``.

    ``out`` defaults to the store's path with the format's suffix. Parquet needs the
    optional package ``pyarrow`` (``pip install 'cleargrad[parquet]'``). Returns ``out``.
    """
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError(
                "--format parquet needs the Python package 'pyarrow' (pip install pyarrow, or "
                "pip install 'cleargrad[parquet]'); --format csv needs nothing"
            ) from None
    out = out or store.with_suffix(f".{fmt}")
    rows, runs = _rows(store, settings)
    rows = [tuple(_clean(v) for v in r) for r in rows]
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        with open(out, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(EXPORT_COLUMNS)
            w.writerows(["" if v is None else v for v in r] for r in rows)
    else:
        cols = list(zip(*rows)) if rows else [()] * len(EXPORT_COLUMNS)
        types = [pa.string(), pa.string(), pa.string(), pa.int64(), pa.string(), pa.string(), pa.string(),
                 pa.string(), pa.float64(), pa.int64()]
        table = pa.table(
            {name: pa.array(list(col), type=t) for name, col, t in zip(EXPORT_COLUMNS, cols, types)}
        )
        pq.write_table(table, str(out))
    sidecar = out.with_name(out.stem + ".runs.json")
    sidecar.write_text(
        json.dumps(
            [
                {"settings_hash": h, "settings": json.loads(s), "versions": json.loads(v), "created": c}
                for h, s, v, c in runs
                if settings is None or h == settings
            ],
            indent=2,
        )
        + "\n"
    )
    return out
