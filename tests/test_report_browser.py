"""Reports opened in headless Chromium (Debian's /usr/bin/chromium) at 1280 px: no
horizontal overflow of the page or of any table, gallery or plot (scrolling inside a
labelled container is allowed), every image loads, nothing is fetched, nothing runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_support import SCRIPT_CLASS, make_images, make_model_file
from typer.testing import CliRunner

from cleargrad.cli import app
from cleargrad.report import build_report
from cleargrad.store import ResultRow, ResultStore

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
METHODS = ["saliency", "gradcam", "input_x_gradient"]
WIDTH = 1280

pytestmark = pytest.mark.browser

#: every element that must fit the page, unless it sits in a labelled scroll container
OVERFLOW_JS = """
(width) => {
  const out = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > width) out.push(`page scrollWidth ${doc.scrollWidth} > ${width}`);
  for (const el of document.querySelectorAll('table, img, section, .legend, .notes, pre')) {
    const box = el.closest('.scroll');
    const r = el.getBoundingClientRect();
    if (box) {
      const labelled = box.getAttribute('role') === 'region' && (box.getAttribute('aria-label') || '').length > 0;
      const scrolls = getComputedStyle(box).overflowX === 'auto' || getComputedStyle(box).overflowX === 'scroll';
      const br = box.getBoundingClientRect();
      if (!labelled || !scrolls) out.push(`${el.tagName}.${el.className} in an unlabelled scroll box`);
      if (br.right > width + 0.5) out.push(`scroll box right ${br.right}`);
    } else if (r.right > width + 0.5 || r.left < -0.5) {
      out.push(`${el.tagName}.${el.className || ''}#${el.id || ''} spans ${r.left}..${r.right}`);
    }
  }
  return out;
}
"""


def _chromium():  # noqa: ANN202
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    return sync_api


def open_report(sync_api, path: Path, screenshot: Path | None = None) -> dict:  # noqa: ANN001
    """Load ``path`` at 1280 px; returns what the checks need (and writes a screenshot)."""
    errors: list[str] = []
    requests: list[str] = []
    dialogs: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            # open every <details> so that hidden tables are measured too
            page.eval_on_selector_all("details", "ds => ds.forEach(d => d.open = true)")
            result = {
                "errors": errors,
                "requests": requests,
                "dialogs": dialogs,
                "overflow": page.evaluate(OVERFLOW_JS, WIDTH),
                "images": page.eval_on_selector_all(
                    "img", "imgs => imgs.map(i => [i.className, i.complete && i.naturalWidth > 0, i.naturalWidth])"
                ),
                "scripts": page.eval_on_selector_all("script", "s => s.length"),
                "rows": page.eval_on_selector_all("#metrics-table tbody tr", "rs => rs.map(r => r.cells[0].innerText)"),
                "labels": page.eval_on_selector_all(".class-name", "els => els.map(e => e.textContent)"),
                "skipped": page.inner_text("#skipped") if page.query_selector("#skipped") else "",
            }
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
            return result
        finally:
            browser.close()


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
            "sparseness,complexity,insertion",
            "--store",
            str(store),
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["report", str(store), "--out", str(d / "report.html")])
    assert r.exit_code == 0, r.output
    return d / "report.html"


def test_evaluate_report_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    sync_api = _chromium()
    res = open_report(sync_api, report, tmp_path / "shot.png")
    assert res["errors"] == [] and res["dialogs"] == []  # the <script> class label did not run
    # nothing but the page itself and its data: URIs was requested
    assert all(u.startswith(("file://", "data:")) for u in res["requests"]), res["requests"]
    assert res["overflow"] == []
    assert res["images"] and all(ok for _, ok, _ in res["images"]), res["images"]
    overlays = [w for cls, _, w in res["images"] if cls == "overlay"]
    inputs = [w for cls, _, w in res["images"] if cls == "input"]
    assert len(overlays) == 6 * len(METHODS) and len(inputs) == 6  # 6 readable images, every method
    assert all(w >= 28 for w in overlays + inputs)  # never below the 28 px input
    assert sum(cls == "plot" for cls, _, _ in res["images"]) == 3 + 1  # a strip plot per metric + insertion curves
    assert sorted(res["rows"]) == sorted(METHODS)
    assert SCRIPT_CLASS in res["labels"]  # shown as text
    assert res["scripts"] == 0
    assert "bad.png" in res["skipped"]
    assert (tmp_path / "shot.png").stat().st_size > 10_000


def _wide_store(path: Path) -> Path:
    """20 methods, 12 classes with long names, long image ids and settings values: what
    overflowed the old report."""
    import torch

    from cleargrad.evaluation.render import input_png

    rng = np.random.default_rng(0)
    methods = [f"method_with_a_long_name_{k:02d}" for k in range(19)] + ["gad_method_with_a_long_name_00"]
    classes = [f"class {k} with a rather long name" for k in range(12)]
    images = [f"folder/sub-folder/image_{k:03d}_with_a_long_file_name.png" for k in range(24)]
    with ResultStore(path) as st:
        h = st.record_run(
            {"model": "x" * 300, "reference": methods[0], "nested": {"a": list(range(80)), "b": {"c": "d" * 200}}},
            {"torch": "2"},
        )
        st.add_metric_info([(f"metric_number_{k}", "higher", "cat", "a metric") for k in range(9)])
        st.add_images([(i, k % 12, classes[k % 12], i) for k, i in enumerate(images)])
        rows = [ResultRow(i, m, f"metric_number_{k}", float(rng.random())) for i in images for m in methods
                for k in range(9)]
        curves = [(i, m, "metric_number_0", list(rng.random(17))) for i in images for m in methods]
        st.add_results(rows, h, curves)
        st.add_maps([(i, m, rng.random((28, 28))) for i in images[:8] for m in methods], h)
        st.add_inputs([(i, input_png(torch.rand(1, 28, 28))) for i in images[:8]], h)
        st.add_skipped([("/a/very/long/path/" + "x" * 200 + ".png", "unreadable " * 30)])
    return path


def test_a_wide_report_fits_1280_px(tmp_path: Path) -> None:
    sync_api = _chromium()
    html = build_report(_wide_store(tmp_path / "w.sqlite"), tmp_path / "w.html")
    res = open_report(sync_api, html)
    assert res["errors"] == []
    assert res["overflow"] == [], res["overflow"]
    assert all(ok for _, ok, _ in res["images"])
    assert sum(cls == "overlay" for cls, _, _ in res["images"]) == 8 * 20


def test_the_overflow_check_catches_a_wide_table_and_a_broken_image(tmp_path: Path) -> None:
    sync_api = _chromium()
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><body><table><tr><td><div style="width:2000px">wide</div></td></tr></table>'
        '<div class="scroll"><table><tr><td><div style="width:2000px">unlabelled box</div></td></tr></table></div>'
        '<img class="overlay" src="data:image/png;base64,AAAA" alt="broken"></body></html>'
    )
    res = open_report(sync_api, page)
    assert any("page scrollWidth" in o for o in res["overflow"])
    assert any(o.startswith("TABLE") and "spans" in o for o in res["overflow"])
    assert any("unlabelled scroll box" in o for o in res["overflow"])
    assert res["images"] == [["overlay", False, 0]]
