"""``cleargrad demo`` end to end with a tiny training recipe (the real one trains for minutes)."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cleargrad.evaluation.demo as demo
from cleargrad.cli import app
from cleargrad.models import FashionMNISTRecipe
from cleargrad.models.weights_cache import ENV_VAR

pytest.importorskip("cleargrad.gad")

METHODS = ("saliency", "gradcam", "expected_gradcam")


@pytest.fixture
def tiny_demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    try:
        from cleargrad.data import fashion_mnist_dir

        fashion_mnist_dir()
    except Exception as e:  # noqa: BLE001 - any reason the data set is unavailable
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "cache"))
    tiny = functools.partial(
        demo.DemoSettings,
        recipe=FashionMNISTRecipe(width=4, epochs=1, train_limit=256, test_limit=128),
        methods=METHODS,
        gad_support=2,
        gad_epochs=1,
        gad_train_images=64,
        batch_size=4,
    )
    monkeypatch.setattr(demo, "DemoSettings", tiny)
    return tmp_path


def test_demo_writes_overlays_store_and_report_and_reuses_the_cache(tiny_demo: Path) -> None:
    out = tiny_demo / "demo-out"
    r = CliRunner().invoke(app, ["demo", "--out", str(out), "--images", "4"])
    assert r.exit_code == 0, r.output
    report = out / "report.html"
    assert f"report: {report.resolve()}" in r.stdout
    assert "mean over 4 image(s)" in r.stdout
    names = [*METHODS, "gad_saliency"]
    n_metrics = len(demo.DemoSettings().metrics)
    con = sqlite3.connect(str(out / "results.sqlite"))
    (n,) = con.execute("SELECT COUNT(*) FROM results").fetchone()
    methods = {m for (m,) in con.execute("SELECT DISTINCT method FROM results")}
    classes = {c for (c,) in con.execute("SELECT class_name FROM run_images")}
    # GAD's region is compared with its base method's region: RC of the base itself is 1
    rc = [v for (v,) in con.execute("SELECT value FROM results WHERE method='saliency' AND metric='region_complexity'")]
    con.close()
    assert n == 4 * len(names) * n_metrics
    assert methods == set(names)
    assert classes == {"T-shirt/top", "Shirt"}  # the GAD pair
    assert rc == [1.0] * 4
    assert len(list((out / "overlays").glob("*.png"))) == 4 * len(names)
    html = report.read_text()
    assert html.count('<tr class="method-row') == len(names)
    assert "data:image/png;base64," in html
    # the redesigned report: GAD beside its base, the region-complexity reference named, an input column
    assert '<tr class="method-row gad-row">' in html and "GAD of saliency" in html
    assert "reference method saliency" in html
    assert html.count('<img class="input"') == 4
    # second run: model and GAD come from the cache, nothing is recomputed
    weights = list((tiny_demo / "cache").rglob("*.safetensors"))
    mtimes = {p: p.stat().st_mtime_ns for p in weights}
    r2 = CliRunner().invoke(app, ["demo", "--out", str(out), "--images", "4"])
    assert r2.exit_code == 0, r2.output
    assert "loading cached GAD" in r2.stderr
    assert {p: p.stat().st_mtime_ns for p in weights} == mtimes
    con = sqlite3.connect(str(out / "results.sqlite"))
    assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] == n
    con.close()
