"""An all-zero map says nothing: every registered metric returns NaN for it (with a
warning), never a number that would enter a mean silently, and the summaries count it."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from helpers import tiny_cnn

from cleargrad import metrics as M
from cleargrad.cli.tables import print_results
from cleargrad.evaluation.console import UI
from cleargrad.store import ResultRow, ResultStore

Y = torch.tensor([1, 3])


def _cases() -> dict[str, Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]]:
    """How each registered metric is called with maps ``e`` whose image 1 is all zero."""
    masks = torch.zeros(2, 12, 12, dtype=torch.bool)
    masks[:, 3:9, 3:9] = True
    g = torch.Generator().manual_seed(0)

    def blank_second(xi: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # explain_fn: image 1 blank
        return xi.abs() * (t != Y[1]).view(-1, 1, 1, 1)

    def explain_blank_second(m: torch.nn.Module, xi: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return m(xi)[:, :1].view(-1, 1, 1, 1) * xi.abs() * (torch.arange(len(xi)) != 1).view(-1, 1, 1, 1)

    return {
        "average_drop": lambda m, x, e: M.average_drop(m, x, e, Y),
        "average_gain": lambda m, x, e: M.average_gain(m, x, e, Y),
        "average_increase": lambda m, x, e: M.average_increase(m, x, e, Y),
        "complexity": lambda m, x, e: M.complexity(e),
        "sparseness": lambda m, x, e: M.sparseness(e),
        "infidelity": lambda m, x, e: M.infidelity(m, x, e, Y, n_perturb=4, generator=g),
        "insertion": lambda m, x, e: M.insertion(m, x, e, Y, step=24),
        "deletion": lambda m, x, e: M.deletion(m, x, e, Y, step=24),
        "pointing_game": lambda m, x, e: M.pointing_game(e, masks),
        "energy_pointing_game": lambda m, x, e: M.energy_pointing_game(e, masks),
        "region_complexity": lambda m, x, e: M.region_complexity(e, torch.rand(2, 12, 12)),
        "region_sensitivity": lambda m, x, e: M.region_sensitivity(m, x, M.convex_hull_region(e), Y).rs,
        "max_sensitivity": lambda m, x, e: M.max_sensitivity(blank_second, x, Y, n_samples=2, generator=g),
        "road_morf": lambda m, x, e: M.road_morf(m, x, e, Y, fractions=(0.5,), generator=g),
        "road_lerf": lambda m, x, e: M.road_lerf(m, x, e, Y, fractions=(0.5,), generator=g),
        "road_combined": lambda m, x, e: M.road_combined(m, x, e, Y, fractions=(0.5,), generator=g),
        "mprt": lambda m, x, e: M.mprt(m, x, explain_blank_second, Y, layers=["classifier"]),
        "smooth_mprt": lambda m, x, e: M.smooth_mprt(m, x, explain_blank_second, Y, n_samples=2,
                                                     layers=["classifier"], generator=g),
        "efficient_mprt": lambda m, x, e: M.efficient_mprt(m, x, explain_blank_second, Y),
        "random_logit": lambda m, x, e: M.random_logit(m, x, explain_blank_second, Y, generator=g),
        "relevance_mass_accuracy": lambda m, x, e: M.relevance_mass_accuracy(e, masks),
        "relevance_rank_accuracy": lambda m, x, e: M.relevance_rank_accuracy(e, masks),
        "top_k_intersection": lambda m, x, e: M.top_k_intersection(e, masks, k=20),
        "attribution_localisation": lambda m, x, e: M.attribution_localisation(e, masks),
        "localisation_auc": lambda m, x, e: M.localisation_auc(e, masks),
        "effective_complexity": lambda m, x, e: M.effective_complexity(e),
        "completeness": lambda m, x, e: M.completeness(m, x, e, Y),
        "faithfulness_correlation": lambda m, x, e: M.faithfulness_correlation(m, x, e, Y, n_runs=4, subset_size=8,
                                                                               generator=g),
        "monotonicity_arya": lambda m, x, e: M.monotonicity_arya(m, x, e, Y, step=24),
        "avg_sensitivity": lambda m, x, e: M.avg_sensitivity(blank_second, x, Y, n_samples=2, generator=g),
        "selectivity": lambda m, x, e: M.selectivity(m, x, e, Y, patch_size=6),
        "local_lipschitz_estimate": lambda m, x, e: M.local_lipschitz_estimate(blank_second, x, Y, n_samples=2,
                                                                               generator=g),
        "monotonicity_nguyen": lambda m, x, e: M.monotonicity_nguyen(m, x, e, Y, step=24, n_samples=2, generator=g),
        "region_perturbation": lambda m, x, e: M.region_perturbation(m, x, e, Y, patch_size=6),
        "irof": lambda m, x, e: M.irof(m, x, e, Y, segments=M.grid_segments(x, 6)),
        "sufficiency": lambda m, x, e: M.sufficiency(m, x, e, threshold=1.0),
        "continuity": lambda m, x, e: M.continuity(blank_second, x, Y, n_steps=3),
        "relative_input_stability": lambda m, x, e: M.relative_input_stability(
            m, blank_second, x, Y, e, n_samples=2, perturbation=lambda xi, gg: 1e-3 * torch.ones_like(xi)),
        "relative_output_stability": lambda m, x, e: M.relative_output_stability(
            m, blank_second, x, Y, e, n_samples=2, perturbation=lambda xi, gg: 1e-3 * torch.ones_like(xi)),
        "relative_representation_stability": lambda m, x, e: M.relative_representation_stability(
            m, blank_second, x, Y, e, n_samples=2, perturbation=lambda xi, gg: 1e-3 * torch.ones_like(xi)),
        "non_sensitivity": lambda m, x, e: M.non_sensitivity(m, x[:, :, :4, :4], e[:, :, :4, :4], Y),
        "input_invariance": lambda m, x, e: M.input_invariance(m, x, explain_blank_second, Y),
    }


def test_every_registered_metric_has_a_case() -> None:
    assert set(_cases()) == set(M.METRICS)


@pytest.mark.parametrize("name", sorted(M.METRICS))
def test_all_zero_map_is_nan_with_a_warning(name: str) -> None:
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    e = torch.rand(2, 1, 12, 12) + 0.1
    e[1] = 0
    with pytest.warns(RuntimeWarning, match=r"undefined"):
        v = torch.as_tensor(_cases()[name](model, x, e))
    assert torch.isfinite(v[0]), "the image with a real map keeps its value"
    assert torch.isnan(v[1]), f"{name} scored an all-zero map: {float(v[1])}"
    s = M.nan_summary(v)
    assert (s.n, s.n_skipped) == (1, 1)


def test_all_zero_signed_one_channel_attribution_after_reduction() -> None:
    """'All zero' is judged on the reduced map: positive reduction of a negative map is blank."""
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    e = torch.rand(2, 1, 12, 12) + 0.1
    e[1] = -e[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.isfinite(M.insertion(model, x, e, Y, step=24)).all()  # |e| ranks every pixel
    with pytest.warns(RuntimeWarning, match="insertion is undefined .*1 of 2"):
        v = M.insertion(model, x, e, Y, step=24, reduction="positive", return_curves=True)
    assert torch.isnan(v.auc[1]) and torch.isnan(v.curves[1]).all() and torch.isfinite(v.curves[0]).all()


def test_region_complexity_of_an_empty_refined_region_is_undefined() -> None:
    """An empty refined region would otherwise be RC = 0, the best possible score."""
    a = torch.zeros(1, 8, 8)
    b = torch.rand(1, 8, 8)
    with pytest.warns(RuntimeWarning, match="region_complexity is undefined"):
        assert torch.isnan(M.region_complexity(a, b)).all()


def test_cli_results_table_counts_undefined_values(tmp_path, capsys) -> None:  # noqa: ANN001
    with ResultStore(tmp_path / "r.sqlite") as store:
        rows = [ResultRow(f"img{i}", "gradcam", "insertion", None if i < 2 else 0.5) for i in range(5)]
        rows += [ResultRow(f"img{i}", "saliency", "insertion", 0.25) for i in range(5)]
        store.add_metric_info([("insertion", "higher", "faithfulness", "insertion AUC")])
        store.add_results(rows, "s")
        ui = UI()
        print_results(ui, store, "s")
    out = capsys.readouterr().out
    assert "gradcam insertion: 2 of 5" in out
    assert "saliency insertion" not in out
    assert "0.5" in out and "0.25" in out  # the means are over the defined values only


def test_cam_protocol_counts_blank_maps_and_keeps_them_out_of_the_means() -> None:
    """The interpretable-gradient CAM protocol (cleargrad train --evaluate, the benchmark):
    an image whose CAM is all zero is NaN for every metric, AI included, and counted."""
    from cleargrad.cli.train import _mean_se
    from cleargrad.evaluation.train_eval import METRICS, cam_faithfulness

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1, bias=False),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()
    x = torch.randn(3, 1, 8, 8)
    x[1] = 0  # no activation at all: every CAM of this image is blank
    y = torch.tensor([0, 1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the protocol counts blank maps instead of warning per batch
        out = cam_faithfulness(model, x, y, mean=(0.0,), std=(1.0,), cams={"Grad-CAM": "gradcam"})
    r = out["Grad-CAM"]
    assert r["n_blank"] == 1
    for k in METRICS:
        assert torch.isnan(r[k][1]) and torch.isfinite(r[k][[0, 2]]).all(), k
    m, se = _mean_se(r["AI"])
    assert m == float(r["AI"][[0, 2]].double().mean()) and se == se  # over the two defined images
