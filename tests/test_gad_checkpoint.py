"""Resumable GAD fits: a fit interrupted after some support models and rerun with the same
checkpoint folder equals an uninterrupted fit; a folder of another fit is refused."""

from __future__ import annotations

import pytest
import torch
from test_gad_api import FAST, pair_data, trained_model

import cleargrad as cg
from cleargrad.gad import GAD
from cleargrad.gad.checkpoint import FitCheckpoint


class Stop(Exception):
    pass


def _interrupting(folder, after: int) -> FitCheckpoint:
    """A checkpoint whose log raises once ``after`` models have been saved (a crash mid-fit)."""
    saved = []

    def log(msg: str) -> None:
        if "saved" in msg:
            saved.append(msg)
            if len(saved) == after:
                raise Stop(msg)

    return FitCheckpoint(folder, log=log)


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_interrupted_fit_resumes_to_the_uninterrupted_result(tmp_path, bn_mode) -> None:
    torch.set_num_threads(1)
    model = trained_model()
    data = pair_data()
    settings = {**FAST, "bn_mode": bn_mode}
    whole = GAD(model, base="saliency", classes=(0, 1), **settings).fit(data)
    folder = tmp_path / "ckpt"
    with pytest.raises(Stop):
        GAD(model, base="saliency", classes=(0, 1), **settings).fit(data, checkpoint=_interrupting(folder, 2))
    assert sorted(p.name for p in folder.glob("*.safetensors")) == ["task0.model0.safetensors",
                                                                    "task0.model1.safetensors"]
    messages: list[str] = []
    resumed = GAD(model, base="saliency", classes=(0, 1), **settings).fit(
        data, checkpoint=FitCheckpoint(folder, log=messages.append)
    )
    assert sum("resumed" in m for m in messages) == 2 and sum("saved" in m for m in messages) == 1
    for a, b in zip(whole.support_models_[0], resumed.support_models_[0]):
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    assert whole.stats_ == resumed.stats_
    x = data[0][:4]
    torch.testing.assert_close(whole.attribute(x), resumed.attribute(x), rtol=0, atol=0)


def test_checkpoint_of_another_fit_is_refused(tmp_path) -> None:
    model = trained_model()
    data = pair_data()
    GAD(model, base="saliency", classes=(0, 1), **FAST).fit(data, checkpoint=tmp_path)
    other = {**FAST, "lr": FAST["lr"] * 2}
    with pytest.raises(cg.ConfigError, match="another GAD fit"):
        GAD(model, base="saliency", classes=(0, 1), **other).fit(data, checkpoint=tmp_path)
    # the attribution-only settings (base, tau) do not change the support models: accepted
    GAD(model, base="gradcam", classes=(0, 1), tau=0.3, **FAST).fit(data, checkpoint=tmp_path)
