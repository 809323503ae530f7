"""Hostile images are skipped with their name and reason and the run goes on: a 99-byte
PNG declaring 20000×20000 pixels, an extreme aspect ratio whose resize would be huge; an
extreme ``--crop-fraction`` is refused up front in one line."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_support import make_images, make_model_file, one_thread
from PIL import Image
from typer.testing import CliRunner

from cleargrad import ConfigError
from cleargrad.cli import app
from cleargrad.data import load_image_folder


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header declares ``width``×``height`` 8-bit gray pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@pytest.fixture()
def hostile(tmp_path: Path) -> Path:
    root = make_images(tmp_path, per_class=2, corrupt=False)
    (root / "boot" / "bomb.png").write_bytes(bomb_png())
    assert len(bomb_png()) < 120
    Image.fromarray(np.zeros((1, 200_000), np.uint8)).save(root / "boot" / "thin.png")  # 28 x 5.6 M when cropped
    return root


def test_load_image_folder_skips_them_with_the_reason(hostile: Path) -> None:
    f = load_image_folder(hostile, size=28, channels=1)
    assert len(f) == 4
    reasons = {s.path.name: s.reason for s in f.skipped}
    assert set(reasons) == {"bomb.png", "thin.png"}
    assert "too large" in reasons["bomb.png"] and "decompression bomb" in reasons["bomb.png"]
    assert "too large" in reasons["thin.png"]


def _invoke(args: list[str]):
    with one_thread():
        return CliRunner().invoke(app, args)


def test_explain_evaluate_and_train_go_on_and_list_them(hostile: Path, tmp_path: Path) -> None:
    model = f"{make_model_file(tmp_path)}:factory"
    r = _invoke(["explain", "--model", model, "--images", str(hostile), "--method", "saliency",
                 "--out", str(tmp_path / "x")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "bomb.png" in r.output and "thin.png" in r.output
    assert len(list((tmp_path / "x").rglob("*.npy"))) == 4
    r = _invoke(["evaluate", "--model", model, "--dataset", str(hostile), "--methods", "saliency",
                 "--metrics", "sparseness", "--store", str(tmp_path / "s.sqlite")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "bomb.png" in r.output and "4 new row(s)" in r.output
    r = _invoke(["train", "--model", "small-cnn", "--width", "2", "--dataset", str(hostile), "--grayscale",
                 "--size", "28", "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / "t")])  # fmt: skip
    assert r.exit_code == 0, r.output
    text = r.output.replace("\n", "")
    assert "skipped 2 file(s)" in text and "bomb.png" in text and "thin.png" in text


def test_an_extreme_crop_fraction_is_refused_in_one_line(tmp_path: Path) -> None:
    images = make_images(tmp_path, per_class=1, corrupt=False)
    with pytest.raises(ConfigError, match="crop_fraction 1e-06"):
        load_image_folder(images, size=28, channels=1, crop_fraction=1e-6)
    model = f"{make_model_file(tmp_path)}:factory"
    r = _invoke(["explain", "--model", model, "--images", str(images), "--method", "saliency",
                 "--crop-fraction", "0.000001", "--out", str(tmp_path / "x")])  # fmt: skip
    assert r.exit_code == 2 and "--crop-fraction" in r.output and "at least" in r.output
