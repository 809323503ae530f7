"""IDX / Fashion-MNIST reader, image-folder loader, synthetic shapes with masks."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
import torch
from PIL import Image

import cleargrad as cg
from cleargrad.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    SHAPE_CLASSES,
    SyntheticShapes,
    denormalize_fashion_mnist,
    fashion_mnist_dir,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
    write_idx,
)
from cleargrad.data import fashion_mnist as fm_module

# ---------------------------------------------------------------- IDX files (written by hand)


def _idx_bytes(code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(">BBBB", 0, 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + payload


def _write(path, data: bytes) -> None:
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_hand_written(tmp_path, suffix: str) -> None:
    p = tmp_path / f"a-idx3-ubyte{suffix}"
    _write(p, _idx_bytes(0x08, (2, 2, 3), bytes(range(12))))
    a = read_idx(p)
    assert a.shape == (2, 2, 3) and a.dtype == np.uint8
    assert a.tolist() == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]
    assert not a.flags.writeable


def test_read_idx_big_endian_int32(tmp_path) -> None:
    p = tmp_path / "b-idx1-int"
    _write(p, _idx_bytes(0x0C, (3,), struct.pack(">3i", 1, -2, 70000)))
    assert read_idx(p).tolist() == [1, -2, 70000]


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, np.float64])
def test_write_idx_roundtrip(tmp_path, dtype) -> None:
    a = (np.arange(24).reshape(2, 3, 4) * 3 - 5).astype(dtype) if dtype != np.uint8 else np.arange(24, dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "x.gz", a)), a)


@pytest.mark.parametrize(
    "data,match",
    [
        (b"\x00\x00\x08", "bad magic"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"\x00\x00", "bad magic"),
        (b"\x00\x00\x08\x02" + struct.pack(">I", 2), "truncated"),
        (_idx_bytes(0x08, (2, 3), bytes(5)), "truncated or corrupt"),
    ],
)
def test_read_idx_corrupt(tmp_path, data: bytes, match: str) -> None:
    p = tmp_path / "bad-idx"
    _write(p, data)
    with pytest.raises(cg.DataError, match=match):
        read_idx(p)


# ---------------------------------------------------------------- Fashion-MNIST


def _fake_fmnist(d, n_train: int = 5, n_test: int = 3, gz: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        lbls = rng.integers(0, 10, (n,), dtype=np.uint8)
        ext = ".gz" if gz else ""
        _write(d / f"{prefix}-images-idx3-ubyte{ext}", _idx_bytes(0x08, (n, 28, 28), imgs.tobytes()))
        _write(d / f"{prefix}-labels-idx1-ubyte{ext}", _idx_bytes(0x08, (n,), lbls.tobytes()))
        out[split] = (imgs, lbls)
    return out


def test_fashion_mnist_tiny_files(tmp_path) -> None:
    raw = _fake_fmnist(tmp_path / "fm")
    for split in ("train", "test"):
        ds = load_fashion_mnist(split, tmp_path / "fm")
        imgs, lbls = raw[split]
        assert ds.images.shape == (len(lbls), 1, 28, 28) and ds.images.dtype == torch.float32
        assert ds.labels.dtype == torch.long
        torch.testing.assert_close(ds.images[:, 0], torch.from_numpy(imgs).float() / 255, rtol=0, atol=1e-7)
        assert ds.labels.tolist() == lbls.tolist()
        assert len(ds) == len(lbls)
        x, y = ds[1]
        assert x.shape == (1, 28, 28) and int(y) == int(lbls[1])


def test_fashion_mnist_normalize_and_limit(tmp_path) -> None:
    _fake_fmnist(tmp_path / "fm")
    plain = load_fashion_mnist("train", tmp_path / "fm")
    norm = load_fashion_mnist("train", tmp_path / "fm", normalize=True, limit=3)
    assert len(norm) == 3 and norm.normalized and not plain.normalized
    expected = (plain.images[:3] - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    torch.testing.assert_close(norm.images, expected)
    torch.testing.assert_close(denormalize_fashion_mnist(norm.images), plain.images[:3])
    torch.testing.assert_close(plain.normalize().images, (plain.images - 0.2860) / 0.3530)


def test_fashion_mnist_torchvision_layout_and_env(tmp_path, monkeypatch) -> None:
    """Files as torchvision's downloader leaves them (<root>/FashionMNIST/raw, un-gzipped),
    found through the environment variable."""
    raw = _fake_fmnist(tmp_path / "tv" / "FashionMNIST" / "raw", gz=False)
    monkeypatch.setenv("CLEARGRAD_FASHION_MNIST", str(tmp_path / "tv"))
    monkeypatch.setattr(fm_module, "SYSTEM_DIR", tmp_path / "nowhere")
    assert fashion_mnist_dir() == tmp_path / "tv"
    assert load_fashion_mnist("test").labels.tolist() == raw["test"][1].tolist()


def test_fashion_mnist_cache_dir_is_last_resort(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CLEARGRAD_FASHION_MNIST", raising=False)
    monkeypatch.setenv("CLEARGRAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fm_module, "SYSTEM_DIR", tmp_path / "nowhere")
    _fake_fmnist(tmp_path / "cache" / "fashion-mnist")
    assert fashion_mnist_dir() == tmp_path / "cache" / "fashion-mnist"


def test_fashion_mnist_missing_is_data_error_with_hint(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CLEARGRAD_FASHION_MNIST", str(tmp_path / "empty"))
    monkeypatch.setenv("CLEARGRAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fm_module, "SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(cg.DataError) as err:
        load_fashion_mnist("train")
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "torchvision" in msg and "download_fashion_mnist" in msg
    assert str(tmp_path / "empty") in msg
    with pytest.raises(cg.DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test", tmp_path / "empty")


def test_fashion_mnist_inconsistent_files(tmp_path) -> None:
    d = tmp_path / "fm"
    _fake_fmnist(d)
    _write(d / "t10k-labels-idx1-ubyte.gz", _idx_bytes(0x08, (2,), bytes(2)))  # 3 images, 2 labels
    with pytest.raises(cg.DataError, match="inconsistent"):
        load_fashion_mnist("test", d)
    with pytest.raises(cg.DataError, match="split"):
        load_fashion_mnist("val", d)


REAL = fm_module.SYSTEM_DIR


@pytest.mark.skipif(not (REAL / "t10k-labels-idx1-ubyte.gz").exists(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist() -> None:
    assert len(FASHION_MNIST_CLASSES) == 10 and FASHION_MNIST_CLASSES[0] == "T-shirt/top"
    assert FASHION_MNIST_CLASSES[9] == "Ankle boot"
    for split, n in (("train", 60000), ("test", 10000)):
        ds = load_fashion_mnist(split, REAL)
        assert ds.images.shape == (n, 1, 28, 28)
        assert ds.labels.min() == 0 and ds.labels.max() == 9
        assert ds.labels.bincount().tolist() == [n // 10] * 10
        assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
        if split == "train":  # the published normalisation constants are the train statistics
            assert abs(float(ds.images.mean()) - FASHION_MNIST_MEAN) < 1e-4
            assert abs(float(ds.images.std()) - FASHION_MNIST_STD) < 1e-4


# ---------------------------------------------------------------- image folders


def _png(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_labels_values_and_skips(tmp_path) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    _png(tmp_path / "cats" / "a.png", a)
    _png(tmp_path / "dogs" / "b.png", b)
    (tmp_path / "dogs" / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "dogs" / "text.jpg").write_text("hello")
    (tmp_path / "dogs" / "notes.txt").write_text("listed as skipped: not an image suffix")
    res = load_image_folder(tmp_path)
    assert [p.name for p in res.paths] == ["a.png", "b.png"]
    assert res.classes == ["cats", "dogs"] and res.labels.tolist() == [0, 1]
    reasons = {s.path.name: s.reason for s in res.skipped}
    assert sorted(reasons) == ["broken.png", "notes.txt", "text.jpg"]
    assert "unreadable" in reasons["broken.png"] and "unreadable" in reasons["text.jpg"]
    assert reasons["notes.txt"].startswith("not an image file (suffix '.txt'")
    assert res.images.shape == (2, 3, 6, 5)
    torch.testing.assert_close(res.images[0], torch.from_numpy(a).permute(2, 0, 1).float() / 255)
    x, y = res[1]
    assert int(y) == 1 and x.shape == (3, 6, 5)


def test_image_folder_resize_gray_and_normalise(tmp_path) -> None:
    _png(tmp_path / "one.png", np.full((10, 12, 3), 200, dtype=np.uint8))
    _png(tmp_path / "two.png", np.full((4, 4, 3), 50, dtype=np.uint8))
    res = load_image_folder(tmp_path, size=8, channels=1, mean=0.5, std=0.25)
    assert res.images.shape == (2, 1, 8, 8) and res.labels is None
    torch.testing.assert_close(res.images[0], torch.full((1, 8, 8), (200 / 255 - 0.5) / 0.25))
    torch.testing.assert_close(res.images[1], torch.full((1, 8, 8), (50 / 255 - 0.5) / 0.25))
    rgb = load_image_folder(tmp_path, size=(3, 5), mean=[0.1, 0.2, 0.3], std=[1, 2, 4])
    assert rgb.images.shape == (2, 3, 3, 5)
    expected = (50 / 255 - torch.tensor([0.1, 0.2, 0.3])) / torch.tensor([1, 2, 4.0])
    torch.testing.assert_close(rgb.images[1, :, 0, 0], expected)
    # no size: everything is resized to the first image's size
    assert load_image_folder(tmp_path).images.shape == (2, 3, 10, 12)


def test_image_list_with_missing_file(tmp_path) -> None:
    _png(tmp_path / "ok.png", np.zeros((4, 4, 3), dtype=np.uint8))
    res = load_image_folder([tmp_path / "ok.png", tmp_path / "gone.png"], quiet=False)
    assert len(res) == 1 and res.labels is None
    assert res.skipped_paths == [tmp_path / "gone.png"] and res.skipped[0].reason == "missing"


def test_image_folder_errors(tmp_path) -> None:
    with pytest.raises(cg.DataError, match="nope does not exist"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "bad.png").write_bytes(b"junk")
    with pytest.raises(cg.DataError, match="no readable image"):
        load_image_folder(tmp_path)
    with pytest.raises(cg.ConfigError):
        load_image_folder(tmp_path, channels=2)
    with pytest.raises(cg.ConfigError):
        load_image_folder(tmp_path, std=[1.0, 0.0, 1.0])


# ---------------------------------------------------------------- synthetic shapes


def test_synthetic_is_seeded() -> None:
    a, b, c = SyntheticShapes(16, seed=3), SyntheticShapes(16, seed=3), SyntheticShapes(16, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


@pytest.mark.parametrize("channels", [1, 3])
def test_synthetic_clean_images_are_exactly_the_masks(channels: int) -> None:
    ds = SyntheticShapes(32, size=24, channels=channels, noise=0.0, background=0.2, intensity=0.9, seed=1)
    assert ds.images.shape == (32, channels, 24, 24) and ds.masks.shape == (32, 1, 24, 24)
    assert ds.masks.dtype == torch.bool
    bg = torch.full_like(ds.images, 0.2)
    torch.testing.assert_close(torch.where(ds.masks, bg, ds.images), bg)  # outside: background only
    inside = ds.images.permute(1, 0, 2, 3)[:, ds.masks[:, 0]]  # (C, pixels in all masks)
    if channels == 1:
        assert torch.all(inside == 0.9)
    else:
        assert inside.min() >= 0.6 and inside.max() <= 1.0
    # no shape touches the border
    m = ds.masks[:, 0]
    assert not (m[:, 0].any() or m[:, -1].any() or m[:, :, 0].any() or m[:, :, -1].any())
    img, label, mask = ds[0]
    assert img.shape == (channels, 24, 24) and mask.shape == (1, 24, 24) and label == ds.labels[0]


def test_synthetic_masks_have_the_shape_of_the_class() -> None:
    """Area of the mask over the area of its bounding box: 1 (square), pi/4 (disk),
    1/2 (triangle), 5/9 (cross with arms of a third); plus symmetry checks."""
    ds = SyntheticShapes(200, size=64, noise=0.0, min_radius=0.25, max_radius=0.3, seed=2)
    expected = {0: 1.0, 1: math.pi / 4, 2: 0.5, 3: 5 / 9}
    assert set(ds.labels.tolist()) == {0, 1, 2, 3} and SHAPE_CLASSES[2] == "triangle"
    for m, y in zip(ds.masks[:, 0], ds.labels.tolist()):
        rows, cols = m.any(1).nonzero()[:, 0], m.any(0).nonzero()[:, 0]
        h, w = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
        box = m[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        ratio = float(box.float().mean())
        assert abs(ratio - expected[y]) < 0.08, (y, ratio)
        assert torch.equal(box, box.flip(1))  # all four are left-right symmetric
        if y != 2:
            assert abs(h - w) <= 1
            assert torch.equal(box, box.flip(0))  # and all but the triangle up-down symmetric
        else:  # triangle: apex up, so the top row is narrower than the bottom row
            assert box[0].sum() < box[-1].sum()


def test_synthetic_noisy_shape_is_brighter_than_background() -> None:
    ds = SyntheticShapes(16, noise=0.1, seed=0)
    for img, m in zip(ds.images, ds.masks):
        assert img[:, m[0]].mean() > img[:, ~m[0]].mean() + 0.5
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0


@pytest.mark.parametrize(
    "kw", [{"channels": 2}, {"num_classes": 5}, {"num_classes": 1}, {"n": 0}, {"noise": -1.0}, {"max_radius": 0.6}]
)
def test_synthetic_bad_options(kw) -> None:
    with pytest.raises(cg.ConfigError):
        SyntheticShapes(**kw)


def test_synthetic_subset_of_classes() -> None:
    ds = SyntheticShapes(64, num_classes=2, seed=0)
    assert ds.classes == ("square", "disk") and set(ds.labels.tolist()) == {0, 1}
