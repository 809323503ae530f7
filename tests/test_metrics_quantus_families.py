"""Quantus's localisation, complexity and axiomatic metrics: ours equal Quantus's on the
same maps and object masks (the synthetic shapes set), hand-computed cases, and bad
inputs. Where Quantus's definition differs (batch-wide normalisation, exact float
equality for completeness) the test states the setting that makes them coincide."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ModelSnapshot, tiny_cnn

import cleargrad as cg
from cleargrad.data.synthetic import SyntheticShapes
from cleargrad.metrics import (
    attribution_localisation,
    completeness,
    effective_complexity,
    faithfulness_correlation,
    localisation_auc,
    monotonicity_arya,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)

DATA = SyntheticShapes(n=6, size=16, seed=3)
X, Y, MASKS = DATA.images, DATA.labels, DATA.masks
# a map that is mostly on the shape plus noise; distinct values (no ties)
MAPS = MASKS.float() * 0.5 + torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def _q(cls, **kw):
    quantus = pytest.importorskip("quantus")
    metric = getattr(quantus, cls)(disable_warnings=True, **kw)
    return np.array(metric(model=None, x_batch=X.numpy(), y_batch=Y.numpy(), a_batch=MAPS.numpy(),
                           s_batch=MASKS.numpy().astype(float), device="cpu"), dtype=float)


@pytest.mark.parametrize(("ours", "cls", "kw", "qkw"), [
    (relevance_mass_accuracy, "RelevanceMassAccuracy", {}, {}),
    (relevance_rank_accuracy, "RelevanceRankAccuracy", {}, {}),
    (top_k_intersection, "TopKIntersection", {"k": 40}, {"k": 40}),
    (top_k_intersection, "TopKIntersection", {"k": 40, "concept_influence": True},
     {"k": 40, "concept_influence": True}),
    (attribution_localisation, "AttributionLocalisation", {}, {}),
    (localisation_auc, "AUC", {}, {}),
])
def test_localisation_equals_quantus(ours, cls, kw, qkw) -> None:
    np.testing.assert_allclose(ours(MAPS, MASKS, **kw).numpy(), _q(cls, **qkw), atol=1e-6)


def test_effective_complexity_equals_quantus_without_its_batch_normalisation() -> None:
    a = MAPS * (MAPS > 0.8)
    quantus = pytest.importorskip("quantus")
    q = quantus.EffectiveComplexity(eps=0.9, normalise=False, disable_warnings=True)(
        model=None, x_batch=X.numpy(), y_batch=Y.numpy(), a_batch=a.numpy(), device="cpu")
    np.testing.assert_array_equal(effective_complexity(a, eps=0.9, normalise=False).numpy(), q)


def test_localisation_by_hand() -> None:
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    m[0, 0, :2] = True  # object = pixels (0, 0) and (0, 1)
    s = torch.zeros(1, 4, 4)
    s[0, 0, 0], s[0, 0, 2], s[0, 1, 1] = 3.0, 1.0, 4.0  # 3 on the object, 5 off it
    assert relevance_mass_accuracy(s, m).item() == pytest.approx(3 / 8)
    assert relevance_rank_accuracy(s, m).item() == pytest.approx(1 / 2)  # top-2: 4 (off), 3 (on)
    assert top_k_intersection(s, m, k=3).item() == pytest.approx(1 / 3)
    assert top_k_intersection(s, m, k=3, concept_influence=True).item() == pytest.approx(1 / 3 * 16 / 2)
    assert attribution_localisation(s, m, weighted=True).item() == pytest.approx(3 / 8 * 16 / 2)
    # AUC: object scores {3, 0}, background 14 values {4, 1, 0 x 12}: P(on > off) + 1/2 P(tie)
    # 3 beats 13 of 14; 0 beats none and ties 12
    assert localisation_auc(s, m).item() == pytest.approx((13 + 0.5 * 12) / (2 * 14))
    assert effective_complexity(s, eps=0.5).item() == 2  # 3/4 and 4/4 exceed 0.5 of the peak


def test_completeness_of_integrated_gradients_and_a_linear_model() -> None:
    w = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(0))

    class Lin(torch.nn.Module):
        def forward(self, x):
            z = (x * w).flatten(1).sum(1)
            return torch.stack([z, -z], 1)

    x = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    exact = x * w  # input x gradient of a linear model from a zero baseline: complete
    assert completeness(Lin(), x, exact, 0).max() < 1e-5
    assert completeness(Lin(), x, 2 * exact, 0, relative=True).sub(1).abs().max() < 1e-5  # sum off by 100 %
    model = tiny_cnn(seed=1)
    ig = cg.IntegratedGradients(model).attribute(X[:2], Y[:2], n_steps=64)
    sal = cg.Saliency(model).attribute(X[:2], Y[:2])
    assert (completeness(model, X[:2], ig, Y[:2], relative=True) < completeness(model, X[:2], sal, Y[:2],
                                                                                 relative=True)).all()


def test_completeness_leaves_the_model_untouched() -> None:
    model = tiny_cnn()
    model.classifier.weight.grad = torch.ones_like(model.classifier.weight)
    snap = ModelSnapshot.take(model)
    completeness(model, X[:2], MAPS[:2], [0, 1])
    with pytest.raises(cg.TargetError):
        completeness(model, X[:2], MAPS[:2], [0, 99])
    snap.assert_same(model)


def test_bad_inputs_and_undefined_values() -> None:
    with pytest.raises(cg.InputError, match="masks"):
        relevance_mass_accuracy(MAPS, MASKS[:2])
    with pytest.raises(cg.ConfigError, match="k must be"):
        top_k_intersection(MAPS, MASKS, k=10_000)
    with pytest.raises(cg.ConfigError, match="eps"):
        effective_complexity(MAPS, eps=-1)
    with pytest.raises(cg.InputError, match="baseline"):
        completeness(tiny_cnn(), X[:2], MAPS[:2], [0, 1], baseline=torch.zeros(3, 3))
    empty = MASKS.clone()
    empty[0] = False
    for fn in (relevance_mass_accuracy, relevance_rank_accuracy, attribution_localisation, localisation_auc):
        with pytest.warns(RuntimeWarning, match="empty"):
            v = fn(MAPS, empty)
        assert torch.isnan(v[0]) and torch.isfinite(v[1:]).all()


# -- faithfulness correlation and monotonicity ------------------------------------------------


def test_faithfulness_correlation_equals_quantus_with_its_subsets() -> None:
    quantus = pytest.importorskip("quantus")
    model = tiny_cnn(seed=1).eval()
    x = torch.randn(3, 1, 10, 10, generator=torch.Generator().manual_seed(0))
    a = torch.randn(3, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    y = np.array([0, 1, 2])
    np.random.seed(0)
    runs = []
    for _ in range(10):  # Quantus's draws, in its order
        runs.append(np.stack([np.random.choice(100, 20, replace=False) for _ in range(3)]))
        np.random.uniform(0.0, 1.0, size=3)  # its baseline table also draws a "uniform" entry per call
    np.random.seed(0)
    q = quantus.FaithfulnessCorrelation(nr_runs=10, subset_size=20, return_aggregate=False, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=y, a_batch=a.numpy(), device="cpu")
    ours = faithfulness_correlation(model, x, a, y.tolist(), subsets=torch.from_numpy(np.stack(runs, 1)))
    np.testing.assert_allclose(ours.numpy(), q, atol=1e-5)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(faithfulness_correlation(model, x, a, 0, n_runs=5, subset_size=10, generator=g1),
                       faithfulness_correlation(model, x, a, 0, n_runs=5, subset_size=10, generator=g2))


class _Lin(torch.nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = w

    def forward(self, x):
        z = (x * self.w).flatten(1).sum(1)
        return torch.stack([z, -z], 1)


def test_faithfulness_correlation_of_the_exact_contributions_is_one() -> None:
    w = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    # baseline 0: the logit drop of a subset is exactly the sum of w * x over it
    v = faithfulness_correlation(_Lin(w), x, x * w, 0, n_runs=20, subset_size=5, baseline=0.0,
                                 generator=torch.Generator().manual_seed(2))
    assert torch.allclose(v, torch.ones(2), atol=1e-5)


def test_monotonicity_arya_by_hand() -> None:
    x = torch.ones(1, 1, 2, 2)
    pos = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    mixed = torch.tensor([[[[1.0, -1.0], [2.0, 3.0]]]])
    # restoring pixels of a model whose weights are all positive only raises the logit
    ok, curves = monotonicity_arya(_Lin(pos), x, pos, 0, baseline=0.0, score="logit", return_curves=True)
    assert ok.item() == 1 and curves.tolist() == [[0.0, 1.0, 3.0, 6.0, 10.0]]  # order 1, 2, 3, 4
    # the pixel of weight -1 lowers it when restored (its |attribution| 1 ranks it among the first)
    assert monotonicity_arya(_Lin(mixed), x, mixed, 0, baseline=0.0, score="logit").item() == 0
    assert monotonicity_arya(_Lin(mixed), x, mixed, 0, baseline=0.0, score="logit", tolerance=1.5).item() == 1


def test_faithfulness_bad_inputs() -> None:
    model = tiny_cnn()
    with pytest.raises(cg.ConfigError, match="subset_size"):
        faithfulness_correlation(model, X, MAPS, 0, subset_size=10_000)
    with pytest.raises(cg.InputError, match="subsets"):
        faithfulness_correlation(model, X, MAPS, 0, subsets=torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(cg.ConfigError, match="baseline"):
        monotonicity_arya(model, X, MAPS, 0, baseline="grey")
    with pytest.raises(cg.ConfigError, match="step"):
        monotonicity_arya(model, X, MAPS, 0, step=0)


def test_avg_sensitivity_is_the_mean_of_the_distances_max_sensitivity_maximises() -> None:
    model = tiny_cnn(seed=1)
    explain = cg.Saliency(model).attribute
    x = X[:3]
    kw = dict(radius=0.05, n_samples=4)
    dist, zero = cg.metrics.sensitivity_distances(explain, x, [0, 1, 2], generator=torch.Generator().manual_seed(0),
                                                  **kw)
    avg = cg.metrics.avg_sensitivity(explain, x, [0, 1, 2], generator=torch.Generator().manual_seed(0), **kw)
    mx = cg.metrics.max_sensitivity(explain, x, [0, 1, 2], generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(avg, dist.mean(1))
    torch.testing.assert_close(mx, dist.amax(1))
    assert (avg <= mx).all() and not zero.any()
    # by hand: one draw, a fixed perturbation d: ||Phi(x + d) - Phi(x)|| / ||Phi(x)||
    d = torch.full_like(x[:1], 0.03)
    one = cg.metrics.avg_sensitivity(explain, x[:1], [0], n_samples=1, perturbation=lambda xi, g: d)
    p0, p1 = explain(x[:1], [0]), explain(x[:1] + d, [0])
    assert one.item() == pytest.approx(((p1 - p0).norm() / p0.norm()).item(), rel=1e-5)
    with pytest.raises(cg.ConfigError, match="n_samples"):
        cg.metrics.avg_sensitivity(explain, x, n_samples=0)


def test_selectivity_curve_equals_quantus() -> None:
    quantus = pytest.importorskip("quantus")
    model = tiny_cnn(seed=1).eval()
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    a = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    y = np.array([0, 1, 2])  # 16 px: no padding (Quantus's "black" would then include its zero padding)
    q = quantus.Selectivity(patch_size=4, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=y, a_batch=a.numpy(), device="cpu")
    value, curves = cg.metrics.selectivity(model, x, a, y.tolist(), patch_size=4, return_curves=True)
    np.testing.assert_allclose(curves.numpy(), np.array(q), atol=1e-6)
    torch.testing.assert_close(value, curves.mean(1))


def test_selectivity_by_hand_with_border_patches() -> None:
    w = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]])
    x = torch.ones(1, 1, 3, 3)
    # 2x2 patches on 3x3: {0,1,3,4} sum 12, {2,5} 9, {6,7} 15, {8} 9 -> removal order 15, 12, 9 (patch 1), 9
    _, curves = cg.metrics.selectivity(_Lin(w), x, w, 0, patch_size=2, baseline=0.0, score="logit",
                                       return_curves=True)
    assert curves.tolist() == [[45.0 - 15, 45.0 - 27, 45.0 - 36, 0.0]]
    with pytest.raises(cg.ConfigError, match="patch_size"):
        cg.metrics.selectivity(_Lin(w), x, w, 0, patch_size=0)


def test_local_lipschitz_estimate_by_hand() -> None:
    model = tiny_cnn(seed=1)
    explain = cg.Saliency(model).attribute
    x = X[:2]
    d = torch.full_like(x, 0.05)
    got = cg.metrics.local_lipschitz_estimate(explain, x, [0, 1], n_samples=1, perturbation=lambda xi, g: d)
    p0, p1 = explain(x, [0, 1]), explain(x + d, [0, 1])
    want = (p1 - p0).flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # a linear model's gradient does not move: Lipschitz estimate 0
    lin = _Lin(torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))).eval()
    lin_explain = cg.Saliency(lin).attribute
    z = cg.metrics.local_lipschitz_estimate(lin_explain, x, [0, 0], n_samples=3,
                                            generator=torch.Generator().manual_seed(1))
    assert torch.equal(z, torch.zeros(2))
    with pytest.warns(RuntimeWarning, match="undefined"):
        nan = cg.metrics.local_lipschitz_estimate(explain, x, [0, 1], n_samples=1,
                                                  perturbation=lambda xi, g: torch.zeros_like(xi))
    assert torch.isnan(nan).all()
