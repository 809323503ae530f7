"""The HTML report of a results store: one self-contained page (jinja2, autoescaped).

What a researcher reads, top to bottom: what was run; notes that say where methods
coincide, which metrics separate nothing, and what ``region_complexity`` compares
against; the method × metric table (mean, 95 % confidence interval, number of images);
per metric a strip plot of the per-image values by method (and for insertion and
deletion the mean curves); per-class means; a gallery (input column, every map on one
colour scale, region hulls on GAD and its base method); skipped files, settings and
versions as tables.

Images and plots are embedded as base64 data URIs and the styles are inline, so the page
needs no other file and no network. Every string that comes from the user (class names,
image ids, file paths, settings) goes through jinja2's autoescaping.
"""

from __future__ import annotations

import datetime as _dt
import platform
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from markupsafe import Markup, escape

from ..store import ResultRow, ResultStore
from .gallery import CMAP, build_gallery, gallery_order
from .plots import colour_scale_uri, curves_uri, strip_plot_uri
from .rst import plain_rst
from .settings_view import settings_rows
from .stats import MeanCI, coinciding_methods, mean_ci, separated_pairs
from .summary import MetricColumn, summarise
from .verdict import NO_CONTROL, verdict_from_rows, verdict_notes

__all__ = ["build_report", "render_report", "versions"]


def _gap_linear(name: str) -> bool:
    """Whether ``name`` is a method that coincides with Grad-CAM on a network whose head is
    global average pooling + one linear layer (stated on its class:
    ``Method.gap_linear_equivalent``)."""
    from ..core.registry import get_method
    from ..errors import ConfigError
    from ..families import load_families

    load_families()

    try:
        return bool(getattr(get_method(name).cls, "gap_linear_equivalent", False))
    except ConfigError:
        return False


def versions() -> dict[str, str]:
    """Versions of Python, cleargrad and the main libraries (read from package metadata,
    nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    out = {"cleargrad": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for dist in ("torch", "torchvision", "numpy", "scipy", "scikit-image", "jinja2", "typer"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:  # pragma: no cover - optional packages
            continue
    return out


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cleargrad.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["breakable"] = _breakable
    return env


def _breakable(text: str) -> Markup:
    """``text`` escaped, with a line-break opportunity after each underscore."""
    return Markup(str(escape(text)).replace("_", "_<wbr>"))


def _num(v: float | None, digits: int = 3) -> str:
    """A value to ``digits`` significant digits (``n/a`` for None)."""
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    return f"{v:.{digits}g}"


def _weights_text(run: dict[str, Any]) -> str | None:
    """Where a run's weights came from, in words: the file and its digest, the shipped
    reference weights, or random init (None for a run record without a model)."""
    if "model" not in run:
        return None
    if run.get("weights"):
        digest = run.get("weights_sha256")
        return f"{run['weights']} (sha256 {digest})" if digest else str(run["weights"])
    from ..core.names import dashed_key

    if dashed_key(run["model"]) == "small-cnn-fashion-mnist":
        return "shipped reference weights (Fashion-MNIST)"
    return "random init (no --weights)"


def _class_names_text(run: dict[str, Any], images: dict[str, Any]) -> str:
    """The class names a run used: its ``--class-names`` file, else the names of its images'
    labels in label order, else a note that classes are indices."""
    named = {v[0]: v[1] for v in images.values() if v[0] is not None and v[1] is not None}
    names = ", ".join(named[k] for k in sorted(named))
    if run.get("class_names"):
        return f"{run['class_names']}: {names}" if names else str(run["class_names"])
    return names or "(none: classes are shown as indices)"


def _gad_bases(methods: list[str]) -> dict[str, str]:
    """GAD method -> its base method (names ``gad_BASE`` or ``gad:BASE``)."""
    out = {}
    for m in methods:
        match = re.fullmatch(r"gad[_:](.+)", m)
        if match and match.group(1) in methods:
            out[m] = match.group(1)
    return out


@dataclass
class MetricView:
    """What the report shows of one metric."""

    column: MetricColumn
    cis: dict[str, MeanCI]
    separated: int
    compared: int
    best: set[str]
    strip_uri: str | None
    curves_uri: str | None
    curves_n: int

    @property
    def separates(self) -> bool:
        """At least one pair of methods differs (paired t-test, Holm-corrected, level 0.05)."""
        return self.separated > 0


def _metric_views(
    rows: list[ResultRow], columns: list[MetricColumn], methods: list[str], curves: dict[str, dict[str, np.ndarray]],
    curve_n: dict[str, dict[str, int]], plots: bool,
) -> list[MetricView]:
    values: dict[tuple[str, str], list[float | None]] = defaultdict(list)
    for r in rows:
        values[(r.method, r.metric)].append(r.value)
    views = []
    for col in columns:
        cis = {m: mean_ci(values.get((m, col.name), [])) for m in methods if (m, col.name) in values}
        sep, tot = separated_pairs(rows, col.name, methods)
        means = {m: c.mean for m, c in cis.items() if c.mean is not None}
        best: set[str] = set()
        if sep > 0 and len(means) > 1:
            target = max(means.values()) if col.direction == "higher" else min(means.values())
            best = {m for m, v in means.items() if v == target}
        strip = None
        if plots and cis:
            shown = [m for m in methods if m in cis]
            per_image = {m: [v for v in values[(m, col.name)] if v is not None] for m in shown}
            strip = strip_plot_uri(col.name, shown, per_image, cis, col.direction)
        cur = None
        if plots and curves.get(col.name):
            shown = [m for m in methods if m in curves[col.name]]
            cur = curves_uri(col.name, shown, curves[col.name], curve_n[col.name])
        n_curves = max(curve_n.get(col.name, {}).values(), default=0)
        views.append(MetricView(col, cis, sep, tot, best, strip, cur, n_curves))
    return views


def _mean_curves(
    store: ResultStore, settings: str, metrics: list[str]
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, int]]]:
    means: dict[str, dict[str, np.ndarray]] = {}
    counts: dict[str, dict[str, int]] = {}
    for metric in metrics:
        by_method: dict[str, list[list[float]]] = defaultdict(list)
        for (_, method, _), c in store.curves(settings, metric).items():
            if c and all(np.isfinite(c)):
                by_method[method].append(c)
        means[metric], counts[metric] = {}, {}
        for method, cs in by_method.items():
            k = min(len(c) for c in cs)
            means[metric][method] = np.mean([c[:k] for c in cs], axis=0)
            counts[metric][method] = len(cs)
    return means, counts


def _notes(
    groups: list[tuple[list[str], str]],
    views: list[MetricView],
    reference: str | None,
    gad: dict[str, str],
    methods: list[str],
) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = []
    for members, evidence in groups:
        why = (
            "identical maps, up to a positive scale factor, on every gallery image" if evidence == "maps"
            else "identical values of every metric on every image"
        )
        known = all(_gap_linear(m) for m in members)
        reason = (
            " They coincide by construction when the network ends in global average pooling and one "
            "linear layer (a GAP-linear head): the gradient of the class score is the same at every "
            "position of the last feature map, so these CAM weightings give the same map."
            if known else " Treat them as one method when comparing."
        )
        notes.append({"kind": "coincide", "methods": members, "text": f"give the same explanation ({why}).{reason}"})
    for v in views:
        if v.compared and not v.separates:
            notes.append({
                "kind": "flat",
                "methods": [v.column.name],
                "text": (
                    f"does not separate the methods: none of the {v.compared} pairs differs (paired t-test "
                    "on the per-image values, Holm-corrected over the pairs, level 0.05), so its ranking "
                    "is not evidence that one method is better."
                ),
            })
    if any(v.column.name == "region_complexity" for v in views):
        ref = reference or "(not recorded)"
        gad_text = (
            "; GAD methods (" + ", ".join(sorted(gad)) + ") are compared with their own base method"
            if gad else ""
        )
        notes.append({
            "kind": "reference",
            "methods": ["region_complexity"],
            "text": (
                f"compares each method's convex-hull region with that of the reference method {ref}{gad_text}. "
                "The reference's own value is 1 by definition, not a result."
            ),
        })
    if gad:
        notes.append({
            "kind": "gad",
            "methods": sorted(gad),
            "text": "are shown right after their base method in the tables and the gallery, with the "
                    "convex-hull region of both maps outlined in white.",
        })
    return notes


def render_report(
    store: ResultStore,
    *,
    title: str = "cleargrad report",
    gallery: int = 8,
    settings: str | None = None,
    plots: bool = True,
) -> str:
    """The report page of ``store`` as an HTML string.

    Args:
        store: the results store.
        title: page title.
        gallery: number of images shown in the gallery.
        settings: settings hash of the run to show (default: the most recent run that
            has results).
        plots: draw the matplotlib figures (strip plots, mean curves).
    """
    runs = store.runs()
    used = store.settings_with_results()
    if settings is None:
        ordered = [h for h, *_ in runs if h in used]
        settings = ordered[-1] if ordered else (sorted(used)[-1] if used else None)
    rows = store.results(settings) if settings else []
    info = store.metric_info()
    columns = {
        name: MetricColumn(name, d, c, plain_rst(s))
        for name, (d, c, s) in info.items() if any(r.metric == name for r in rows)
    }
    images = store.images(settings)
    class_of = {i: v[1] if v[1] is not None else (str(v[0]) if v[0] is not None else None) for i, v in images.items()}
    overall, per_class = summarise(rows, columns, class_of)
    gad = _gad_bases(overall.methods)
    methods = gallery_order(overall.methods, gad)
    run = next(((h, s, v, c) for h, s, v, c in runs if h == settings), None)
    run_settings: dict[str, Any] = run[1] if run else {}

    curve_means, curve_n = _mean_curves(store, settings, [c.name for c in overall.metrics]) if settings else ({}, {})
    views = _metric_views(rows, overall.metrics, methods, curve_means, curve_n, plots)
    maps = store.maps(settings) if settings else {}
    groups = coinciding_methods(methods, maps, rows)
    reference = run_settings.get("reference")
    notes = _notes(groups, views, reference if isinstance(reference, str) else None, gad, methods)
    verdict = verdict_from_rows(rows, {c.name: c.direction for c in overall.metrics})
    notes += verdict_notes(verdict)
    same_as = {m: g for g, _ in groups for m in g}

    overlays_all = store.overlays(settings=settings)
    gallery_ids = sorted({i for i, _ in maps} | {i for i, _, _ in overlays_all})[:gallery]
    overlays = {(i, m): png for i, m, png in overlays_all if i in gallery_ids}
    hull = set(gad) | set(gad.values())
    tables = build_gallery(
        gallery_ids, {i: class_of.get(i) for i in gallery_ids}, methods,
        store.inputs(settings) if settings else {}, maps, overlays, hull,
    )

    counts: dict[str, int] = {}
    for i in {r.image_id for r in rows}:
        c = class_of.get(i) or "(no class)"
        counts[c] = counts.get(c, 0) + 1
    ns = {c.n for v in views for c in v.cis.values()}
    html = (
        _environment()
        .get_template("report.html")
        .render(
            title=title,
            generated=_dt.datetime.now().isoformat(timespec="seconds"),
            methods=methods,
            metrics=views,
            per_class=per_class,
            class_counts=counts,
            n_images=len({r.image_id for r in rows}),
            n_common=ns.pop() if len(ns) == 1 else None,
            notes=notes,
            same_as=same_as,
            gad=gad,
            gallery_tables=tables,
            has_maps=bool(maps),
            colour_scale=colour_scale_uri(CMAP) if maps else None,
            skipped=store.skipped(),
            settings_hash=settings,
            what_ran=_what_ran(run_settings, images, store.layers(settings) if settings else {}),
            settings=settings_rows(run_settings),
            versions=sorted(run[2].items()) if run else sorted(versions().items()),
            other_runs=sorted(h for h in used if h != settings),
            verdict=verdict,
            no_control=NO_CONTROL,
        )
    )
    return html


def _what_ran(
    run: dict[str, Any], images: dict[str, Any], layers: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """The header rows: command, model, its weights, data set, class names, target, output,
    reference, and the layer each CAM method explained at (``layers``: method -> layer)."""
    rows = [(k, v) for k, v in settings_rows(run)
            if k in ("model", "dataset", "target", "output", "reference", "command", "model_test_accuracy")]
    weights = _weights_text(run)
    if weights is not None:
        at = next((i + 1 for i, (k, _) in enumerate(rows) if k == "model"), len(rows))
        rows.insert(at, ("weights", weights))
        rows.append(("class names", _class_names_text(run, images)))
    if layers:
        rows.append(("CAM layers", "; ".join(f"{m}: {layer}" for m, layer in sorted(layers.items()))))
    return rows


def build_report(store_path: str | Path, out: str | Path | None = None, **kwargs: Any) -> Path:
    """Write the report of the store at ``store_path`` to ``out`` (default: ``report.html``
    beside the store) and return its path.

    The store is opened read-only (never modified, also on read-only media); ``out`` is
    written atomically (a temporary file renamed over it) and may not be the store itself.
    """
    from ..atomic import atomic_write, refuse_same_file

    store_path = Path(store_path)
    out = Path(out) if out is not None else store_path.with_name("report.html")
    refuse_same_file(out, store_path, "--out")
    with ResultStore(store_path, readonly=True) as store:
        html = render_report(store, **kwargs)
    atomic_write(out, html.encode("utf-8"))
    return out
