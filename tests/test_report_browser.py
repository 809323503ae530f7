"""The report of a real ``cleargrad evaluate`` run, opened in headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_support import SCRIPT_CLASS, make_images, make_model_file
from typer.testing import CliRunner

from cleargrad.cli import app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
METHODS = ["saliency", "gradcam", "input_x_gradient"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("browser")
    model, images = make_model_file(d), make_images(d)
    store = d / "r.sqlite"
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            f"{model}:factory",
            "--dataset",
            str(images),
            "--methods",
            ",".join(METHODS),
            "--metrics",
            "sparseness,complexity",
            "--store",
            str(store),
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["report", str(store), "--out", str(d / "report.html")])
    assert r.exit_code == 0, r.output
    return d / "report.html"


def test_report_in_headless_chromium(report: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            assert errors == []
            assert dialogs == []  # the <script> class label did not run
            # nothing but the page itself and its data: URIs was requested
            assert all(u.startswith(("file://", "data:")) for u in requests), requests
            widths = page.eval_on_selector_all("img.overlay", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            assert len(widths) == 6 * len(METHODS)  # 6 readable images (<= gallery of 8), every method
            assert all(w > 0 for w in widths), widths
            rows = page.eval_on_selector_all("#metrics-table tbody tr", "rs => rs.map(r => r.cells[0].innerText)")
            assert sorted(rows) == sorted(METHODS)
            labels = page.eval_on_selector_all(".class-name", "els => els.map(e => e.textContent)")
            assert SCRIPT_CLASS in labels  # shown as text
            assert page.eval_on_selector_all("script", "s => s.length") == 0
            skipped = page.inner_text("#skipped")
            assert "bad.png" in skipped
        finally:
            browser.close()
