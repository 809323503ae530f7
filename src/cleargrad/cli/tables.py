"""Tables printed by the command (rich): methods, metrics and the results summary."""

from __future__ import annotations

import io
import math
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table as RichTable
from rich.text import Text

from ..evaluation.console import UI
from ..evaluation.explainers import fast_defaults
from ..evaluation.metric_runner import available_metrics
from ..store import ResultStore

__all__ = ["print_gad_stats", "print_methods", "print_results", "results_tables", "verdict_lines"]


def _plain(text: str) -> str:
    """A docstring sentence without reST markup."""
    from ..report.rst import plain_rst

    return plain_rst(text)


def _described(obj: object, summary: str) -> str:
    """The whole first sentence of ``obj``'s docstring (``summary`` is its first line)."""
    from ..report.rst import first_sentence

    return _plain(first_sentence(getattr(obj, "__doc__", None), summary))


def print_methods(ui: UI) -> None:
    """The registered methods and metrics with one-line descriptions (stdout)."""
    from ..core.registry import list_methods
    from ..families import load_registries

    load_registries()
    t = RichTable(title="methods", title_justify="left")
    for col in ("name", "family", "description", "command-line defaults"):
        t.add_column(col)
    for info in list_methods():
        fast = ", ".join(f"{k}={v}" for k, v in fast_defaults(info.name).items())
        t.add_row(info.name, info.family, _described(info.cls, info.summary), fast)
    t.add_row(
        "gad:BASE", "gad", "GAD over any method above (e.g. gad:saliency): the pixels BASE finds important in "
        "the model and in every support model", "--gad DIR from `cleargrad gad fit`",
    )
    ui.out.print(t)
    m = RichTable(title="metrics", title_justify="left")
    for col in ("name", "better", "category", "description"):
        m.add_column(col)
    for name, (info, why) in available_metrics().items():
        arrow = "\u2191 higher" if info.direction == "higher" else "\u2193 lower"
        note = f" (not from the command line: {why})" if why else ""
        m.add_row(name, arrow, info.category, _described(info.fn, info.summary) + note)
    ui.out.print(m)


def _means(store: ResultStore, settings: str | None) -> tuple[list[str], list[tuple[str, str]], dict, int, list[str]]:
    """Methods, ``(metric, direction)`` columns, ``{(method, metric): mean or None}``, the
    number of images, and ``"method metric: k of n"`` for every cell with undefined values."""
    rows = store.results(settings)
    info = store.metric_info()
    acc: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        vals = acc.setdefault((r.method, r.metric), [])
        if r.value is not None and math.isfinite(r.value):
            vals.append(r.value)
    means = {k: (sum(v) / len(v) if v else None) for k, v in acc.items()}
    metrics = sorted({r.metric for r in rows})
    columns = [(m, info.get(m, ("higher",))[0]) for m in metrics]
    methods = sorted({r.method for r in rows})
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r.method, r.metric)] = counts.get((r.method, r.metric), 0) + 1
    undefined = [
        f"{m} {k}: {counts[(m, k)] - len(acc[(m, k)])} of {counts[(m, k)]}"
        for m in methods
        for k in metrics
        if (m, k) in acc and counts[(m, k)] > len(acc[(m, k)])
    ]
    return methods, columns, means, len({r.image_id for r in rows}), undefined


def _arrow(direction: str) -> str:
    return "\u2191" if direction == "higher" else "\u2193"


def _best(values: dict[str, float], direction: str) -> float | None:
    if len(values) < 2:
        return None
    return max(values.values()) if direction == "higher" else min(values.values())


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def results_tables(store: ResultStore, settings: str | None, width: int, store_path: str | None = None) -> list[Any]:
    """The terminal summary as rich renderables that fit ``width`` columns.

    The full method × metric table of means (best per metric in bold green) when it
    fits; otherwise one line per metric: the best method and its mean, and the range of
    the other methods' means, with a pointer to the report for the full table. Cells
    with undefined values (NaN: an all-zero map, an empty region) are listed after it.
    """
    methods, columns, means, n_images, undefined = _means(store, settings)
    notes = []
    if undefined:
        notes.append(
            Text("undefined values left out of the means (all-zero map or empty region): " + "; ".join(undefined))
        )
    full = RichTable(title=f"mean over {n_images} image(s)", title_justify="left")
    full.add_column("method", no_wrap=True)
    for name, direction in columns:
        full.add_column(f"{name} {_arrow(direction)}", justify="right", no_wrap=True)
    bests = {}
    for name, direction in columns:
        vals = {m: means[(m, name)] for m in methods if means.get((m, name)) is not None}
        bests[name] = (_best(vals, direction), vals)
    for m in methods:
        cells = []
        for name, _ in columns:
            v = means.get((m, name))
            text = _fmt(v)
            cells.append(f"[bold green]{text}[/bold green]" if v is not None and v == bests[name][0] else text)
        full.add_row(m, *cells)
    probe = Console(width=10_000, file=io.StringIO())
    if Measurement.get(probe, probe.options, full).maximum <= width:
        return [full, *notes]
    compact = RichTable(
        title=f"best method per metric (mean over {n_images} image(s), {len(methods)} methods)",
        title_justify="left",
    )
    compact.add_column("metric", no_wrap=True)
    compact.add_column("best", no_wrap=True)
    compact.add_column("mean", justify="right", no_wrap=True)
    compact.add_column("other methods", justify="right", no_wrap=True)
    for name, direction in columns:
        best, vals = bests[name]
        winners = [m for m, v in vals.items() if v == best] if best is not None else []
        others = [v for m, v in vals.items() if m not in winners]
        rng = f"{_fmt(min(others))}\u2013{_fmt(max(others))}" if others else ""
        label = winners[0] + (f" +{len(winners) - 1}" if len(winners) > 1 else "") if winners else "-"
        compact.add_row(f"{name} {_arrow(direction)}", label, _fmt(best if winners else None), rng)
    where = f"cleargrad report {store_path}" if store_path else "cleargrad report STORE"
    note = Text(f"all {len(methods)} methods \u00d7 {len(columns)} metrics: {where}", style="dim")
    return [compact, note, *notes]


def verdict_lines(store: ResultStore, settings: str | None) -> list[Text]:
    """The random-map verdict in the summary: one line per metric that cannot tell the methods
    from the random-map control; one line saying so when every metric can; without a
    control, a hint to add it (:func:`cleargrad.evaluation.verdict_table`)."""
    from ..errors import ConfigError
    from ..evaluation.verdict import verdict_table

    try:
        v = verdict_table(store, settings)
    except ConfigError as e:  # a metric of another program's store with no recorded direction
        return [Text(f"random-map verdict: {e}", style="dim")]
    if not v.available:
        return [Text("random-map verdict: add --random-control to see which metrics can tell the methods "
                     "from a random map", style="dim")]
    lines = v.summary_lines()
    if lines:
        return [Text(line, style="bold yellow") for line in lines]
    if not v.methods:
        return []
    return [Text(f"random-map verdict: every metric tells the methods from the random map '{v.control}' "
                 f"(beyond {v.z:g} s.e., paired by image)", style="dim")]


def print_results(ui: UI, store: ResultStore, settings: str | None, store_path: str | None = None) -> None:
    """The summary of ``settings`` on stdout, fitted to the terminal width (see :func:`results_tables`),
    then the random-map verdict (:func:`verdict_lines`)."""
    for r in [*results_tables(store, settings, ui.out.width, store_path), *verdict_lines(store, settings)]:
        ui.out.print(r)


def print_gad_stats(ui: UI, record: dict[str, Any]) -> None:
    """One line per support model of a ``gad fit`` record: alpha, MSE, agreement, margins."""
    names = record.get("class_names") or []

    def label(cs: list[int]) -> str:
        return ",".join(names[c] if c < len(names) and names[c] else str(c) for c in cs)

    t = RichTable(title=f"GAD support models ({record.get('seconds', '?')} s)", title_justify="left")
    for col in ("task", "model", "alpha", "mse", "agree", "margin 1", "margin 2"):
        t.add_column(col, justify="left" if col == "task" else "right", no_wrap=col != "task")
    for task in record.get("stats", []):
        for i, s in enumerate(task["models"]):
            t.add_row(
                f"{label(task['first'])} vs {label(task['second'])}" if i == 0 else "",
                str(i + 1),
                "/".join(f"{a:.3g}" for a in s["alpha"]),
                f"{s['mse']:.3g}",
                f"{s['agreement']:.3f}",
                f"{s['margin_first']:.3g}",
                f"{s['margin_second']:.3g}",
            )
    ui.out.print(t)
