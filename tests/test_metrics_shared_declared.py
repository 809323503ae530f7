"""``SharedBatch`` shares work by what a metric declares on ``@metric`` (``shares=``), not by its name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from cleargrad.errors import ConfigError
from cleargrad.metrics import METRICS, SHARED_METRICS, SharedBatch, deletion, insertion, metric, sparseness

CURVE = {"step", "n_steps", "substrate", "klen", "sigma", "which_class", "score", "reduction", "batch_size"}
AVERAGE = {"normalize", "space", "mean", "std", "reduction", "batch_size"}
INFIDELITY = {"perturbation", "n_perturb", "noise_std", "square_size", "baseline", "normalize", "score", "batch_size"}


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Names registered by a test, removed from the registry afterwards."""
    names: list[str] = []
    yield names
    for n in names:
        METRICS.pop(n, None)


def _batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4)).eval()
    x = torch.randn(3, 1, 6, 6, generator=g)
    a = torch.randn(3, 1, 6, 6, generator=g)
    return model, x, a, torch.tensor([0, 2, 1])


def test_the_shared_table_is_the_one_the_names_gave() -> None:
    # the table SharedBatch dispatched by name before the metrics declared it
    expected = {
        "insertion": CURVE, "deletion": CURVE, "average_drop": AVERAGE, "average_gain": AVERAGE | {"ag_denominator"},
        "average_increase": AVERAGE, "infidelity": INFIDELITY, "sparseness": {"reduction"},
        "complexity": {"reduction"},
    }
    assert {k: SHARED_METRICS[k] for k in expected} == expected
    assert METRICS["insertion"].shares == "curve" and METRICS["average_gain"].shares == "masked"


def test_a_metric_scored_alone_by_default(registered: list[str]) -> None:
    @metric(direction="higher", category="complexity", needs_model=False)
    def peak_value(explanation: torch.Tensor) -> torch.Tensor:
        """Largest value of each map."""
        return explanation.flatten(1).amax(1)

    registered.append("peak_value")
    model, x, a, t = _batch()
    assert METRICS["peak_value"].shares is None and "peak_value" not in SHARED_METRICS
    assert SharedBatch(model, x).score("peak_value", {"m": a}, t) is None


def test_a_new_name_declaring_map_sharing_is_scored_by_its_own_function(registered: list[str]) -> None:
    @metric(direction="higher", category="complexity", needs_model=False, shares="map")
    def peak_value(explanation: torch.Tensor, *, reduction: str | None = None) -> torch.Tensor:
        """Largest value of each map."""
        return explanation.flatten(1).amax(1) + (0 if reduction is None else 1)

    registered.append("peak_value")
    model, x, a, t = _batch()
    assert SHARED_METRICS["peak_value"] == {"reduction"}
    out = SharedBatch(model, x).score("peak_value", {"m": a}, t, {"reduction": "sum"})
    torch.testing.assert_close(out["m"], a.flatten(1).amax(1) + 1)
    sp = SharedBatch(model, x).score("sparseness", {"m": a}, t)
    torch.testing.assert_close(sp["m"], sparseness(a))


@pytest.mark.parametrize("start, substrate, reference", [("image", "zero", deletion), ("canvas", "auto", insertion)])
def test_a_curve_metric_under_another_name_follows_its_declaration(
    registered: list[str], start: str, substrate: str, reference
) -> None:
    @metric(direction="higher", category="faithfulness", shares="curve",
            shared_params={"start": start, "substrate": substrate})
    def renamed_curve(model: nn.Module, x: torch.Tensor, explanation: torch.Tensor, target=None, **kw):
        """A curve metric under a name SharedBatch has never seen."""
        return reference(model, x, explanation, target, **kw)

    registered.append("renamed_curve")
    model, x, a, t = _batch()
    shared = SharedBatch(model, x)
    got = shared.score("renamed_curve", {"m": a}, t, {"step": 5})["m"]
    torch.testing.assert_close(got.double(), reference(model, x, a, t, step=5).double(), rtol=1e-5, atol=1e-6)
    assert ("renamed_curve", "m") in shared.last_curves


def test_an_unknown_kind_of_sharing_is_refused() -> None:
    with pytest.raises(ConfigError, match="shares must be None or one of"):
        metric(direction="higher", category="complexity", shares="everything")


def test_curve_options_travel_as_one_object_and_old_keywords_still_work() -> None:
    from cleargrad.metrics import CurveOptions, perturbation_curve
    from cleargrad.metrics.insertion_deletion import pixel_rank
    from cleargrad.metrics.maps import prepare_maps
    from cleargrad.metrics.scoring import evaluating

    model, x, a, t = _batch()
    s = prepare_maps(a, x)
    zero = torch.zeros_like(x)
    with evaluating(model):
        old = perturbation_curve(model, x, s, x, zero, t, step=7, score="logit", batch_size=4)
        new = perturbation_curve(model, x, s, x, zero, t, CurveOptions(step=7, score="logit", batch_size=4))
        with pytest.raises(ConfigError, match="either as options=CurveOptions"):
            perturbation_curve(model, x, s, x, zero, t, CurveOptions(step=7), score="logit")
        with pytest.raises(ConfigError, match="unknown curve option.*valid: step"):
            perturbation_curve(model, x, s, x, zero, t, stride=7)
        # hand-computed first and last points: the image itself, then every pixel from the zero canvas
        logits_x, logits_0 = model(x), model(zero)
    torch.testing.assert_close(old, new)
    assert pixel_rank(s).shape == s.shape and old.shape == (3, 1 + -(-36 // 7))
    torch.testing.assert_close(old[:, 0], logits_x.gather(1, t[:, None])[:, 0])
    torch.testing.assert_close(old[:, -1], logits_0.gather(1, t[:, None])[:, 0])
