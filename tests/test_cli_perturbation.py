"""The new methods by registry name on the command line: explain and evaluate."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from cli_support import make_images, make_model_file
from typer.testing import CliRunner

from cleargrad.cli import app

runner = CliRunner()
NEW = "occlusion,feature_ablation,shapley_value_sampling,lime,kernel_shap,rise,random,guided_gradcam"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli_pert")
    return {"dir": d, "model": make_model_file(d), "images": make_images(d, per_class=1, corrupt=False)}


def test_explain_runs_every_new_method_by_name(workspace: dict[str, Path]) -> None:
    out = workspace["dir"] / "explained"
    r = runner.invoke(app, [
        "explain", "--model", f"{workspace['model']}:factory", "--images", str(workspace["images"]),
        "--method", NEW, "--target", "1", "--out", str(out),
        "-o", "rise.n_masks=20", "-o", "shapley_value_sampling.n_samples=1", "-o", "lime.n_samples=10",
        "-o", "kernel_shap.n_samples=10",
    ])
    assert r.exit_code == 0, r.output
    for name in NEW.split(","):
        maps = sorted(out.rglob(f"*__{name}.npy"))
        assert maps, name
        a = np.load(maps[0])
        assert np.isfinite(a).all()


def test_evaluate_runs_occlusion_and_the_random_control(workspace: dict[str, Path]) -> None:
    store = workspace["dir"] / "eval.sqlite"
    r = runner.invoke(app, [
        "evaluate", "--model", f"{workspace['model']}:factory", "--dataset", str(workspace["images"]),
        "--methods", "occlusion,random", "--metrics", "deletion", "--store", str(store), "-q",
    ])
    assert r.exit_code == 0, r.output
    con = sqlite3.connect(str(store))
    methods = {m for (m,) in con.execute("SELECT DISTINCT method FROM results")}
    con.close()
    assert methods == {"occlusion", "random"}
