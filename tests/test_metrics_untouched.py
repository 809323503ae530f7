"""One case table over every metric that runs a model: the model is left exactly as
found (state, flags, grads, hooks, modes), after a normal call, after a bad target and
after an error raised inside the model's forward; metrics run it in eval mode even
when it was left in training mode. Also: the registry lists every metric with a
valid direction and category, and results stay on the input's device and dtype."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from helpers import ModelSnapshot, tiny_cnn
from torch import nn

import cleargrad as cg
from cleargrad.metrics import CATEGORIES, DIRECTIONS, METRICS, get_metric

X = torch.randn(2, 1, 12, 12)
MAP = torch.rand(2, 1, 12, 12)
REGION = torch.zeros(2, 12, 12, dtype=torch.bool)
REGION[:, 3:7, 2:9] = True

def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


# name -> call(model, target); kept tiny
CASES: dict[str, Callable[[nn.Module, object], object]] = {
    "average_drop": lambda m, t: cg.metrics.average_drop(m, X, MAP, t),
    "average_gain": lambda m, t: cg.metrics.average_gain(m, X, MAP, t),
    "average_increase": lambda m, t: cg.metrics.average_increase(m, X, MAP, t),
    "insertion": lambda m, t: cg.metrics.insertion(m, X, MAP, t, step=24),
    "deletion": lambda m, t: cg.metrics.deletion(m, X, MAP, t, step=24),
    "infidelity": lambda m, t: cg.metrics.infidelity(m, X, MAP, t, n_perturb=3),
    "region_sensitivity": lambda m, t: cg.metrics.region_sensitivity(m, X, REGION, t),
    "max_sensitivity": lambda m, t: cg.metrics.max_sensitivity(
        cg.Saliency(m).attribute, X, t, n_samples=2, model=m
    ),
    "road_morf": lambda m, t: cg.metrics.road_morf(m, X, MAP, t, fractions=(0.2, 0.6), generator=_gen()),
    "road_lerf": lambda m, t: cg.metrics.road_lerf(m, X, MAP, t, fractions=(0.2, 0.6), solver="cg", generator=_gen()),
    "road_combined": lambda m, t: cg.metrics.road_combined(m, X, MAP, t, fractions=(0.5,), generator=_gen()),
    "mprt": lambda m, t: cg.metrics.mprt(m, X, "saliency", t, layers=["classifier", "features.3.0"]),
    "smooth_mprt": lambda m, t: cg.metrics.smooth_mprt(m, X, "saliency", t, n_samples=2, layers=["classifier"],
                                                       generator=_gen()),
    "efficient_mprt": lambda m, t: cg.metrics.efficient_mprt(m, X, "saliency", t, layers=["classifier"]),
    "random_logit": lambda m, t: cg.metrics.random_logit(m, X, "saliency", t, generator=_gen()),
    "completeness": lambda m, t: cg.metrics.completeness(m, X, MAP, t),
    "faithfulness_correlation": lambda m, t: cg.metrics.faithfulness_correlation(
        m, X, MAP, t, n_runs=3, subset_size=10, generator=_gen()
    ),
    "monotonicity_arya": lambda m, t: cg.metrics.monotonicity_arya(m, X, MAP, t, step=24),
    "selectivity": lambda m, t: cg.metrics.selectivity(m, X, MAP, t, patch_size=6),
    "monotonicity_nguyen": lambda m, t: cg.metrics.monotonicity_nguyen(m, X, MAP, t, step=24, n_samples=2,
                                                                       generator=_gen()),
    "region_perturbation": lambda m, t: cg.metrics.region_perturbation(m, X, MAP, t, patch_size=6),
    "irof": lambda m, t: cg.metrics.irof(m, X, MAP, t, segments=cg.metrics.grid_segments(X, 6)),
    "sufficiency": lambda m, t: cg.metrics.sufficiency(m, X, MAP, threshold=1.0),
    "non_sensitivity": lambda m, t: cg.metrics.non_sensitivity(m, X[:, :, :4, :4], MAP[:, :, :4, :4], t),
    "relative_input_stability": lambda m, t: cg.metrics.relative_input_stability(
        m, cg.Saliency(m).attribute, X, t, n_samples=2, perturbation=lambda xi, g: 1e-3 * torch.ones_like(xi)),
    "relative_output_stability": lambda m, t: cg.metrics.relative_output_stability(
        m, cg.Saliency(m).attribute, X, t, n_samples=2, perturbation=lambda xi, g: 1e-3 * torch.ones_like(xi)),
    "relative_representation_stability": lambda m, t: cg.metrics.relative_representation_stability(
        m, cg.Saliency(m).attribute, X, t, n_samples=2, perturbation=lambda xi, g: 1e-3 * torch.ones_like(xi)),
    "input_invariance": lambda m, t: cg.metrics.input_invariance(m, X, "saliency", t),
}
#: metrics whose explainer (a cleargrad method) refuses a model in training mode
_EXPLAINER_METRICS = {"max_sensitivity", "mprt", "smooth_mprt", "efficient_mprt", "random_logit",
                      "relative_input_stability", "relative_output_stability", "relative_representation_stability",
                      "input_invariance"}
#: metrics that take no target (sufficiency compares the model's predicted classes)
_NO_TARGET = {"sufficiency"}


def test_every_model_metric_is_in_the_table() -> None:
    needs_model = {k for k, v in METRICS.items() if v.needs_model}
    assert needs_model <= set(CASES)


def test_registry_entries() -> None:
    expected = {
        "average_drop", "average_gain", "average_increase", "insertion", "deletion", "infidelity",
        "max_sensitivity", "sparseness", "complexity", "convex_hull_region", "region_complexity",
        "region_sensitivity", "pointing_game", "energy_pointing_game",
        "road_morf", "road_lerf", "road_combined", "mprt", "smooth_mprt", "efficient_mprt", "random_logit",
        "relevance_mass_accuracy", "relevance_rank_accuracy", "top_k_intersection", "attribution_localisation",
        "localisation_auc", "effective_complexity", "completeness", "faithfulness_correlation", "monotonicity_arya",
        "avg_sensitivity", "selectivity", "local_lipschitz_estimate",
        "monotonicity_nguyen", "region_perturbation", "irof", "sufficiency", "continuity",
        "relative_input_stability", "relative_output_stability", "relative_representation_stability",
        "non_sensitivity", "input_invariance",
    } - {"convex_hull_region"}  # a region builder, not a metric
    assert set(METRICS) == expected
    for info in METRICS.values():
        assert info.direction in DIRECTIONS and info.category in CATEGORIES and info.summary
        assert info.fn.direction == info.direction
    assert get_metric("Insertion").direction == "higher" and get_metric("deletion").direction == "lower"
    assert get_metric("max-sensitivity").category == "robustness"
    assert METRICS["insertion"].better(0.8, 0.2) and METRICS["deletion"].better(0.2, 0.8)
    with pytest.raises(cg.ConfigError, match="unknown metric"):
        get_metric("accuracy")


def _prime(model: nn.Module) -> None:
    for i, p in enumerate(model.parameters()):
        if i % 2 == 0:
            p.grad = torch.randn_like(p)


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_left_untouched(name: str) -> None:
    model = tiny_cnn()
    _prime(model)
    snap = ModelSnapshot.take(model)
    out = CASES[name](model, [0, 1])
    vals = out[0] if isinstance(out, tuple) else out
    assert vals.shape == (2,) and torch.isfinite(vals).all()
    snap.assert_same(model)
    if name in _NO_TARGET:
        return
    with pytest.raises(cg.TargetError):
        CASES[name](model, [0, 99])
    snap.assert_same(model)


class Raises(nn.Module):
    """Identity that raises when armed, whatever the grad mode (metrics run in inference mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            raise RuntimeError("boom")
        return x


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_untouched_after_error_inside_forward(name: str) -> None:
    model = nn.Sequential(tiny_cnn(), Raises()).eval()
    _prime(model)
    snap = ModelSnapshot.take(model)
    model[1].armed = True
    with pytest.raises(RuntimeError, match="boom"):
        CASES[name](model, [0, 1])
    model[1].armed = False
    snap.assert_same(model)


@pytest.mark.parametrize("name", sorted(set(CASES) - _EXPLAINER_METRICS))
def test_training_mode_model_is_scored_in_eval_mode_and_restored(name: str) -> None:
    model = tiny_cnn()
    expected = CASES[name](model, [0, 1])
    model.train()
    snap = ModelSnapshot.take(model)  # BatchNorm statistics must not move
    got = CASES[name](model, [0, 1])
    snap.assert_same(model)
    assert model.training
    e = expected[0] if isinstance(expected, tuple) else expected
    g = got[0] if isinstance(got, tuple) else got
    if name != "infidelity":  # infidelity draws new noise on each call
        assert torch.allclose(e, g, atol=1e-6)


def test_results_follow_input_dtype() -> None:
    model = tiny_cnn().double()
    x = X.double()
    assert cg.metrics.deletion(model, x, MAP, 0, step=24).dtype == torch.float64
    assert cg.metrics.region_sensitivity(model, x, REGION, 0).rs.dtype == torch.float64
