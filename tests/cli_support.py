"""Shared pieces of the command-line tests: a tiny model file, a folder of small PNGs,
and helpers to run the command in-process or as a subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

MODEL_SOURCE = '''
import os
import time

import torch
from torch import nn

from cleargrad.models import SmallCNN


class SlowCNN(SmallCNN):
    """SmallCNN(width=4, 3 classes); each forward sleeps CLEARGRAD_TEST_SLEEP seconds."""

    def forward(self, x):
        delay = float(os.environ.get("CLEARGRAD_TEST_SLEEP", "0"))
        if delay:
            time.sleep(delay)
        return super().forward(x)


def factory():
    torch.manual_seed(1)
    return SlowCNN(in_channels=1, num_classes=3, width=4)


def broken():
    raise RuntimeError("factory exploded")
'''

#: a class folder whose name is markup: the report must show it as text
SCRIPT_CLASS = "<script>alert(1)<script>"


def make_model_file(folder: Path) -> Path:
    """``folder/tiny_model.py`` with ``factory`` (a SmallCNN(width=4), 3 classes)."""
    path = folder / "tiny_model.py"
    path.write_text(MODEL_SOURCE)
    return path


def make_images(folder: Path, per_class: int = 3, corrupt: bool = True) -> Path:
    """``folder/images/<class>/<i>.png`` (28×28 grayscale, seeded), two classes, one of them
    named :data:`SCRIPT_CLASS`; plus a corrupt ``bad.png`` when ``corrupt``."""
    from PIL import Image

    root = folder / "images"
    rng = np.random.default_rng(0)
    for cls in ("boot", SCRIPT_CLASS):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = (rng.random((28, 28)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(root / cls / f"img{i}.png")
    if corrupt:
        (root / "boot" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root


def rows(store: Path) -> list[tuple[str, str, str, float | None]]:
    """``(image_id, method, metric, value)`` of every result row, sorted."""
    con = sqlite3.connect(str(store))
    try:
        return sorted(con.execute("SELECT image_id, method, metric, value FROM results").fetchall())
    finally:
        con.close()


def count_rows(store: Path) -> int:
    """Number of result rows (0 while the file or table does not exist yet)."""
    if not store.exists():
        return 0
    try:
        con = sqlite3.connect(str(store), timeout=1)
        try:
            return int(con.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def env(**extra: str) -> dict[str, str]:
    """Environment of a subprocess: one thread (as under torchrun), src on the path."""
    e = dict(os.environ)
    e.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")})
    e.update(extra)
    return e


def run_cli(args: list[str], timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """``python -m cleargrad ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "cleargrad", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(**extra_env),
    )


@contextmanager
def one_thread():
    """Run in-process code with one intra-op thread (bit-identical to the subprocesses)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
