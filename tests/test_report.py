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
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert base64.b64decode(srcs[0].split(",", 1)[1]) == _png(10)
    assert "http://" not in html and "https://" not in html and "<link" not in html
    # one row per method, arrows per direction, best cells marked
    assert html.count('class="method-row"') == 2
    assert 'ins <span class="arrow">\u2191</span>' in html and 'del <span class="arrow">\u2193</span>' in html
    assert html.count('class="best"') >= 2


def test_report_defaults_to_report_html_beside_the_store(tmp_path: Path) -> None:
    out = build_report(_store(tmp_path / "r.sqlite", "cat"))
    assert out == tmp_path / "report.html" and out.exists()
