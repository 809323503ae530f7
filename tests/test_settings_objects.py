"""Settings objects instead of long flat signatures: the object form and the flat keywords
give the same thing, and mixing them for one group is refused with the object form named."""

from __future__ import annotations

import inspect

import pytest
from torch import nn

from cleargrad.errors import ConfigError
from cleargrad.gad import GAD, SPEC_SETTINGS, TrainSettings
from cleargrad.gad.persistence import gad_settings
from cleargrad.gad.settings import Distancing, Fusion


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 16, 3)).eval()


def test_gad_groups_equal_the_flat_keywords() -> None:
    m = _model()
    flat = GAD(m, base="saliency", classes=(0, 1), n_support=2, strategy="pairwise", alphas="margin",
               alpha_scale=2.0, epochs=3, lr=1e-2, seed=4, tau="paper", combine="min", progress=False)
    grouped = GAD(m, base="saliency", classes=(0, 1), n_support=2,
                  distancing=Distancing(alphas="margin", alpha_scale=2.0),
                  training=TrainSettings(epochs=3, lr=1e-2, seed=4), fusion=Fusion(tau="paper", combine="min"),
                  progress=False)
    assert gad_settings(flat) == gad_settings(grouped)
    assert grouped.train_settings == TrainSettings(epochs=3, lr=1e-2, seed=4)
    assert grouped.distancing == Distancing(alphas="margin", alpha_scale=2.0)
    assert grouped.fusion == Fusion(tau="paper", combine="min")
    assert gad_settings(GAD(m, classes=(0, 1), **SPEC_SETTINGS))["tau"] == "paper"


def test_gad_refuses_a_group_given_both_ways_and_unknown_keywords() -> None:
    m = _model()
    with pytest.raises(ConfigError, match=r"either as training=TrainSettings\(\.\.\.\) or as keywords \(epochs\)"):
        GAD(m, classes=(0, 1), training=TrainSettings(), epochs=3)
    with pytest.raises(TypeError, match="unexpected keyword argument.*n_epochs"):
        GAD(m, classes=(0, 1), n_epochs=3)
    with pytest.raises(ConfigError, match="fusion= must be a Fusion"):
        GAD(m, classes=(0, 1), fusion={"tau": 0.2})
    with pytest.raises(ConfigError, match="unknown combine"):  # the groups' values are still validated
        GAD(m, classes=(0, 1), fusion=Fusion(combine="max"))


def test_gad_signature_shows_the_flat_keywords_with_the_groups_defaults() -> None:
    params = inspect.signature(GAD).parameters
    assert params["epochs"].default == TrainSettings().epochs == 30
    assert params["tau"].default == Fusion().tau and params["strategy"].default == Distancing().strategy
    assert {"distancing", "training", "fusion"} <= set(params)


def _fit_once(**kw):
    import torch

    from cleargrad.training import fit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    g = torch.Generator().manual_seed(1)
    data = (torch.randn(12, 1, 4, 4, generator=g), torch.randint(0, 3, (12,), generator=g))
    out = fit(model, data, quiet=True, **kw)
    return out.history, [p.detach().clone() for p in model.parameters()]


def test_fit_recipe_object_equals_the_flat_keywords() -> None:
    import torch

    from cleargrad.training import Recipe

    flat_hist, flat_params = _fit_once(epochs=2, lr=0.05, batch_size=4, schedule="cosine", optimizer="adam")
    obj_hist, obj_params = _fit_once(recipe=Recipe.paper(epochs=2, lr=0.05, batch_size=4, schedule="cosine",
                                                         optimizer="adam"))
    assert [h["train_loss"] for h in flat_hist] == [h["train_loss"] for h in obj_hist]
    for a, b in zip(flat_params, obj_params):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    plain_hist, _ = _fit_once(recipe=Recipe.plain(epochs=1, batch_size=4))
    old_plain, _ = _fit_once(preset=None, epochs=1, batch_size=4)
    assert plain_hist[0]["lr"] == old_plain[0]["lr"] == 0.1


def test_fit_refuses_a_recipe_given_both_ways_and_unknown_keywords() -> None:
    from cleargrad.training import Recipe, fit

    with pytest.raises(ConfigError, match=r"either as recipe=Recipe\(\.\.\.\) or as keywords \(lr\)"):
        fit(nn.Linear(2, 2), (None, None), recipe=Recipe(), lr=0.1)
    with pytest.raises(TypeError, match="unexpected keyword argument.*learning_rate"):
        fit(nn.Linear(2, 2), (None, None), learning_rate=0.1)
    params = inspect.signature(fit).parameters
    assert params["epochs"].default == Recipe().epochs == 10 and params["preset"].default == "paper"
