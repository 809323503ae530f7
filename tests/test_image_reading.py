"""Image files of every common pixel format are read at full range (16-bit, float,
palette, CMYK), or skipped with the reason, never silently distorted; non-image files in
a folder are listed as skipped. Covers the library loader and the CLI's image sets (the
path both ``explain`` and ``evaluate`` read images through)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cleargrad as cg
from cleargrad.data import load_image_folder
from cleargrad.evaluation.images import Preprocess, image_set


def _gradient16(h: int = 16, w: int = 24) -> np.ndarray:
    return np.linspace(0, 65535, h * w).reshape(h, w).astype(np.uint16)


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    if mode is not None:
        im = im.convert(mode)
    im.save(path)
    return path


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_grayscale_is_read_at_full_range(tmp_path: Path, suffix: str) -> None:
    g = _gradient16()
    path = _save(tmp_path / f"g16{suffix}", g)
    assert Image.open(path).mode == "I;16"
    res = load_image_folder([path], channels=1)
    want = torch.from_numpy(g.astype(np.float32) / 65535.0)
    torch.testing.assert_close(res.images[0, 0], want, atol=1e-6, rtol=0)
    # the old convert("RGB") saturated 99.6 % of this gradient to 1.0
    assert float((res.images == 1.0).float().mean()) < 0.01
    rgb = load_image_folder([path], channels=3)
    assert rgb.images.shape == (1, 3, 16, 24)
    torch.testing.assert_close(rgb.images[0], want.expand(3, -1, -1))


def test_16bit_resize_matches_the_8bit_image_it_holds(tmp_path: Path) -> None:
    g = _gradient16(32, 32)
    p16 = _save(tmp_path / "g16.png", g)
    p8 = _save(tmp_path / "g8.png", (g >> 8).astype(np.uint8))
    a16 = load_image_folder([p16], size=12, channels=1).images
    a8 = load_image_folder([p8], size=12, channels=1).images
    assert (a16 - a8).abs().max() < 2.5 / 255  # same picture, 16-bit only finer


def test_float_tiff_in_unit_range_is_read_exactly(tmp_path: Path) -> None:
    f = np.linspace(0, 1, 16 * 24, dtype=np.float32).reshape(16, 24)
    path = _save(tmp_path / "f32.tif", f)
    assert Image.open(path).mode == "F"
    res = load_image_folder(tmp_path, channels=1)
    assert res.skipped == []
    torch.testing.assert_close(res.images[0, 0], torch.from_numpy(f))


@pytest.mark.parametrize(
    ("name", "array", "reason"),
    [
        ("hdr.tif", np.linspace(-2, 300, 64, dtype=np.float32).reshape(8, 8), r"values in \[-2, 300\], not \[0, 1\]"),
        ("nan.tif", np.where(np.eye(8) > 0, np.nan, 0.5).astype(np.float32), "NaN/Inf"),
        ("i32.tif", (np.arange(64).reshape(8, 8) * 100000).astype(np.int32), "32-bit integer"),
    ],
)
def test_images_of_unknown_scale_are_skipped_with_the_reason(
    tmp_path: Path, name: str, array: np.ndarray, reason: str
) -> None:
    bad = _save(tmp_path / name, array)
    ok = _save(tmp_path / "ok.png", np.full((8, 8), 128, dtype=np.uint8))
    res = load_image_folder(tmp_path, channels=1)
    assert res.paths == [ok]
    assert [s.path for s in res.skipped] == [bad]
    assert res.skipped[0].reason.startswith("not read (would be distorted)")
    assert pytest.approx(float(res.images.mean()), abs=1e-6) == 128 / 255
    import re

    assert re.search(reason, res.skipped[0].reason), res.skipped[0].reason


def test_palette_and_cmyk_images_keep_their_colours(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    pal = Image.fromarray(rgb).convert("P")
    pal.save(tmp_path / "pal.png")
    want_pal = torch.from_numpy(np.array(pal.convert("RGB"))).permute(2, 0, 1).float() / 255
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "cyan.tif")
    Image.new("CMYK", (8, 8), (0, 255, 0, 0)).save(tmp_path / "magenta.jpg", quality=100)
    res = load_image_folder(tmp_path)
    got = {p.name: img for p, img in zip(res.paths, res.images)}
    torch.testing.assert_close(got["pal.png"], want_pal)
    torch.testing.assert_close(got["cyan.tif"].mean(dim=(1, 2)), torch.tensor([0.0, 1.0, 1.0]))
    torch.testing.assert_close(got["magenta.jpg"].mean(dim=(1, 2)), torch.tensor([1.0, 0.0, 1.0]), atol=2 / 255, rtol=0)


def test_one_image_file_is_a_batch_of_one(tmp_path: Path) -> None:
    path = _save(tmp_path / "one.png", np.full((5, 7, 3), 51, dtype=np.uint8))
    for source in (path, str(path)):
        res = load_image_folder(source)
        assert res.paths == [path] and res.labels is None
        torch.testing.assert_close(res.images, torch.full((1, 3, 5, 7), 0.2))
    with pytest.raises(cg.DataError, match=r"missing\.png does not exist"):
        load_image_folder(tmp_path / "missing.png")


def test_cli_image_sets_read_16bit_and_list_skipped_files(tmp_path: Path) -> None:
    """``explain`` and ``evaluate`` both read files through ``image_set(...).load``."""
    g = _gradient16(28, 28)
    _save(tmp_path / "data" / "g16.png", g)
    _save(tmp_path / "data" / "hdr.tif", np.full((28, 28), 7.0, dtype=np.float32))
    (tmp_path / "data" / "README.md").write_text("not an image")
    prep = Preprocess(28, True, (0.0,), (1.0,))
    data = image_set([tmp_path / "data"], prep)
    x, recs = data.load(range(len(data)))
    assert [r.image_id for r in recs] == ["g16.png"]
    torch.testing.assert_close(x[0, 0], torch.from_numpy(g.astype(np.float32) / 65535.0), atol=1e-6, rtol=0)
    assert set(data.skipped) == {str(tmp_path / "data" / "hdr.tif"), str(tmp_path / "data" / "README.md")}
    assert "not [0, 1]" in data.skipped[str(tmp_path / "data" / "hdr.tif")]
    assert data.skipped[str(tmp_path / "data" / "README.md")].startswith("not an image file")
