"""The evaluation settings object: the store's settings hash is what it was, options reach the
engine through it, and unknown options are refused with the valid names."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from cleargrad.cli import app
from cleargrad.errors import ConfigError
from cleargrad.evaluation import EvalPlan, EvaluationSettings
from cleargrad.evaluation.images import ImageRecord, ImageSet, Preprocess
from cleargrad.store import ResultStore

# Settings hashes written by the pre-refactor code at commit 9486959 (``cleargrad evaluate``
# with these arguments, read back from the store's ``runs`` table): a store written then must
# resume under the settings object.
KNOWN_HASHES = {
    "defaults": (["--methods", "saliency", "--metrics", "sparseness", "--limit", "2"], "9900908dc224b0ed"),
    "many options": (
        [
            "--methods", "saliency,gradcam", "--metrics", "sparseness,infidelity,deletion", "--limit", "2",
            "--target", "label", "--reshape", "none", "--classes", "0,6",
            "--metric-option", "infidelity.n_perturb=2", "--metric-option", "deletion.step=98",
            "-o", "saliency.abs=true", "--metric-batch-size", "2", "--batch-size", "2", "--seed", "3",
            "--no-fold-batchnorm",
        ],
        "7e835683b2cbf454",
    ),
    # insertion/deletion at their default step: 28 pixels on 28x28 images before and after n_steps
    "curve metrics at the default step": (
        ["--methods", "saliency", "--metrics", "insertion,deletion", "--limit", "2"], "9900908dc224b0ed"
    ),
}


def _fashion_mnist() -> None:
    try:
        from cleargrad.data import fashion_mnist_dir

        fashion_mnist_dir()
    except Exception as e:  # noqa: BLE001 - any reason the data set is unavailable
        pytest.skip(f"Fashion-MNIST not installed: {e}")


@pytest.mark.parametrize("case", sorted(KNOWN_HASHES))
def test_the_settings_hash_of_known_settings_is_unchanged(tmp_path: Path, case: str) -> None:
    _fashion_mnist()
    args, expected = KNOWN_HASHES[case]
    store = tmp_path / "s.sqlite"
    r = CliRunner().invoke(
        app, ["evaluate", "-q", "--model", "small-cnn", "--dataset", "fashion-mnist", "--store", str(store), *args]
    )
    assert r.exit_code == 0, r.output
    con = sqlite3.connect(str(store))
    hashes = [h for (h,) in con.execute("SELECT settings_hash FROM runs")]
    con.close()
    assert hashes == [expected]


def test_from_command_maps_parameters_and_refuses_unknown_names() -> None:
    s = EvaluationSettings.from_command(
        {"model": "m", "dataset": "d", "methods": "saliency", "metrics": "sparseness", "store": Path("x"),
         "compile_": True, "option": None, "metric_option": ("a.b=1",), "quiet": True},
        ignore=("quiet",),
    )
    assert s.compile is True and s.option == [] and s.metric_option == ["a.b=1"]
    with pytest.raises(ConfigError, match="not an evaluation setting.*metric_batch_size"):
        EvaluationSettings.from_command({"model": "m", "bogus": 1})


def test_record_leaves_out_late_options_at_their_default() -> None:
    s = EvaluationSettings(model="m", dataset="d", methods="a", metrics="b", store=Path("x"))
    rec = s.record(dataset="described")
    assert "reshape" not in rec and "metric_batch_size" not in rec and "device" not in rec
    assert rec["dataset"] == "described" and rec["command"] == "evaluate" and rec["weights"] is None
    rec = s.with_options(reshape="none", metric_batch_size=4, weights=Path("w.pt")).record()
    assert rec["reshape"] == "none" and rec["metric_batch_size"] == 4 and rec["weights"] == "w.pt"


def _plan(tmp_path: Path, **kw: object) -> EvalPlan:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    data = ImageSet([ImageRecord("a", "a", None, None)], Preprocess(2, True, (0.0,), (1.0,)),
                    tensors=torch.zeros(1, 1, 2, 2), description="one image")
    store = ResultStore(tmp_path / "p.sqlite")
    return EvalPlan(model=model, images=data, explainers=[], metrics=[], store=store, settings="h",
                    preprocess=data.preprocess, **kw)


def test_the_plan_reads_its_options_from_the_settings(tmp_path: Path) -> None:
    plan = _plan(tmp_path, batch_size=3, overlay_dir=tmp_path / "o", target="label")
    assert plan.run.batch_size == 3 and plan.batch_size == 3 and plan.run.overlays == tmp_path / "o"
    assert plan.target == "label" and plan.run.dataset == "one image"
    plan.metric_batch_size = 5  # an option set on the plan goes into its settings
    assert plan.run.metric_batch_size == 5
    copy = plan.replace(gallery=0)
    assert copy.run.gallery == 0 and copy.run.metric_batch_size == 5 and plan.run.gallery == 8
    given = EvaluationSettings(model="m", dataset="d", methods="", metrics="", store=tmp_path, seed=7)
    assert _plan(tmp_path, run=given, gallery=1).run == given.with_options(gallery=1)


def test_an_unknown_plan_option_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown evaluation setting.*batch_size"):
        _plan(tmp_path, batchsize=3)


def test_setting_a_built_object_on_the_plan_does_not_touch_the_settings(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    runners = plan.metrics
    plan.metrics = [*runners]  # "metrics" is also a settings field (the names): the plan's own list wins
    assert plan.metrics == runners and plan.run.metrics == ""
