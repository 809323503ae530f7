"""Insertion/deletion take a number of steps that scales with the image: 28 by default
(the image width on 28x28 images, as before), ``n_steps="all"`` for the per-pixel curve."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cleargrad.errors import ConfigError
from cleargrad.evaluation.run import _curve_default
from cleargrad.metrics import deletion, insertion


def _model(channels: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 3)).eval()


def _inputs(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 1, side, side, generator=g), torch.rand(2, 1, side, side, generator=g)


@pytest.mark.parametrize("fn", [insertion, deletion])
def test_the_default_curve_has_28_steps_at_any_size(fn) -> None:
    model = _model()
    x, s = _inputs(56)
    res = fn(model, x, s, target=0, return_curves=True)
    assert res.curves.shape == (2, 29)  # ceil(56*56 / 112) = 28 steps, 29 points
    same = fn(model, x, s, target=0, step=112, return_curves=True)
    torch.testing.assert_close(res.curves, same.curves, rtol=0, atol=0)


@pytest.mark.parametrize("fn", [insertion, deletion])
def test_at_28_pixels_the_default_step_is_the_image_width(fn) -> None:
    model = _model()
    x, s = _inputs(28)
    torch.testing.assert_close(fn(model, x, s, target=1), fn(model, x, s, target=1, step=28), rtol=0, atol=0)


def test_n_steps_all_is_the_per_pixel_curve_and_n_steps_sets_the_step() -> None:
    model = _model()
    x, s = _inputs(8)
    full = insertion(model, x, s, target=2, n_steps="all", return_curves=True)
    assert full.curves.shape == (2, 65)
    torch.testing.assert_close(full.auc, insertion(model, x, s, target=2, step=1), rtol=0, atol=0)
    torch.testing.assert_close(
        deletion(model, x, s, target=2, n_steps=16), deletion(model, x, s, target=2, step=4), rtol=0, atol=0
    )
    with pytest.raises(ConfigError, match="not both"):
        insertion(model, x, s, target=2, n_steps=4, step=2)
    with pytest.raises(ConfigError, match="'all'"):
        insertion(model, x, s, target=2, n_steps="every")


def test_the_run_record_marks_runs_whose_default_step_changed() -> None:
    class R:
        def __init__(self, name: str) -> None:
            self.name = name

    assert _curve_default([R("insertion")], {}, 28) == {}  # 28x28: the same step as before, the same hash
    assert _curve_default([R("insertion")], {}, 224) == {"curve_steps": "n_steps=28"}
    assert _curve_default([R("insertion")], {"insertion": {"step": 224}}, 224) == {}
    assert _curve_default([R("sparseness")], {}, 224) == {}
