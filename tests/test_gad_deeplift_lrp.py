"""DeepLIFT and LRP as GAD base methods: the fused map is the fusion of the base method's
maps of the original and every support model; the model is left untouched."""

from __future__ import annotations

import pytest
import torch
from helpers import ModelSnapshot
from test_gad_api import FAST, pair_data, trained_model

import cleargrad as cg
from cleargrad.api import make_method
from cleargrad.gad import fuse


@pytest.fixture(scope="module")
def fitted() -> cg.GAD:
    torch.set_num_threads(1)
    return cg.GAD(trained_model(), base="deeplift", classes=(0, 1), **FAST).fit(pair_data())


@pytest.mark.parametrize("base,opts", [("deeplift", {"baselines": 0.0}), ("lrp", {"composite": "epsilon_plus_flat"}),
                                       ("deeplift_shap", {"baselines": torch.zeros(2, 1, 8, 8)})])
def test_gad_over_deeplift_and_lrp(fitted: cg.GAD, base: str, opts: dict) -> None:
    x, _ = pair_data(3, seed=9)
    t = torch.tensor([0, 1, 1])
    gad = fitted.with_base(base, opts)
    assert not gad._use_stack()  # these bases run one call per model (their passes double the batch)
    snap = ModelSnapshot.take(fitted.model)
    fused = gad.attribute(x, target=t)
    snap.assert_same(fitted.model)
    direct = []
    for m in [fitted.model, *fitted.support_models_[0]]:
        inst, o = make_method(m, base, **opts)
        direct.append(inst.attribute(x, target=t, **o))
    assert fused.shape == (3, 1, 8, 8)
    torch.testing.assert_close(fused, fuse(direct, tau=gad.tau), rtol=1e-5, atol=1e-6)
    assert (fused != 0).any()


def test_cli_explainer_gives_deeplift_shap_the_reference_images() -> None:
    from cleargrad.evaluation.explainers import build_explainer

    model = trained_model()
    refs = torch.zeros(3, 1, 8, 8)
    ex = build_explainer(model, "deeplift_shap", references=refs)
    x, _ = pair_data(2, seed=3)
    t = torch.tensor([0, 1])
    got = ex.fn(x, t, torch.Generator().manual_seed(0))
    want = cg.DeepLiftShap(model).attribute(x, target=t, baselines=refs)
    torch.testing.assert_close(got, want)
    assert "baselines" not in ex.options
