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
SELECT r.settings_hash, r.image_id, {source}, {label}, {class_name}, r.method, r.metric, m.direction,
       r.value, r.target
FROM results r
{join}
LEFT JOIN metrics m ON m.name = r.metric
{where}
ORDER BY r.settings_hash, r.image_id, r.method, r.metric
"""


def _query(tables: set[str], where: str) -> str:
    """The export query: per-run image rows where the store has them, the store-wide
    ``images`` table of older stores otherwise (and for ids a run has no own row of)."""
    joins, cols = [], {}
    if "run_images" in tables:
        joins.append("LEFT JOIN run_images ri ON ri.settings_hash = r.settings_hash AND ri.image_id = r.image_id")
    if "images" in tables:
        joins.append("LEFT JOIN images i ON i.image_id = r.image_id")
    for c in ("source", "label", "class_name"):
        parts = [f"{a}.{c}" for a, t in (("ri", "run_images"), ("i", "images")) if t in tables]
        cols[c] = f"COALESCE({', '.join(parts)}, NULL)" if parts else "NULL"
    return _QUERY.format(join="\n".join(joins), where=where, **cols)


def _rows(store: Path, settings: str | None) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, str, float]]]:
    from ..store import ResultStore

    with ResultStore(store, readonly=True) as st:  # never written: read-only, also on read-only media
        where, args = ("WHERE r.settings_hash = ?", [settings]) if settings else ("", [])
        tables = {t for t in ("run_images", "images", "metrics") if st.has_table(t)}
        if "metrics" not in tables:
            raise DataError(f"{store} is not a cleargrad results store (no 'metrics' table)")
        rows = st._query(_query(tables, where), args)
        runs = st._query("SELECT settings_hash, settings, versions, created FROM runs")
    if settings and not rows:
        known = ", ".join(sorted(h for h, *_ in runs)) or "none"
        raise ConfigError(f"no results with settings {settings!r} in {store}; stored settings: {known}")
    return rows, runs


def default_out(store: Path, fmt: str) -> Path:
    """``store`` with the format's suffix; ``<stem>.export.<fmt>`` where that would be the
    store itself (a store named ``res.csv``)."""
    out = store.with_suffix(f".{fmt}")
    if out.resolve() == store.resolve():
        out = store.with_name(f"{store.stem}.export.{fmt}")
    return out


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def export_store(store: Path, fmt: str = "csv", out: Path | None = None, settings: str | None = None) -> Path:
    """Write the results of ``store`` (optionally one ``settings`` hash) as ``fmt``.

    ``out`` defaults to the store's path with the format's suffix (:func:`default_out`);
    it may not be the store, which is opened read-only. Both files are written atomically
    (a killed export leaves the previous file or none, never a truncated one). Parquet needs the
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
    from ..atomic import atomic_path, atomic_write, refuse_same_file

    out = out or default_out(store, fmt)
    sidecar = out.with_name(out.stem + ".runs.json")
    refuse_same_file(out, store, "--out")
    refuse_same_file(sidecar, store, "the settings file beside --out")
    rows, runs = _rows(store, settings)
    rows = [tuple(_clean(v) for v in r) for r in rows]
    if fmt == "csv":
        with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
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
        atomic_write(out, lambda tmp: pq.write_table(table, str(tmp)))
    atomic_write(
        sidecar,
        json.dumps(
            [
                {"settings_hash": h, "settings": json.loads(s), "versions": json.loads(v), "created": c}
                for h, s, v, c in runs
                if settings is None or h == settings
            ],
            indent=2,
        )
        + "\n",
    )
    return out
