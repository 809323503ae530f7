"""The documented 2-D reduction applies to pixel attributions of any channel count.

A signed 1-channel pixel attribution (Input x Gradient or IG on a grayscale model,
Saliency with ``abs=False``) must be ranked and thresholded by ``|a|``, as a
3-channel one is by ``|sum_c a_c|``; ``reduction="none"`` uses a map as given.
"""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_cnn

import cleargrad as cg
from cleargrad import metrics as M
from cleargrad.errors import ConfigError, InputError


def _signed_pair(n: int = 2, size: int = 12, seed: int = 0) -> torch.Tensor:
    """Signed 1-channel attributions whose largest magnitudes are negative."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 1, size, size, generator=g) * 0.3
    a[:, :, : size // 3, : size // 3] = -1.0 - torch.rand(n, 1, size // 3, size // 3, generator=g)
    return a


def test_prepare_maps_reduces_one_channel_attributions() -> None:
    a = _signed_pair()
    assert torch.equal(M.prepare_maps(a), a.abs())
    assert torch.equal(M.prepare_maps(a, reduction="sum_abs"), a.abs())
    assert torch.equal(M.prepare_maps(a, reduction="max_abs"), a.abs())
    assert torch.equal(M.prepare_maps(a, reduction="positive"), a.clamp(min=0))
    assert torch.equal(M.prepare_maps(a, reduction="none"), a)
    assert torch.equal(M.prepare_maps(a[:, 0]), a.abs())  # (N, H, W) alike


def test_one_channel_reduction_matches_the_three_channel_rule() -> None:
    """A 1-channel attribution reduces like the channel sum of a 3-channel one."""
    a = _signed_pair()
    three = torch.cat([a * 0.5, a * 0.25, a * 0.25], dim=1)  # channel sum == a
    for red in ("abs_sum", "positive"):
        torch.testing.assert_close(M.prepare_maps(a, reduction=red), M.prepare_maps(three, reduction=red))


def test_non_negative_maps_are_unchanged_by_every_reduction() -> None:
    model = tiny_cnn()
    x = torch.randn(2, 1, 16, 16)
    cam = cg.GradCAM(model).attribute(x, target=[0, 1])
    assert float(cam.min()) >= 0 and float(cam.max()) > 0
    for red in M.MAP_REDUCTIONS:
        assert torch.equal(M.prepare_maps(cam, x, reduction=red), cam), red


def test_reduction_none_refuses_multi_channel_and_unknown_names_list_it() -> None:
    with pytest.raises(InputError, match='reduction="none".*3 channels.*abs_sum'):
        M.prepare_maps(torch.randn(1, 3, 4, 4), reduction="none")
    with pytest.raises(ConfigError, match="none"):
        M.prepare_maps(torch.randn(1, 1, 4, 4), reduction="nope")


def test_region_complexity_of_signed_grayscale_attribution() -> None:
    a = _signed_pair()
    b = torch.rand(2, 12, 12)
    rc_signed = M.region_complexity(b, a)
    torch.testing.assert_close(rc_signed, M.region_complexity(b, a.abs()), equal_nan=True)
    # the negative block is the most important part of |a|: its region covers it
    region = M.convex_hull_region(a)
    assert bool(region[:, :4, :4].all())
    assert not torch.equal(region, M.convex_hull_region(a, reduction="none"))


def test_faithfulness_metrics_of_signed_grayscale_attribution() -> None:
    """Insertion / deletion / AD on a grayscale model: signed a scores as |a|, not as a."""
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    y = torch.tensor([1, 3])
    a = cg.InputXGradient(model).attribute(x, target=y)
    assert bool((a < 0).any()) and bool((a > 0).any())
    for fn in (M.insertion, M.deletion):
        got = fn(model, x, a, target=y, step=12)
        torch.testing.assert_close(got, fn(model, x, a.abs(), target=y, step=12))
        assert not torch.allclose(got, fn(model, x, a, target=y, step=12, reduction="none"))
    torch.testing.assert_close(M.average_drop(model, x, a, target=y), M.average_drop(model, x, a.abs(), target=y))


def test_localisation_of_signed_grayscale_attribution() -> None:
    a = _signed_pair()
    masks = torch.zeros(2, 12, 12, dtype=torch.bool)
    masks[:, :4, :4] = True  # the object is where |a| is largest
    assert M.pointing_game(a, masks, tolerance=0).tolist() == [1.0, 1.0]
    assert M.pointing_game(a, masks, tolerance=0, reduction="none").tolist() == [0.0, 0.0]
    torch.testing.assert_close(M.energy_pointing_game(a, masks), M.energy_pointing_game(a.abs(), masks))
