"""Convex-hull regions, Region Complexity (RC) and Region Sensitivity (RS), spec 3.7."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import ConvexHull
from torch import nn

import cleargrad as cg
from cleargrad.metrics import (
    convex_hull_region,
    nan_summary,
    occlude,
    region_complexity,
    region_sensitivity,
)


class Linear2(nn.Module):
    """Logits ``W x + b`` on a flattened ``(1, H, W)`` image."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None = None) -> None:
        super().__init__()
        self.fc = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(w)
            self.fc.bias.copy_(torch.zeros(w.shape[0]) if b is None else b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _oracle_region(s: np.ndarray, thr: float = 0.1) -> np.ndarray:
    """Slow oracle: every pixel centre tested against the hull's half-planes (non-degenerate sets)."""
    pts = np.argwhere(s >= thr * s.max()).astype(float)
    hull = ConvexHull(pts)
    grid = np.argwhere(np.ones_like(s, dtype=bool)).astype(float)
    inside = (grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9).all(1)
    return inside.reshape(s.shape)


# --- regions -------------------------------------------------------------------------


def test_single_pixel_region_is_that_pixel() -> None:
    s = torch.zeros(5, 5)
    s[3, 1] = 2.0
    s[0, 0] = 0.19  # below 10 % of the maximum (0.2): not important
    r = convex_hull_region(s)
    assert r.dtype == torch.bool and r.shape == (5, 5)
    assert r.sum() == 1 and r[3, 1]


def test_threshold_is_inclusive_and_relative_to_max() -> None:
    s = torch.zeros(5, 5)
    s[0, 0] = 1.0
    s[0, 4] = 0.1  # exactly 10 % of the max: important -> segment of row 0
    r = convex_hull_region(s)
    assert r[0].all() and r.sum() == 5
    assert convex_hull_region(s, threshold=0.11).sum() == 1


def test_collinear_points_give_the_pixels_of_the_segment() -> None:
    s = torch.zeros(6, 6)
    s[0, 0] = s[2, 4] = 1.0  # slope 1/2: only the centres (0,0), (1,2), (2,4) lie on the segment
    r = convex_hull_region(s)
    assert r.nonzero().tolist() == [[0, 0], [1, 2], [2, 4]]
    s = torch.zeros(6, 6)
    s[1, 1] = s[4, 4] = 1.0  # diagonal: four centres
    assert convex_hull_region(s).nonzero().tolist() == [[1, 1], [2, 2], [3, 3], [4, 4]]


def test_triangle_region_counted_by_hand() -> None:
    # corners (0,0), (0,4), (4,4): the pixels (r, c) with c >= r: 5+4+3+2+1 = 15
    s = torch.zeros(5, 5)
    s[0, 0] = s[0, 4] = s[4, 4] = 1.0
    r = convex_hull_region(s)
    expected = torch.tensor([[c >= rr for c in range(5)] for rr in range(5)])
    assert torch.equal(r, expected) and r.sum() == 15


def test_region_matches_half_plane_oracle_on_random_maps() -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        s = torch.rand(9, 11, generator=g) ** 8  # few important pixels
        got = convex_hull_region(s).numpy()
        assert np.array_equal(got, _oracle_region(s.numpy()))


def test_batch_and_channel_forms_agree() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.randn(3, 3, 8, 8, generator=g)
    r = convex_hull_region(a)  # (N, C, H, W) reduced with abs_sum
    assert r.shape == (3, 8, 8)
    s = a.sum(1).abs()
    assert torch.equal(r, convex_hull_region(s))
    assert torch.equal(r, convex_hull_region(s[:, None]))
    assert torch.equal(r, convex_hull_region(s.numpy()))
    for i in range(3):
        assert torch.equal(r[i], convex_hull_region(s[i]))


def test_components_grouping_is_union_of_hulls() -> None:
    s = torch.zeros(8, 8)
    s[0, 0] = s[0, 1] = s[1, 0] = 1.0  # component 1: hull = those 3 pixels
    s[6, 6] = s[7, 7] = 1.0  # component 2: diagonal pair
    r = convex_hull_region(s, grouping="components")
    assert r.sum() == 5 and r[0, 0] and r[0, 1] and r[1, 0] and r[6, 6] and r[7, 7]
    single = convex_hull_region(s)
    assert (r & ~single).sum() == 0 and single.sum() > r.sum()


@pytest.mark.parametrize("grouping", ["single", "components"])
def test_region_of_subset_map_lies_inside_region_of_full_map(grouping: str) -> None:
    g = torch.Generator().manual_seed(3)
    for _ in range(10):
        full = torch.rand(12, 12, generator=g) ** 4
        keep = torch.rand(12, 12, generator=g) > 0.5
        keep.view(-1)[full.argmax()] = True  # the subset keeps the maximum
        sub = full * keep
        r_full = convex_hull_region(full, grouping=grouping)
        r_sub = convex_hull_region(sub, grouping=grouping)
        assert not (r_sub & ~r_full).any()
        assert float(region_complexity(sub, full, grouping=grouping)) <= 1.0


def test_empty_map_gives_empty_region() -> None:
    assert convex_hull_region(torch.zeros(4, 4)).sum() == 0
    # a map used as given with no positive value has no important pixel ...
    assert convex_hull_region(-torch.ones(4, 4), reduction="none").sum() == 0
    assert convex_hull_region(-torch.ones(4, 4), reduction="positive").sum() == 0
    # ... while the default reduction ranks a signed attribution by |a|: all 16 pixels tie
    assert convex_hull_region(-torch.ones(4, 4)).sum() == 16


def test_bad_region_arguments() -> None:
    with pytest.raises(cg.ConfigError):
        convex_hull_region(torch.rand(4, 4), grouping="blobs")
    with pytest.raises(cg.ConfigError):
        convex_hull_region(torch.rand(4, 4), threshold=1.5)
    bad = torch.rand(4, 4)
    bad[0, 0] = float("nan")
    with pytest.raises(cg.InputError, match="NaN"):
        convex_hull_region(bad)


# --- RC ------------------------------------------------------------------------------


def test_rc_identical_maps_is_one() -> None:
    m = torch.rand(4, 1, 10, 10)
    assert torch.equal(region_complexity(m, m), torch.ones(4))


def test_rc_by_hand() -> None:
    full = torch.zeros(5, 5)
    full[0, 0] = full[0, 4] = full[4, 4] = full[4, 0] = 1.0  # square: 25 pixels
    part = torch.zeros(5, 5)
    part[0, 0] = part[0, 4] = part[4, 4] = 1.0  # triangle above the diagonal: 15 pixels
    rc = region_complexity(torch.stack([part, full]), torch.stack([full, full]))
    assert torch.allclose(rc, torch.tensor([15 / 25, 1.0]))
    # boolean regions are taken as given
    ra = torch.zeros(1, 5, 5, dtype=torch.bool)
    ra[0, :2] = True
    rb = torch.ones(1, 5, 5, dtype=torch.bool)
    assert torch.allclose(region_complexity(ra, rb), torch.tensor([10 / 25]))


def test_rc_empty_original_is_nan_and_counted() -> None:
    a = torch.rand(3, 6, 6)
    b = a.clone()
    b[1] = 0.0
    rc = region_complexity(a, b)
    assert torch.isnan(rc[1]) and not torch.isnan(rc[[0, 2]]).any()
    s = nan_summary(rc)
    assert s.n == 2 and s.n_skipped == 1 and s.mean == pytest.approx(1.0)


# --- RS ------------------------------------------------------------------------------


def test_rs_linear_model_by_hand() -> None:
    # 2x2 image, logits of class 1 = 1*x00 + 2*x01 + 3*x10 + 4*x11 (+ bias 0.5)
    w = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    model = Linear2(w, torch.tensor([0.0, 0.5])).eval()
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    region = torch.tensor([[[False, True], [False, True]]])  # right column: 2 of 4 pixels
    res = region_sensitivity(model, x, region, target=1)  # black in pixel space = 0
    # a(I) = 1+4+9+16+0.5 = 30.5; occluded: 1+9+0.5 = 10.5; drop = 20; area = 1/2; RS = 40
    assert res.drop.tolist() == pytest.approx([20.0])
    assert res.area.tolist() == pytest.approx([0.5])
    assert res.rs.tolist() == pytest.approx([40.0])
    # black with a normalisation mean 0.5, std 2: black = (0 - 0.5) / 2 = -0.25 in x's space
    res = region_sensitivity(model, x, region, target=1, mean=0.5, std=2.0)
    # occluded logit: 1 + 9 + 2*(-0.25) + 4*(-0.25) + 0.5 = 9.0; drop = 21.5; RS = 43
    assert res.drop.tolist() == pytest.approx([21.5])
    assert res.rs.tolist() == pytest.approx([43.0])
    # fill = the image's own mean (2.5): occluded 1 + 9 + 2*2.5 + 4*2.5 + 0.5 = 25.5; drop 5; RS 10
    res = region_sensitivity(model, x, region, target=1, fill="mean")
    assert res.rs.tolist() == pytest.approx([10.0])
    # fill = 0 of the normalised tensor, same as black without normalisation
    res = region_sensitivity(model, x, region, target=1, fill="zero_normalised", mean=0.5, std=2.0)
    assert res.rs.tolist() == pytest.approx([40.0])


def test_rs_prob_score_and_default_target() -> None:
    w = torch.tensor([[0.5, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    model = Linear2(w).eval()
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]) / 10
    region = torch.tensor([[[True, False], [False, False]]])
    res = region_sensitivity(model, x, region, score="prob")  # target None -> argmax = class 1
    z0, z1 = 0.05, 3.0
    p = torch.tensor([z0, z1]).softmax(0)[1]
    q = torch.tensor([0.0, z1 - 0.1]).softmax(0)[1]
    assert res.rs.item() == pytest.approx(float((p - q) / 0.25), rel=1e-5)


def test_rs_empty_region_skipped_and_counted() -> None:
    model = Linear2(torch.randn(3, 16)).eval()
    x = torch.randn(3, 1, 4, 4)
    regions = torch.zeros(3, 4, 4, dtype=torch.bool)
    regions[0, :2] = True
    regions[2, 1:3, 1:3] = True
    calls = []
    h = model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    res = region_sensitivity(model, x, regions, target=[0, 1, 2])
    h.remove()
    assert calls == [3, 2]  # one clean pass, one pass for the two non-empty regions only
    assert torch.isnan(res.rs[1]) and res.drop[1] == 0 and res.n_skipped == 1
    s = nan_summary(res.rs)
    assert s.n == 2 and s.n_skipped == 1
    assert s.mean == pytest.approx(float(res.rs[[0, 2]].mean()))


def test_rs_rejects_bad_regions() -> None:
    model = Linear2(torch.randn(2, 16)).eval()
    x = torch.randn(2, 1, 4, 4)
    with pytest.raises(cg.InputError, match="does not match"):
        region_sensitivity(model, x, torch.ones(2, 5, 5, dtype=torch.bool))
    with pytest.raises(cg.InputError, match="convex_hull_region"):
        region_sensitivity(model, x, torch.rand(2, 4, 4))
    with pytest.raises(cg.ConfigError):
        region_sensitivity(model, x, torch.ones(2, 4, 4, dtype=torch.bool), fill="grey")
    with pytest.raises(cg.ConfigError):
        region_sensitivity(model, x, torch.ones(2, 4, 4, dtype=torch.bool), fill="black", score="softmax")


def test_occlude_keeps_other_pixels() -> None:
    x = torch.randn(2, 3, 4, 4)
    r = torch.zeros(2, 4, 4, dtype=torch.bool)
    r[:, 0, 0] = True
    out = occlude(x, r, fill="black", mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.5])
    assert torch.equal(out[:, :, 1:], x[:, :, 1:])
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([-0.2, -0.4, -0.6]))
