"""ROAD (Rong et al. 2022): the noisy linear imputation by hand and against both peers'
sparse solves, and the MoRF / LeRF / combined scores against pytorch-grad-cam's ROAD
classes (noise disabled on both sides) and Quantus's ``ROAD``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_cnn

import cleargrad as cg
from cleargrad.metrics import linear_imputation, road_combined, road_curves, road_lerf, road_morf

W_EDGE, W_CORNER = 1 / 6, 1 / 12
SOLVERS = ("direct", "cg")


def _perm_maps(n: int, h: int, w: int) -> torch.Tensor:
    """Maps with distinct integer values (no ties, exact in float32 and after 1 - map)."""
    return torch.stack([torch.from_numpy(np.random.RandomState(i).permutation(h * w).reshape(h, w)) for i in range(n)]
                       ).float()


@pytest.mark.parametrize("solver", SOLVERS)
def test_single_removed_pixel_is_the_weighted_mean_of_its_neighbours(solver: str) -> None:
    x = torch.arange(25.0).view(1, 1, 5, 5) ** 1.5
    rem = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
    rem[0, 0, 2, 3] = True  # interior: all 8 neighbours, weights sum to 1
    rem[0, 0, 0, 0] = True  # corner: 3 neighbours (right, down, diagonal), not adjacent to (2, 3)
    out = linear_imputation(x, rem, solver=solver)
    v = x[0, 0]
    interior = (W_EDGE * (v[1, 3] + v[3, 3] + v[2, 2] + v[2, 4])
                + W_CORNER * (v[1, 2] + v[1, 4] + v[3, 2] + v[3, 4]))
    corner = (W_EDGE * v[0, 1] + W_EDGE * v[1, 0] + W_CORNER * v[1, 1]) / (W_EDGE + W_EDGE + W_CORNER)
    assert out[0, 0, 2, 3].item() == pytest.approx(interior.item(), rel=1e-6)
    assert out[0, 0, 0, 0].item() == pytest.approx(corner.item(), rel=1e-6)
    keep = ~rem
    assert torch.equal(out[keep], x[keep])


@pytest.mark.parametrize("solver", SOLVERS)
def test_two_adjacent_removed_pixels_solve_the_coupled_equations(solver: str) -> None:
    # pixels (1, 1) and (1, 2) of a 3x4 image are removed; each is the mean of its neighbours
    # including the other: u = k1 + W_EDGE v, v = k2 + W_EDGE u (all weights of both sum to 1)
    x = torch.rand(1, 1, 3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rem = torch.zeros(1, 1, 3, 4, dtype=torch.bool)
    rem[0, 0, 1, 1] = rem[0, 0, 1, 2] = True
    out = linear_imputation(x, rem, solver=solver)[0, 0]
    g = x[0, 0]
    k1 = W_EDGE * (g[0, 1] + g[2, 1] + g[1, 0]) + W_CORNER * (g[0, 0] + g[0, 2] + g[2, 0] + g[2, 2])
    k2 = W_EDGE * (g[0, 2] + g[2, 2] + g[1, 3]) + W_CORNER * (g[0, 1] + g[0, 3] + g[2, 1] + g[2, 3])
    u = (k1 + W_EDGE * k2) / (1 - W_EDGE**2)
    v = k2 + W_EDGE * u
    assert out[1, 1].item() == pytest.approx(u.item(), rel=1e-9)
    assert out[1, 2].item() == pytest.approx(v.item(), rel=1e-9)


def test_imputation_equals_the_peers_sparse_solves_and_cg_equals_direct() -> None:
    pr = pytest.importorskip("pytorch_grad_cam.metrics.road")
    qp = pytest.importorskip("quantus.functions.perturb_func")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 9, 11, generator=g)
    rem = torch.rand(3, 1, 9, 11, generator=g) < torch.tensor([0.2, 0.6, 0.9]).view(3, 1, 1, 1)
    direct = linear_imputation(x, rem, solver="direct")
    cgd = linear_imputation(x, rem, solver="cg")
    torch.testing.assert_close(cgd, direct, rtol=1e-5, atol=1e-6)
    for i in range(3):
        keep = (~rem[i, 0]).float()
        peer = pr.NoisyLinearImputer(noise=0.0)(x[i], keep)
        torch.testing.assert_close(direct[i], peer, rtol=1e-5, atol=1e-6)
        idx = np.flatnonzero(rem[i, 0].numpy())
        q = qp.noisy_linear_imputation(x[i].numpy().astype(np.float64), idx, noise=0.0)
        torch.testing.assert_close(direct[i].double(), torch.from_numpy(q), rtol=1e-5, atol=1e-6)


def test_noise_touches_only_imputed_pixels_with_the_given_std_and_is_reproducible() -> None:
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    rem = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1)) < 0.5
    clean = linear_imputation(x, rem)
    a = linear_imputation(x, rem, noise=0.05, generator=torch.Generator().manual_seed(3))
    b = linear_imputation(x, rem, noise=0.05, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    d = a - clean
    assert torch.equal(d[~rem], torch.zeros_like(d[~rem]))
    assert d[rem].std().item() == pytest.approx(0.05, rel=0.1)


def _pgc_scores(metric_cls, x, cams, targets, model):
    return metric_cls(x, cams, targets, model)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_curves_equal_pytorch_grad_cam_road(order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pr = pytest.importorskip("pytorch_grad_cam.metrics.road")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

    monkeypatch.setattr(pr.NoisyLinearImputer.__init__, "__defaults__", (0.0, pr.neighbors_weights))
    model = tiny_cnn(seed=2).eval()
    x = torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(5)) * 3
    cams = _perm_maps(3, 12, 12)
    y = [0, 2, 4]
    cls = pr.ROADMostRelevantFirst if order == "morf" else pr.ROADLeastRelevantFirst
    fractions = (0.1, 0.3, 0.5, 0.7, 0.9)
    for score, tgt in (("logit", ClassifierOutputTarget), ("prob", ClassifierOutputSoftmaxTarget)):
        peer = np.stack([cls(percentile=round(100 * (1 - f)))(x, cams.numpy(), [tgt(t) for t in y], model)
                         for f in fractions], 1)
        ours = road_curves(model, x, cams, y, order=order, fractions=fractions, score=score, noise=0.0)
        assert np.abs(peer).max() > 1e-3  # the removal changes the scores
        np.testing.assert_allclose(ours.numpy(), peer, rtol=1e-4, atol=1e-6)
    avg_cls = pr.ROADMostRelevantFirstAverage if order == "morf" else pr.ROADLeastRelevantFirstAverage
    peer_avg = avg_cls()(x, cams.numpy(), [ClassifierOutputSoftmaxTarget(t) for t in y], model)
    fn = road_morf if order == "morf" else road_lerf
    np.testing.assert_allclose(fn(model, x, cams, y, noise=0.0).numpy(), peer_avg, rtol=1e-4, atol=1e-6)


def test_combined_equals_pytorch_grad_cam_road_combined(monkeypatch: pytest.MonkeyPatch) -> None:
    pr = pytest.importorskip("pytorch_grad_cam.metrics.road")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    monkeypatch.setattr(pr.NoisyLinearImputer.__init__, "__defaults__", (0.0, pr.neighbors_weights))
    model = tiny_cnn(seed=3).eval()
    x = torch.randn(2, 1, 10, 10, generator=torch.Generator().manual_seed(6)) * 3
    cams = _perm_maps(2, 10, 10)
    peer = pr.ROADCombined()(x, cams.numpy(), [ClassifierOutputTarget(t) for t in (1, 3)], model)
    ours = road_combined(model, x, cams, [1, 3], score="logit", noise=0.0)
    assert np.abs(peer).max() > 1e-3
    np.testing.assert_allclose(ours.numpy(), peer, rtol=1e-4, atol=1e-6)


def test_accuracy_curve_equals_quantus_road() -> None:
    quantus = pytest.importorskip("quantus")
    model = tiny_cnn(seed=4, num_classes=3).eval()
    x = torch.randn(6, 1, 10, 10, generator=torch.Generator().manual_seed(7)) * 3
    with torch.no_grad():
        y = model(x).argmax(1)
    a = torch.rand(6, 1, 10, 10, generator=torch.Generator().manual_seed(8))
    pct = [10, 30, 50, 70, 90]
    q = quantus.ROAD(percentages=pct, noise=0.0, normalise=False, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu")
    ours = road_curves(model, x, a, y, order="morf", fractions=[p / 100 for p in pct], selection="count",
                       score="correct", relative=False, noise=0.0)
    assert ours.min() < 1  # some removal flips a prediction
    np.testing.assert_allclose(ours.mean(0).numpy(), [q[p] for p in pct], atol=1e-12)


def test_fixed_substrate_sets_removed_pixels_to_fill() -> None:
    # a linear "model" reads the image back: logit_0 = sum of pixels, logit_1 = 0
    class Sum(torch.nn.Module):
        def forward(self, x):
            s = x.flatten(1).sum(1)
            return torch.stack([s, torch.zeros_like(s)], 1)

    x = torch.ones(1, 1, 4, 5)
    s = torch.arange(20.0).view(1, 1, 4, 5)
    curves = road_curves(Sum(), x, s, 0, fractions=(0.25, 0.5), selection="count", imputation="fixed", fill=-1.0,
                         score="logit", relative=False)
    # removing k pixels turns k ones into -1: sum = 20 - 2k with k = 5 and 10
    assert curves.tolist() == [[10.0, 0.0]]


def test_a_better_map_scores_better_on_a_linear_model() -> None:
    # logit_0 = w . x: the map |w * x| is the exact contribution, its reverse the worst order
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 1, 8, 8, generator=g)

    class Lin(torch.nn.Module):
        def forward(self, x):
            s = (x * w).flatten(1).sum(1)
            return torch.stack([s, -s], 1)

    x = torch.rand(4, 1, 8, 8, generator=g)
    good = (x * w).clamp_min(0)
    bad = -(x * w)
    assert (road_morf(Lin(), x, good, 0, score="logit", noise=0.0, reduction="none")
            < road_morf(Lin(), x, bad, 0, score="logit", noise=0.0, reduction="none")).all()


def test_bad_inputs_raise_specific_errors() -> None:
    model = tiny_cnn()
    x, m = torch.randn(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    with pytest.raises(cg.ConfigError, match="fractions"):
        road_morf(model, x, m, fractions=(0.5, 1.5))
    with pytest.raises(cg.ConfigError, match="fractions"):
        road_morf(model, x, m, fractions=())
    with pytest.raises(cg.ConfigError, match="imputation"):
        road_morf(model, x, m, imputation="blur")
    with pytest.raises(cg.ConfigError, match="score"):
        road_lerf(model, x, m, score="auc")
    with pytest.raises(cg.ConfigError, match="selection"):
        road_lerf(model, x, m, selection="otsu")
    with pytest.raises(cg.ConfigError, match="solver"):
        road_combined(model, x, m, solver="lu")
    with pytest.raises(cg.InputError, match="fill"):
        road_morf(model, x, m, imputation="fixed", fill=torch.zeros(3, 3))
    with pytest.raises(cg.InputError):
        road_morf(model, x, torch.rand(3, 1, 8, 8))
    with pytest.raises(cg.InputError, match="NaN"):
        road_morf(model, x, torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(cg.TargetError):
        road_morf(model, x, m, [0, 99])
    with pytest.raises(cg.ConfigError, match="noise"):
        linear_imputation(x, m > 0.5, noise=-1.0)
    with pytest.warns(RuntimeWarning, match="undefined"):
        v = road_morf(model, x, torch.cat([m[:1], torch.zeros(1, 1, 8, 8)]))
    assert torch.isfinite(v[0]) and torch.isnan(v[1])


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_fully_removed_image_is_imputed_as_zero(solver: str) -> None:
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(0)) + 1
    rem = torch.zeros(2, 1, 6, 6, dtype=torch.bool)
    rem[0] = True
    rem[1, 0, 2, 2] = True
    out = linear_imputation(x, rem, solver=solver)
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    assert torch.isfinite(out).all() and out[1, 0, 2, 2] > 1
