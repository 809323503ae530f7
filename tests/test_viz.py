"""Overlays, PNG output and comparison grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

import cleargrad as cg
from cleargrad.viz import GridRow, as_heatmap, as_rgb, figure_grid, mask_outline, overlay, save_overlay


@pytest.mark.parametrize(
    "image",
    [
        torch.rand(1, 28, 28),
        torch.rand(1, 1, 28, 28),
        torch.rand(28, 28),
        torch.rand(3, 28, 28),
        np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8),
    ],
)
def test_overlay_shape_and_dtype(image) -> None:
    out = overlay(image, torch.rand(1, 1, 28, 28))
    assert out.shape == (28, 28, 3) and out.dtype == np.uint8


def test_overlay_alpha_endpoints() -> None:
    img = torch.rand(1, 6, 5)
    heat = torch.zeros(6, 5)
    heat[2, 3] = 4.0  # maximum
    heat[0, 0] = -1.0  # minimum
    # alpha 0: the grayscale image replicated to RGB
    expected = np.repeat(np.rint(img[0].numpy().astype(np.float64) * 255), 3).reshape(6, 5, 3)
    assert np.array_equal(overlay(img, heat, alpha=0.0), expected.astype(np.uint8))
    # alpha 1: the colormap of the per-image normalised heatmap: top and bottom colours
    jet = overlay(img, heat, alpha=1.0, cmap="jet")
    top, bottom = colormaps["jet"](1.0)[:3], colormaps["jet"](0.0)[:3]
    assert np.array_equal(jet[2, 3], np.rint(np.array(top) * 255).astype(np.uint8))
    assert np.array_equal(jet[0, 0], np.rint(np.array(bottom) * 255).astype(np.uint8))
    assert tuple(jet[2, 3]) == (128, 0, 0) and tuple(jet[0, 0]) == (0, 0, 128)


def test_overlay_heatmap_is_normalised_per_image() -> None:
    img = torch.rand(3, 8, 8)
    h = torch.randn(8, 8)
    assert np.array_equal(overlay(img, h), overlay(img, 7.0 * h + 3.0))
    flat = overlay(img, torch.zeros(8, 8), alpha=0.5)  # constant map: no NaN, lowest colour
    assert np.array_equal(flat, overlay(img, torch.full((8, 8), 5.0), alpha=0.5))


def test_overlay_resizes_heatmap_and_reduces_channels() -> None:
    img = torch.rand(1, 28, 28)
    small = torch.rand(1, 1, 7, 7)
    big = torch.nn.functional.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False)
    assert np.array_equal(overlay(img, small), overlay(img, big))
    attr = torch.randn(3, 28, 28)
    assert np.array_equal(overlay(img, attr), overlay(img, attr.sum(0).abs()))


def test_as_rgb_value_ranges() -> None:
    x = torch.tensor([[-2.0, 0.0], [1.0, 2.0]])  # normalised input: min-max scaled
    np.testing.assert_allclose(as_rgb(x)[..., 0], [[0.0, 0.5], [0.75, 1.0]])
    u = np.array([[0, 255]], dtype=np.uint8)
    np.testing.assert_allclose(as_rgb(u)[..., 1], [[0.0, 1.0]])
    with pytest.raises(cg.InputError):
        as_rgb(torch.rand(2, 3, 4, 4))  # a batch of two is not one image
    with pytest.raises(cg.InputError):
        as_heatmap(torch.tensor([[float("nan")]]))


def test_mask_outline_and_overlay_contour() -> None:
    m = np.zeros((8, 8), dtype=bool)
    m[2:6, 2:6] = True
    edge = mask_outline(m)
    ring = m.copy()
    ring[3:5, 3:5] = False
    assert np.array_equal(edge, ring)
    img, heat = torch.rand(1, 8, 8), torch.rand(8, 8)
    plain = overlay(img, heat)
    drawn = overlay(img, heat, mask=torch.from_numpy(m)[None], mask_color=(0, 255, 0))
    assert np.all(drawn[edge] == [0, 255, 0])
    assert np.array_equal(drawn[~edge], plain[~edge])
    with pytest.raises(cg.InputError, match="mask shape"):
        overlay(img, heat, mask=np.ones((4, 4), dtype=bool))


def test_overlay_bad_options() -> None:
    with pytest.raises(cg.ConfigError):
        overlay(torch.rand(4, 4), torch.rand(4, 4), alpha=1.5)
    with pytest.raises(cg.ConfigError, match="colormap"):
        overlay(torch.rand(4, 4), torch.rand(4, 4), cmap="no-such-map")


def test_save_overlay_png(tmp_path) -> None:
    img, heat = torch.rand(3, 16, 12), torch.rand(16, 12)
    p = save_overlay(tmp_path / "sub" / "o.png", img, heat, alpha=0.3)
    with Image.open(p) as im:
        assert im.format == "PNG" and im.size == (12, 16)
        assert np.array_equal(np.asarray(im.convert("RGB")), overlay(img, heat, alpha=0.3))


def test_figure_grid(tmp_path) -> None:
    rows = [(f"image {i}", torch.rand(1, 16, 16), {"a": torch.rand(16, 16), "b": torch.rand(4, 4)}) for i in range(3)]
    p = tmp_path / "grid.png"
    figure_grid(rows, p, panel_size=1.0, dpi=50)
    with Image.open(p) as im:
        assert im.size == (150, 150)  # 3 columns (input + 2 maps) x 3 rows, 50 px each
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:10, 4:10] = True
    rows2 = [
        GridRow("x", torch.rand(3, 16, 16), [torch.rand(16, 16)], mask=mask),
        ("y", torch.rand(16, 16), torch.rand(16, 16)),  # a single map, not in a list
    ]
    p2 = tmp_path / "g2.png"
    figure_grid(
        rows2,
        p2,
        column_titles=["m"],
        panel_size=1.0,
        dpi=40,
    )
    with Image.open(p2) as im:
        assert im.size == (80, 80)


def test_figure_grid_errors(tmp_path) -> None:
    with pytest.raises(cg.ConfigError, match="same number"):
        figure_grid([("a", torch.rand(8, 8), [torch.rand(8, 8)]), ("b", torch.rand(8, 8), [])], tmp_path / "g.png")
    with pytest.raises(cg.ConfigError, match="column titles"):
        figure_grid([("a", torch.rand(8, 8), [torch.rand(8, 8)])], tmp_path / "g.png", column_titles=["x", "y"])
    with pytest.raises(cg.ConfigError):
        figure_grid([], tmp_path / "g.png")
