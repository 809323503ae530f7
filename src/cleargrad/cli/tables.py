"""Tables printed by the command (rich): methods, metrics and the results summary."""

from __future__ import annotations

from rich.table import Table as RichTable

from ..report.summary import MetricColumn, summarise
from ..store import ResultStore
from .console import UI
from .explainers import fast_defaults
from .metric_runner import available_metrics

__all__ = ["print_methods", "print_results"]


def _plain(text: str) -> str:
    """A docstring line without reST literal markers."""
    return text.replace("``", "")


def print_methods(ui: UI) -> None:
    """The registered methods and metrics with one-line descriptions (stdout)."""
    from ..core.registry import list_methods

    t = RichTable(title="methods", title_justify="left")
    for col in ("name", "family", "description", "command-line defaults"):
        t.add_column(col)
    for info in list_methods():
        fast = ", ".join(f"{k}={v}" for k, v in fast_defaults(info.name).items())
        t.add_row(info.name, info.family, _plain(info.summary), fast)
    ui.out.print(t)
    m = RichTable(title="metrics", title_justify="left")
    for col in ("name", "better", "category", "description"):
        m.add_column(col)
    for name, (info, why) in available_metrics().items():
        arrow = "\u2191 higher" if info.direction == "higher" else "\u2193 lower"
        note = f" (not from the command line: {why})" if why else ""
        m.add_row(name, arrow, info.category, _plain(info.summary) + note)
    ui.out.print(m)


def print_results(ui: UI, store: ResultStore, settings: str | None) -> None:
    """The method × metric means of ``settings`` (stdout), best per column in bold."""
    rows = store.results(settings)
    info = store.metric_info()
    columns = {n: MetricColumn(n, d, c, s) for n, (d, c, s) in info.items()}
    table, _ = summarise(rows, columns, {})
    used = sorted({r.metric for r in rows})
    t = RichTable(title=f"mean over {len({r.image_id for r in rows})} image(s)", title_justify="left")
    t.add_column("method", no_wrap=True)
    cols = [c for c in table.metrics if c.name in used]
    for c in cols:
        t.add_column(f"{c.name} {c.arrow}", justify="right")
    for m in table.methods:
        cells = []
        for c in cols:
            cell = table.cell(m, c.name)
            text = "n/a" if cell.mean is None else f"{cell.mean:.3g}"
            cells.append(f"[bold green]{text}[/bold green]" if cell.best else text)
        t.add_row(m, *cells)
    ui.out.print(t)
    undefined = [
        f"{m} {c.name}: {table.cell(m, c.name).n_undefined} of {table.cell(m, c.name).n}"
        for m in table.methods
        for c in cols
        if table.cell(m, c.name).n_undefined
    ]
    if undefined:
        ui.out.print(
            "undefined values left out of the means (all-zero map or empty region): " + "; ".join(undefined),
            markup=False,
        )
