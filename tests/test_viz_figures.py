"""Notebook-friendly figures: cleargrad.viz returns matplotlib Figures (shown inline by
Jupyter) and writes a file only when given a path."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

import cleargrad as cg
from cleargrad import viz


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


def test_explanation_figure_is_a_figure_and_writes_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    heat = torch.zeros(16, 16)
    heat[2:6, 3:9] = 2.5
    fig = viz.explanation_figure(torch.rand(3, 16, 16), heat, "Grad-CAM · class 3", colorbar_label="importance")
    assert isinstance(fig, Figure)
    assert _files(tmp_path) == []
    assert len(fig.axes) == 3  # input, map, colour bar
    bar = fig.axes[2]
    assert bar.get_ylabel() == "importance"
    lo, hi = bar.get_ylim()
    assert lo == pytest.approx(0.0) and hi == pytest.approx(2.5)  # the map's own units
    assert any("Grad-CAM · class 3" in t.get_text() for t in fig.texts)


def test_explanation_figure_saves_when_asked(tmp_path) -> None:
    out = tmp_path / "sub" / "fig.png"
    fig = viz.explanation_figure(torch.rand(1, 12, 12), torch.rand(12, 12), "x", path=out, panel_size=1.0, dpi=50)
    assert isinstance(fig, Figure)
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.size == (int(50 * 2.9), fig.canvas.get_width_height()[1])
    png = viz.explanation_png(torch.rand(1, 12, 12), torch.rand(12, 12), "x", panel_size=1.0, dpi=50)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(cg.ConfigError, match="alpha"):
        viz.explanation_figure(torch.rand(8, 8), torch.rand(8, 8), "x", alpha=2.0)


def test_figure_grid_without_a_path_returns_the_figure(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [(f"image {i}", torch.rand(1, 16, 16), {"a": torch.rand(16, 16), "b": torch.rand(16, 16)}) for i in range(2)]
    fig = viz.figure_grid(rows, panel_size=1.0, dpi=40)
    assert isinstance(fig, Figure)
    assert _files(tmp_path) == []
    assert fig.canvas.get_width_height() == (120, 80)  # 3 columns x 2 rows of 40 px
    assert [ax.get_title() for ax in fig.axes[:3]] == ["input", "a", "b"]
    # the same figure saved on request gives the same pixels as a direct render
    path = viz.save_figure(fig, tmp_path / "g.png")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with Image.open(path) as a, Image.open(buf) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_figures_render_inline_in_ipython() -> None:
    """What Jupyter's inline backend calls to show a returned Figure."""
    from IPython.core.pylabtools import print_figure

    fig = viz.figure_grid([("a", torch.rand(8, 8), [torch.rand(8, 8)])], panel_size=1.0, dpi=30)
    data = print_figure(fig, "png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
