"""The HTML report: table means, direction-aware best cells, escaping, self-containment."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

from cleargrad.report import MetricColumn, build_report, summarise
from cleargrad.store import ResultRow, ResultStore


def _png(color: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (color, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def _rows() -> list[ResultRow]:
    # two methods, a higher-is-better and a lower-is-better metric, one undefined value
    return [
        ResultRow("i0", "a", "ins", 0.2),
        ResultRow("i1", "a", "ins", 0.4),
        ResultRow("i0", "b", "ins", 0.5),
        ResultRow("i1", "b", "ins", None),
        ResultRow("i0", "a", "del", 0.1),
        ResultRow("i1", "a", "del", 0.3),
        ResultRow("i0", "b", "del", 0.6),
        ResultRow("i1", "b", "del", 0.8),
    ]


def test_means_ignore_undefined_values_and_best_follows_direction() -> None:
    cols = {"ins": MetricColumn("ins", "higher"), "del": MetricColumn("del", "lower")}
    table, per_class = summarise(_rows(), cols, {"i0": "cat", "i1": "dog"})
    assert table.methods == ["a", "b"]
    assert abs(table.cell("a", "ins").mean - 0.3) < 1e-12
    b_ins = table.cell("b", "ins")
    assert (b_ins.mean, b_ins.n, b_ins.n_undefined) == (0.5, 2, 1)
    assert table.cell("b", "ins").best and not table.cell("a", "ins").best  # higher wins
    assert table.cell("a", "del").best and not table.cell("b", "del").best  # lower wins
    assert set(per_class) == {"cat", "dog"}
    assert per_class["dog"].cell("b", "ins").mean is None
    assert per_class["dog"].cell("a", "ins").best is False  # a single defined value is not "best"
    assert per_class["cat"].cell("b", "ins").best


def _store(path: Path, label: str) -> Path:
    with ResultStore(path) as st:
        h = st.record_run({"model": "<img src=x onerror=alert(1)>"}, {"torch": "x"})
        st.add_metric_info(
            [("ins", "higher", "faithfulness", "Insertion & more"), ("del", "lower", "faithfulness", "")]
        )
        st.add_images([("i0", 0, label, "/data/i0.png"), ("i1", 1, "dog", "/data/i1.png")])
        st.add_results(_rows(), h)
        st.add_overlays([("i0", "a", _png(10)), ("i0", "b", _png(20)), ("i1", "a", _png(30)), ("i1", "b", _png(40))], h)
        st.add_skipped([("/data/<b>bad</b>.png", "unreadable: cannot identify image")])
    return path


def test_report_is_self_contained_and_escapes_user_strings(tmp_path: Path) -> None:
    label = "<script>alert('x')</script>"
    out = build_report(_store(tmp_path / "r.sqlite", label), tmp_path / "r.html")
    html = out.read_text()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;bad&lt;/b&gt;.png" in html
    # no external resource: every src is a data URI, no link/stylesheet/http reference
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    overlay_srcs = re.findall(r'<img class="overlay" src="([^"]*)"', html)
    assert len(overlay_srcs) == 4  # no maps stored: the stored overlays are shown as they are
    assert base64.b64decode(overlay_srcs[0].split(",", 1)[1]) == _png(10)
    assert "http://" not in html and "https://" not in html and "<link" not in html
    # one row per method, arrows per direction
    assert html.count('class="method-row"') == 2
    assert 'ins <span class="arrow">\u2191</span>' in html and 'del <span class="arrow">\u2193</span>' in html
    # settings are a table of keys and values, not a dict repr
    assert '<td class="key">model</td>' in html and "{&#39;" not in html and "{'" not in html


def test_report_defaults_to_report_html_beside_the_store(tmp_path: Path) -> None:
    out = build_report(_store(tmp_path / "r.sqlite", "cat"))
    assert out == tmp_path / "report.html" and out.exists()


def _ci_store(path: Path) -> Path:
    # three images, two methods; "a" is higher than "b" on every image by 1, 2, 3
    with ResultStore(path) as st:
        h = st.record_run({"model": "m", "reference": "a"}, {"torch": "x"})
        st.add_metric_info([("ins", "higher", "faithfulness", "Insertion"), ("flat", "higher", "", "")])
        st.add_images([(f"i{k}", 0, "c", None) for k in range(3)])
        rows = []
        for k, (va, vb) in enumerate([(0.2, -0.8), (0.5, -1.5), (0.8, -2.2)]):
            rows += [ResultRow(f"i{k}", "a", "ins", va), ResultRow(f"i{k}", "b", "ins", vb)]
        # "flat": a and b differ by +0.1, -0.1, +0.05: the paired interval contains 0
        for k, (va, vb) in enumerate([(1.0, 0.9), (1.0, 1.1), (1.0, 0.95)]):
            rows += [ResultRow(f"i{k}", "a", "flat", va), ResultRow(f"i{k}", "b", "flat", vb)]
        st.add_results(rows, h, curves=[(f"i{k}", m, "ins", [1.0, 0.5, 0.0]) for k in range(3) for m in "ab"])
    return path


def test_confidence_interval_equals_a_hand_computation(tmp_path: Path) -> None:
    html = build_report(_ci_store(tmp_path / "ci.sqlite"), tmp_path / "ci.html").read_text()
    cells = {
        (m.group("metric"), m.group("method")): m
        for m in re.finditer(
            r'data-metric="(?P<metric>[^"]+)" data-method="(?P<method>[^"]+)" data-mean="(?P<mean>[^"]*)" '
            r'data-low="(?P<low>[^"]*)" data-high="(?P<high>[^"]*)" data-n="(?P<n>\d+)"',
            html,
        )
    }
    # by hand: values 0.2, 0.5, 0.8 -> mean 0.5, s = 0.3, t(0.975, 2) = 4.302652729911275 (t table)
    # half-width = 4.302652729911275 * 0.3 / sqrt(3) = 0.745240...
    a = cells[("ins", "a")]
    half = 4.302652729911275 * 0.3 / 3**0.5
    assert int(a.group("n")) == 3
    assert abs(float(a.group("mean")) - 0.5) < 1e-12
    assert abs(float(a.group("low")) - (0.5 - half)) < 1e-9
    assert abs(float(a.group("high")) - (0.5 + half)) < 1e-9
    # b: -0.8, -1.5, -2.2 -> mean -1.5, s = 0.7
    b = cells[("ins", "b")]
    assert abs(float(b.group("high")) - (-1.5 + 4.302652729911275 * 0.7 / 3**0.5)) < 1e-9
    # the visible text rounds the same numbers
    assert f"[{0.5 - half:.3g}, {0.5 + half:.3g}]" in html


def test_notes_flag_a_metric_that_separates_nothing_and_name_the_reference(tmp_path: Path) -> None:
    from cleargrad.report.stats import separated_pairs

    store = _ci_store(tmp_path / "n.sqlite")
    with ResultStore(store) as st:
        rows = st.results()
    # ins: differences 1, 2, 3: t = 2 / (1 / sqrt 3) = 3.46, df 2, two-sided p = 0.074 > 0.05
    assert separated_pairs(rows, "ins", ["a", "b"]) == (0, 1)
    assert separated_pairs(rows, "flat", ["a", "b"]) == (0, 1)
    html = build_report(store, tmp_path / "n.html").read_text()
    assert html.count('class="note note-flat"') == 2
    assert 'class="best' not in html  # nothing is highlighted when no pair differs


def test_separated_pairs_detects_a_clear_difference() -> None:
    from cleargrad.report.stats import separated_pairs

    rows = [ResultRow(f"i{k}", "a", "m", 1.0 + 0.01 * k) for k in range(5)]
    rows += [ResultRow(f"i{k}", "b", "m", 0.0 + 0.012 * k) for k in range(5)]
    rows += [ResultRow(f"i{k}", "c", "m", 0.0 + 0.012 * k + (0.001 if k % 2 else -0.001)) for k in range(5)]
    assert separated_pairs(rows, "m", ["a", "b", "c"]) == (2, 3)  # a differs from b and c; b and c do not


def test_paired_p_value_and_holm_by_hand() -> None:
    from cleargrad.report.stats import holm, paired_p_value

    # differences 1, 2, 3: t = 2 * sqrt(3) = 3.4641, df 2: p = 2 * (1 - F(3.4641)) = 0.07418 (t table)
    assert abs(paired_p_value([1.0, 2.0, 3.0]) - 0.0741799) < 1e-6
    assert paired_p_value([0.5, 0.5]) == 0.0 and paired_p_value([0.0, 0.0]) == 1.0
    # Holm with m = 4: thresholds 0.0125, 0.0167, 0.025, 0.05 in p order; stops at the first failure
    assert holm([0.01, 0.04, 0.015, 0.03]) == [True, False, True, False]
    assert holm([0.02, 0.001]) == [True, True]  # 0.001 <= 0.05 / 2, then 0.02 <= 0.05 / 1
    assert holm([0.03, 0.04]) == [False, False]  # 0.03 > 0.05 / 2 stops at once


def test_coinciding_methods_from_maps_and_from_values() -> None:
    import numpy as np

    from cleargrad.report.stats import coinciding_methods

    rng = np.random.default_rng(0)
    m1, m2 = rng.random((4, 4)), rng.random((4, 4))
    # CAM and Grad-CAM on a GAP-linear head: the same map up to the factor 1 / (H W)
    maps = {("i0", "cam"): m1, ("i0", "gradcam"): m1 / 49 * (1 + 1e-4), ("i0", "saliency"): m2,
            ("i0", "neg"): -m1}
    assert coinciding_methods(["cam", "gradcam", "saliency", "neg"], maps, []) == [(["cam", "gradcam"], "maps")]
    rows = [ResultRow("i0", "x", "k", 0.5), ResultRow("i0", "y", "k", 0.5), ResultRow("i0", "z", "k", 0.4)]
    assert coinciding_methods(["x", "y", "z"], {}, rows) == [(["x", "y"], "values")]


def test_report_of_maps_curves_and_gad(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "g.sqlite"
    rng = np.random.default_rng(1)
    with ResultStore(path) as st:
        h = st.record_run({"reference": "saliency", "method_options": {"gradcam": {"layer": "x"}}}, {})
        st.add_metric_info([("insertion", "higher", "faithfulness", "Insertion AUC"),
                            ("region_complexity", "higher", "region", "RC")])
        st.add_images([("i0", 0, "c", None), ("i1", 1, "d", None)])
        maps, rows, curves = [], [], []
        base = {i: rng.random((6, 6)) for i in ("i0", "i1")}
        for i in ("i0", "i1"):
            for m in ("saliency", "gad_saliency", "cam", "gradcam"):
                arr = base[i] if m in ("cam", "gradcam") else rng.random((6, 6))
                maps.append((i, m, arr))
                rows.append(ResultRow(i, m, "insertion", float(rng.random())))
                rows.append(ResultRow(i, m, "region_complexity", 1.0 if m == "saliency" else float(rng.random())))
                curves.append((i, m, "insertion", [0.1, 0.5, 0.9]))
        st.add_results(rows, h, curves)
        st.add_maps(maps, h)
        st.add_inputs([(i, _png(5 * k)) for k, i in enumerate(("i0", "i1"))], h)
    html = build_report(path, tmp_path / "g.html").read_text()
    # GAD right after its base, cam and gradcam flagged as one explanation, the reference named
    order = re.findall(r'data-metric="insertion" data-method="([^"]+)"', html)
    assert order.index("gad_saliency") == order.index("saliency") + 1
    assert 'class="note note-coincide"' in html and "GAP-linear head" in html
    assert 'class="note note-reference"' in html and "reference method saliency" in html
    # an input column and one picture per image and method, a colour-scale legend, plots
    assert html.count('<img class="input"') == 2
    assert html.count('<img class="overlay"') == 2 * 4
    assert 'alt="colour scale' in html
    assert html.count('<img class="plot"') == 2 + 1  # a strip plot per metric, mean curves of insertion
    assert "convex-hull region" in html
    assert '<td class="key">method_options.gradcam</td><td class="val">layer = x</td>' in html
