"""The random-map verdict as an output of the evaluation: the control (``--random-control``),
``verdict_table`` over a store's rows, the report's table and flag, the terminal summary,
and the settings hash (the control joins the run's hash; other rows are unchanged)."""

from __future__ import annotations

import math
import re
import sqlite3
import statistics
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from cleargrad.cli import app
from cleargrad.cli.tables import print_results
from cleargrad.errors import ConfigError
from cleargrad.evaluation import EvalPlan, EvaluationSettings, run_evaluation, verdict_table
from cleargrad.evaluation.console import UI
from cleargrad.evaluation.explainers import Explainer, build_explainer
from cleargrad.evaluation.images import ImageRecord, ImageSet, Preprocess
from cleargrad.evaluation.metric_runner import MetricRunner, metric_runner
from cleargrad.report import render_report
from cleargrad.store import ResultRow, ResultStore

PIXEL = (2, 5)


class OnePixel(nn.Module):
    """Reads one pixel only: logits ``(4 v, -4 v)`` with ``v = x[:, 0, 2, 5]``."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, 0, PIXEL[0], PIXEL[1]] * self.scale
        return torch.stack([v, -v], dim=1)


def _oracle(x: torch.Tensor, t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The map of the pixel the model reads (the perfect explanation)."""
    a = torch.zeros_like(x)
    a[:, 0, PIXEL[0], PIXEL[1]] = 1.0
    return a


def _noise(x: torch.Tensor, t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Another random map, under a name the verdict does not know (counted as a method)."""
    return torch.rand(x.shape, generator=g, device=x.device)


#: unrelated to the map: every method gets the same value on an image
BRIGHTNESS = MetricRunner("brightness", "higher", "test", "mean pixel value (ignores the map)",
                          lambda x: x.mean(dim=(1, 2, 3)))


def _tiny_store(tmp_path: Path, methods: list[Explainer], n: int = 16, control: bool = True) -> tuple[Path, str]:
    """``n`` 8x8 images (the read pixel in (0.5, 1.5): class 0), scored with deletion and
    brightness by ``methods`` (plus the registered ``random`` control) through the engine."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=g)
    x[:, 0, PIXEL[0], PIXEL[1]] += 0.5
    model = OnePixel().eval()
    prep = Preprocess(8, True, (0.0,), (1.0,))
    data = ImageSet([ImageRecord(f"img{i:02d}", f"img{i:02d}", 0, "zero") for i in range(n)], prep,
                    tensors=x, description="tiny")
    explainers = [*methods, build_explainer(model, "random")] if control else list(methods)
    runners = [metric_runner("deletion"), BRIGHTNESS]
    path = tmp_path / "tiny.sqlite"
    with ResultStore(path) as st:
        h = st.record_run({"command": "test"}, {})
        st.add_metric_info((r.name, r.direction, r.category, r.summary) for r in runners)
        plan = EvalPlan(model=model, images=data, explainers=explainers, metrics=runners, store=st, settings=h,
                        preprocess=prep, batch_size=4, gallery=2)
        assert run_evaluation(plan, UI(quiet=True)) == n * len(explainers) * len(runners)
    return path, h


def test_a_faithful_map_separates_and_an_unrelated_metric_is_uninformative(tmp_path: Path) -> None:
    path, h = _tiny_store(tmp_path, [Explainer("oracle", _oracle), Explainer("noise", _noise)])
    v = verdict_table(path)
    assert v.available and v.control == "random" and v.methods == ("noise", "oracle")
    # deletion: removing the read pixel first drops the score at once; a random map removes it late
    assert v.mark("deletion", "oracle") == "separates" and v.mark("deletion", "noise") == "n.s."
    assert v.verdicts["deletion"].informative  # 1 of 2 methods: half, rounded up
    # the metric ignores the map: every paired difference is 0
    b = v.separation("brightness", "oracle")
    assert b is not None and b.mean == 0 and b.n == 16 and not b.better
    assert not v.verdicts["brightness"].informative and v.uninformative() == ["brightness"]
    assert v.flag("brightness").startswith("UNINFORMATIVE: cannot tell the methods from a random map")
    rows = v.rows()
    assert {(r["metric"], r["method"]) for r in rows} == {(m, k) for m in ("brightness", "deletion")
                                                         for k in ("noise", "oracle")}


def test_the_rule_counts_half_the_methods_rounded_up(tmp_path: Path) -> None:
    """With two random-like methods beside the oracle, 1 of 3 separating is not enough."""
    path, _ = _tiny_store(
        tmp_path, [Explainer("oracle", _oracle), Explainer("noise", _noise), Explainer("noise2", _noise)], n=12
    )
    v = verdict_table(path)
    assert v.verdicts["deletion"].n_better == 1 and not v.verdicts["deletion"].informative
    assert v.uninformative() == ["brightness", "deletion"]


def test_paired_differences_equal_a_hand_computation_from_the_rows(tmp_path: Path) -> None:
    path, h = _tiny_store(tmp_path, [Explainer("oracle", _oracle), Explainer("noise", _noise)])
    con = sqlite3.connect(str(path))
    got = dict(con.execute("SELECT image_id || method, value FROM results WHERE metric = 'deletion'").fetchall())
    con.close()
    ids = sorted({k[:5] for k in got})
    d = [got[i + "oracle"] - got[i + "random"] for i in ids]
    mean, se = statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d))
    with ResultStore(path, readonly=True) as st:
        s = verdict_table(st, h).separation("deletion", "oracle")
    assert s is not None and s.n == len(ids) == 16
    assert s.mean == pytest.approx(mean, rel=1e-12) and s.se == pytest.approx(se, rel=1e-12)
    assert s.z == pytest.approx(-mean / se, rel=1e-12)  # lower is better: z > 0 when the method is lower
    assert mean < 0 and s.better


def test_pairs_need_the_same_image_and_target_and_defined_values() -> None:
    rows = [ResultRow(f"i{k}", "random", "m", float(k), 0) for k in range(5)]
    rows += [ResultRow("i0", "a", "m", 10.0, 1)]  # explained for another class: left out
    rows += [ResultRow("i1", "a", "m", None, 0)]  # undefined: left out
    rows += [ResultRow(f"i{k}", "a", "m", float(k) + k * k, 0) for k in (2, 3, 4)]
    s = verdict_table(rows, directions={"m": "higher"}).separation("m", "a")
    d = [4.0, 9.0, 16.0]
    assert s is not None and s.n == 3
    assert s.mean == pytest.approx(statistics.fmean(d)) and s.se == pytest.approx(statistics.stdev(d) / math.sqrt(3))
    with pytest.raises(ConfigError, match="direction"):
        verdict_table(rows)  # an unregistered metric without a direction


def test_the_report_and_the_summary_show_the_verdict_and_the_flag(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path, h = _tiny_store(tmp_path, [Explainer("oracle", _oracle), Explainer("noise", _noise)])
    with ResultStore(path, readonly=True) as st:
        html = render_report(st, plots=False)
        print_results(UI(), st, h)
    table = html[html.index('id="verdict-table"'):]
    table = table[: table.index("</table>")]
    row = re.search(r'<tr class="verdict-row uninformative" data-metric="brightness">.*?</tr>', table, re.S)
    assert row and "UNINFORMATIVE: cannot tell the methods from a random map (0/2 methods separate)" in row.group(0)
    dele = re.search(r'<tr class="verdict-row" data-metric="deletion">.*?</tr>', table, re.S)
    assert dele and 'data-method="oracle" data-mark="separates"' in dele.group(0)
    assert 'data-method="noise" data-mark="n.s."' in dele.group(0)
    assert 'class="note note-uninformative"' in html and "verdict-missing" not in html
    out = capsys.readouterr().out
    flagged = [line for line in out.splitlines() if line.startswith("UNINFORMATIVE")]
    assert len(flagged) == 1 and flagged[0].startswith("UNINFORMATIVE brightness: cannot tell the methods")


def test_a_store_without_the_control_says_the_verdict_needs_it(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path, h = _tiny_store(tmp_path, [Explainer("oracle", _oracle)], n=4, control=False)
    v = verdict_table(path)
    assert not v.available and v.verdicts == {} and v.uninformative() == []
    with ResultStore(path, readonly=True) as st:
        html = render_report(st, plots=False)
        print_results(UI(), st, h)
    assert 'id="verdict-missing"' in html and "--random-control" in html and 'id="verdict-table"' not in html
    assert "add --random-control" in capsys.readouterr().out
    r = CliRunner().invoke(app, ["report", str(path), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    assert "no random-map verdict" in r.output and "--random-control" in r.output


# the defaults case of tests/test_evaluation_settings.py: the hash written before the control existed
DEFAULTS = ["--methods", "saliency", "--metrics", "sparseness", "--limit", "2"]
DEFAULTS_HASH = "9900908dc224b0ed"


def _evaluate(store: Path, *extra: str) -> None:
    r = CliRunner().invoke(app, ["evaluate", "-q", "--model", "small-cnn", "--dataset", "fashion-mnist",
                                 "--store", str(store), *DEFAULTS, *extra])
    assert r.exit_code == 0, r.output


def _rows(store: Path) -> dict[tuple[str, str, str], tuple[str, float]]:
    con = sqlite3.connect(str(store))
    out = {(i, m, k): (h, v) for i, m, k, h, v in
           con.execute("SELECT image_id, method, metric, settings_hash, value FROM results").fetchall()}
    con.close()
    return out


def test_random_control_joins_the_runs_hash_and_changes_no_other_row(tmp_path: Path) -> None:
    plain, both = tmp_path / "plain.sqlite", tmp_path / "both.sqlite"
    _evaluate(plain)
    _evaluate(both, "--random-control")
    a, b = _rows(plain), _rows(both)
    assert {h for h, _ in a.values()} == {h for h, _ in b.values()} == {DEFAULTS_HASH}
    assert {m for _, m, _ in b} == {"saliency", "random"} and len(b) == 4
    assert {k: v for k, v in b.items() if k[1] != "random"} == a
    # the control added to a finished run: only its rows are computed, under the same hash
    _evaluate(plain, "--random-control")
    assert _rows(plain) == b


def test_the_control_is_off_by_default_and_not_in_the_record(tmp_path: Path) -> None:
    s = EvaluationSettings(model="m", dataset="d", methods="a", metrics="b", store=tmp_path)
    on = EvaluationSettings.from_command({**vars(s), "random_control": True})
    assert s.random_control is False and on.random_control is True
    assert on.record() == s.record()
