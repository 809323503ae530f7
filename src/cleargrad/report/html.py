"""The HTML report of a results store: one self-contained page (jinja2, autoescaped).

Images are embedded as base64 data URIs and the styles are inline, so the page needs
no other file and no network. Every string that comes from the user (class names,
image ids, file paths, settings) goes through jinja2's autoescaping.
"""

from __future__ import annotations

import base64
import datetime as _dt
import platform
from pathlib import Path
from typing import Any

import jinja2

from ..store import ResultStore
from .summary import MetricColumn, summarise

__all__ = ["build_report", "render_report", "versions"]


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
    return env


def render_report(
    store: ResultStore, *, title: str = "cleargrad report", gallery: int = 8, settings: str | None = None
) -> str:
    """The report page of ``store`` as an HTML string.

    Args:
        store: the results store.
        title: page title.
        gallery: number of images shown in the overlay gallery.
        settings: settings hash of the run to show (default: the most recent run that
            has results).
    """
    runs = store.runs()
    used = store.settings_with_results()
    if settings is None:
        ordered = [h for h, *_ in runs if h in used]
        settings = ordered[-1] if ordered else (sorted(used)[-1] if used else None)
    rows = store.results(settings) if settings else []
    info = store.metric_info()
    columns = {
        name: MetricColumn(name, d, c, s) for name, (d, c, s) in info.items() if any(r.metric == name for r in rows)
    }
    images = store.images()
    class_of = {i: v[1] if v[1] is not None else (str(v[0]) if v[0] is not None else None) for i, v in images.items()}
    overall, per_class = summarise(rows, columns, class_of)
    gal = store.overlays(limit_images=gallery)
    gallery_ids = sorted({i for i, _, _ in gal})
    uris = {(i, m): "data:image/png;base64," + base64.b64encode(png).decode("ascii") for i, m, png in gal}
    run = next(((h, s, v, c) for h, s, v, c in runs if h == settings), None)
    counts: dict[str, int] = {}
    for i in {r.image_id for r in rows}:
        c = class_of.get(i) or "(no class)"
        counts[c] = counts.get(c, 0) + 1
    html = (
        _environment()
        .get_template("report.html")
        .render(
            title=title,
            generated=_dt.datetime.now().isoformat(timespec="seconds"),
            table=overall,
            per_class=per_class,
            class_counts=counts,
            n_images=len({r.image_id for r in rows}),
            gallery_ids=gallery_ids,
            gallery_methods=overall.methods,
            gallery_uris=uris,
            gallery_class={i: class_of.get(i) for i in gallery_ids},
            skipped=store.skipped(),
            settings_hash=settings,
            settings=sorted(run[1].items()) if run else [],
            versions=sorted(run[2].items()) if run else sorted(versions().items()),
            other_runs=sorted(h for h in used if h != settings),
        )
    )
    return html


def build_report(store_path: str | Path, out: str | Path | None = None, **kwargs: Any) -> Path:
    """Write the report of the store at ``store_path`` to ``out`` (default: ``report.html``
    beside the store) and return its path."""
    store_path = Path(store_path)
    out = Path(out) if out is not None else store_path.with_name("report.html")
    with ResultStore(store_path) as store:
        html = render_report(store, **kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
