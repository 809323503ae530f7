"""Where ``explain`` writes, and the manifest that says what each file shows.

Output names mirror the input's relative path (``photos/cat.jpg`` ->
``photos/cat.jpg__saliency.png``), so ``a.png`` and ``a.jpg`` stay apart. A path part
that is not already a safe file name (characters other than letters, digits, ``-``,
``_``, ``.``; a leading dot; over 120 characters) is made safe and suffixed with
``~`` and 8 hex digits of its SHA-256: the name depends on that input name only (stable
across runs), and since a safe part never contains ``~``, a rewritten part cannot equal
an untouched one (``a b.png`` -> ``a_b.png~1c3e...`` beside ``a_b.png``). Names that
would differ only in letter case (the same file on macOS and Windows) get the suffix too.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST_COLUMNS", "ManifestRow", "output_stems", "safe_part", "write_manifest"]

_MAX_PART = 120


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def safe_part(part: str, force_suffix: bool = False) -> str:
    """One path component as a safe file name (see the module docstring)."""
    safe = "".join(c if (c.isalnum() or c in "-_.") else "_" for c in part)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    changed = safe != part or len(safe) > _MAX_PART or force_suffix
    if changed:
        safe = f"{safe[:_MAX_PART]}~{_digest(part)}"
    return safe


def _parts(image_id: str) -> list[str]:
    parts = [p for p in image_id.replace("\\", "/").split("/") if p not in ("", ".")]
    return parts or ["image"]


def output_stems(image_ids: Sequence[str]) -> dict[str, str]:
    """``image_id -> relative output stem`` (POSIX separators), unique for distinct ids.

    Raises:
        RuntimeError: two ids still map to one stem (a hash collision; never expected).
    """
    stems = {i: "/".join(safe_part(p) for p in _parts(i)) for i in dict.fromkeys(image_ids)}
    by_fold: dict[str, list[str]] = {}
    for i, s in stems.items():
        by_fold.setdefault(s.casefold(), []).append(i)
    for ids in by_fold.values():
        if len(ids) > 1:  # differ only in case: the whole id's digest tells them apart
            for i in ids:
                *head, last = stems[i].split("/")
                stems[i] = "/".join([*head, f"{last}~{_digest(i)}"])
    if len({s.casefold() for s in stems.values()}) != len(stems):
        raise RuntimeError("output names collide; rename the input files")
    return stems


@dataclass
class ManifestRow:
    """One written explanation.

    Attributes:
        input: the image file as read.
        image_id: its id (path relative to the folder given, or the file name).
        label, label_name: the class of its sub-folder, when the folder has class sub-folders.
        class_index, class_name: the class explained (``class_name`` from ``--class-names``
            or the dataset's class names; empty when unknown); None (empty in the CSV)
            for a target of no single class (multi-label, binary, regression).
        probability: softmax probability of that class for this image (None where the
            model's output is not class scores, e.g. segmentation or detection).
        predicted, predicted_name: the model's top class (None where the output is not
            class scores).
        target_rule: how the class was chosen (``prediction``, ``class 3``, ...).
        method: method name; ``options``: its options as JSON.
        overlay, array: the PNG and ``.npy`` written, relative to the output folder.
    """

    input: str
    image_id: str
    label: int | None
    label_name: str
    class_index: int | None
    class_name: str
    probability: float | None
    predicted: int | None
    predicted_name: str
    target_rule: str
    method: str
    options: str
    overlay: str
    array: str


MANIFEST_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ManifestRow))


def write_manifest(
    out: Path, rows: Iterable[ManifestRow], run: dict[str, Any], complete: bool = True
) -> tuple[Path, Path]:
    """Write ``manifest.csv`` (one row per explanation) and ``manifest.json`` (the run's
    settings, ``complete`` and the same rows) into ``out``; returns both paths.

    Each file is written atomically (:mod:`cleargrad.atomic`). ``complete=False`` marks a
    manifest written while the run goes on: it lists the files finished so far."""
    from ..atomic import atomic_path, atomic_write

    rows = list(rows)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "manifest.csv", out / "manifest.json"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(MANIFEST_COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})
    payload = {"run": run, "complete": complete, "columns": list(MANIFEST_COLUMNS), "rows": [asdict(r) for r in rows]}
    atomic_write(json_path, json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    return csv_path, json_path
