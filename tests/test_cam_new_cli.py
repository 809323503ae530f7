"""The CAMs of issue 29 by name in the ``cleargrad`` command: explain and evaluate, with the
smoothing options passed as method options."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from cli_support import make_images, make_model_file
from typer.testing import CliRunner

from cleargrad.cli import app

NEW = "eigencam,eigengradcam,kpcacam,gradcam_elementwise,fem,shapleycam,finercam,randomcam,fullgrad,iscam,sscam"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli_cams")
    return {"dir": d, "model": make_model_file(d), "images": make_images(d)}


def test_explain_with_every_new_cam_and_smoothing_options(workspace: dict[str, Path]) -> None:
    out = workspace["dir"] / "explained"
    r = CliRunner().invoke(app, [
        "explain", "--model", f"{workspace['model']}:factory", "--images", str(workspace["images"]),
        "--method", NEW + ",gradcam", "--target", "1", "--out", str(out), "-q",
        "-o", "sscam.n_samples=2", "-o", "iscam.n_samples=2",
        "-o", "gradcam.aug_smooth=true", "-o", "gradcam.eigen_smooth=true",
    ])
    assert r.exit_code == 0, r.output
    for method in [*NEW.split(","), "gradcam"]:
        saved = np.load(out / "boot" / f"img0.png__{method}.npy")
        assert saved.shape == (1, 28, 28) and np.isfinite(saved).all(), method


def test_evaluate_builds_the_new_cams_from_the_registry(workspace: dict[str, Path]) -> None:
    store = workspace["dir"] / "eval.sqlite"
    methods = "eigencam,fullgrad,finercam,gradcam_elementwise"
    r = CliRunner().invoke(app, [
        "evaluate", "--model", f"{workspace['model']}:factory", "--dataset", str(workspace["images"]),
        "--methods", methods, "--metrics", "deletion,sparseness", "--store", str(store), "--batch-size", "4", "-q",
    ])
    assert r.exit_code == 0, r.output
    con = sqlite3.connect(str(store))
    got = {m for (m,) in con.execute("SELECT DISTINCT method FROM results")}
    n = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    con.close()
    assert got == set(methods.split(",")) and n == 6 * 4 * 2
