"""MkDocs hooks that make the site from what the repository holds:

- the nav: fixed sections for the known pages, plus every ``docs/guides/*.md`` page
  present (titled by its first heading), so that guides added later appear without
  editing ``mkdocs.yml`` and a guide not yet written breaks nothing;
- the API reference: one page per public sub-package of ``src/cleargrad``;
- the tutorials: every ``docs/tutorials/*.ipynb`` (and ``docs/gallery.ipynb``) is executed
  at build time (a cell that raises fails the build) and rendered as a Markdown page with
  its figures; the executed notebook is published beside it;
- ``benchmarks/results/`` is published under the same path, so the docs link the
  measured tables and figures (folders get an index page); links to it may be written
  relative to the repository or to the site;
- after the build, a page that would fetch a script, style, font or image from another
  host fails it (the site must work offline).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.cleargrad")
ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PKG = ROOT / "src" / "cleargrad"
RESULTS = ROOT / "benchmarks" / "results"
NOT_REFERENCE = {"cli", "api", "__main__"}  # the command line has its own guide

# the known guides in reading order; any other guides/*.md page follows them
GUIDES = [
    "python-api", "targets", "pixel-methods", "cam-methods", "cams", "transformers", "deeplift-lrp", "perturbation",
    "gad", "expected-gradcam", "interpretable-training", "metrics", "metrics-sanity", "evaluating-datasets",
    "cli", "report", "speed", "errors", "models-and-data", "testing-and-benchmarks", "development",
]
TUTORIALS = ["your-photos", "evaluate-and-report", "gad-end-to-end", "expected-gradcam-saturation",
             "interpretable-training"]


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("-", " ").capitalize()


def _nb_title(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def reference_modules() -> list[str]:
    names = []
    for p in sorted(PKG.iterdir()):
        name = p.stem if p.suffix == ".py" else p.name
        if name.startswith("_") or name in NOT_REFERENCE:
            continue
        if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py":
            names.append(name)
    return names


def _ordered(stems: list[str], order: list[str]) -> list[str]:
    return [s for s in order if s in stems] + sorted(s for s in stems if s not in order)


def on_config(config, **kwargs):
    guides = _ordered([p.stem for p in (DOCS / "guides").glob("*.md")], GUIDES)
    tutorials = _ordered([p.stem for p in (DOCS / "tutorials").glob("*.ipynb")], TUTORIALS)
    research = sorted(p.stem for p in (DOCS / "research").glob("*.md"))
    nav = [{"Home": "index.md"}, {"Getting started": "getting-started.md"}]
    nav.append({"Guides": [{_title(DOCS / "guides" / f"{g}.md"): f"guides/{g}.md"} for g in guides]})
    nav.append({"Tutorials": [{_nb_title(DOCS / "tutorials" / f"{t}.ipynb"): f"tutorials/{t}.md"} for t in tutorials]})
    if (DOCS / "gallery.ipynb").exists():
        nav.append({"Gallery": "gallery.md"})
    nav.append({"Research findings": [{_title(DOCS / "research" / f"{r}.md"): f"research/{r}.md"} for r in research]})
    nav.append({"API reference": ["reference/index.md"] + [{m: f"reference/{m}.md"} for m in reference_modules()]})
    config["nav"] = nav
    return config


def _reference_page(name: str) -> str:
    return f"# `cleargrad.{name}`\n\n::: cleargrad.{name}\n"


def _reference_index(names: list[str]) -> str:
    lines = ["# API reference", "",
             "Generated from the docstrings. The top-level `cleargrad` namespace re-exports the main classes "
             "(`cg.GradCAM`, `cg.IntegratedGradients`, `cg.GAD`, ...) from these packages.", ""]
    for n in names:
        lines.append(f"- [`cleargrad.{n}`]({n}.md)")
    return "\n".join(lines) + "\n"


CACHE = ROOT / ".cache" / "docs-notebooks"


def _source_digest() -> str:
    """Digest of the package sources: an executed notebook is reused only while the
    notebook and every file of ``src/cleargrad`` are unchanged."""
    h = hashlib.sha256()
    for p in sorted(PKG.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(p.relative_to(PKG).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _execute(path: Path, digest: str) -> str:
    """Execute a notebook (a cell that raises fails the build); returns it as JSON text.
    ``CLEARGRAD_DOCS_CACHE=off`` executes even when a cached result is valid."""
    import nbformat
    from nbclient import NotebookClient

    key = hashlib.sha256(path.read_bytes() + digest.encode()).hexdigest()[:20]
    cached = CACHE / f"{path.stem}-{key}.ipynb"
    if cached.exists() and os.environ.get("CLEARGRAD_DOCS_CACHE", "on") != "off":
        return cached.read_text(encoding="utf-8")
    nb = nbformat.read(path, as_version=4)
    timeout = int(os.environ.get("CLEARGRAD_DOCS_CELL_TIMEOUT", "300"))
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    text = nbformat.writes(nb)
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob(f"{path.stem}-*.ipynb"):
        old.unlink()
    cached.write_text(text, encoding="utf-8")
    return text


def _execute_timed(args: tuple[Path, str]) -> tuple[str, float]:
    t0 = time.perf_counter()
    text = _execute(*args)
    return text, time.perf_counter() - t0


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _to_markdown(nb, stem: str, folder: str) -> tuple[str, dict[str, bytes]]:
    """Markdown cells as they are, code cells as Python blocks, text outputs as plain
    blocks, PNG outputs as image files (returned as {site path: bytes})."""
    parts, images = [], {}
    download = f"[Download the executed notebook]({stem}.ipynb)"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            parts.append(cell.source)
            continue
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        parts.append("```python\n" + cell.source + "\n```")
        for j, out in enumerate(cell.get("outputs", [])):
            data = out.get("data", {})
            if out.get("output_type") == "stream":
                text = _ANSI.sub("", out.get("text", "")).rstrip()
                if text and out.get("name") == "stdout":
                    parts.append("```text\n" + text + "\n```")
            elif "image/png" in data:
                name = f"{stem}_files/cell{i}_{j}.png"
                images[f"{folder}/{name}" if folder else name] = base64.b64decode(data["image/png"])
                parts.append(f"![output of cell {i}]({name})")
            elif "text/plain" in data:
                parts.append("```text\n" + _ANSI.sub("", data["text/plain"]).rstrip() + "\n```")
    parts.insert(1, download)
    return "\n\n".join(parts) + "\n", images


def _notebooks() -> list[tuple[Path, str]]:
    nbs = [(p, "tutorials") for p in sorted((DOCS / "tutorials").glob("*.ipynb"))]
    if (DOCS / "gallery.ipynb").exists():
        nbs.append((DOCS / "gallery.ipynb", ""))
    return nbs


def on_files(files, config, **kwargs):
    import nbformat

    for f in list(files):  # the notebooks are published executed, below
        if f.src_uri.endswith(".ipynb"):
            files.remove(f)
    names = reference_modules()
    files.append(File.generated(config, "reference/index.md", content=_reference_index(names)))
    for n in names:
        files.append(File.generated(config, f"reference/{n}.md", content=_reference_page(n)))
    notebooks = _notebooks()
    digest = _source_digest()
    workers = max(1, min(len(notebooks), int(os.environ.get("CLEARGRAD_DOCS_JOBS", "2"))))
    with ThreadPoolExecutor(workers) as pool:  # each notebook runs in its own kernel process
        done = list(pool.map(_execute_timed, [(path, digest) for path, _ in notebooks]))
    for (path, folder), (text, seconds) in zip(notebooks, done):
        nb = nbformat.reads(text, as_version=4)
        prefix = f"{folder}/" if folder else ""
        md, images = _to_markdown(nb, path.stem, folder)
        files.append(File.generated(config, f"{prefix}{path.stem}.md", content=md))
        files.append(File.generated(config, f"{prefix}{path.stem}.ipynb", content=text))
        for uri, data in images.items():
            files.append(File.generated(config, uri, content=data))
        log.info("notebook %s%s: %.1f s", prefix, path.name, seconds)
    if RESULTS.is_dir():
        for p in sorted(RESULTS.rglob("*")):
            if p.is_file():
                files.append(File.generated(config, p.relative_to(ROOT).as_posix(), abs_src_path=str(p)))
        for d in [RESULTS, *sorted(q for q in RESULTS.rglob("*") if q.is_dir())]:
            rel = d.relative_to(ROOT).as_posix()
            if (d / "index.md").exists():
                continue
            entries = sorted(d.iterdir())
            body = [f"# `{rel}/`", "", "Measured results, as the benchmark scripts wrote them.", ""]
            for e in entries:
                link = f"{e.name}/index.md" if e.is_dir() else e.name
                body.append(f"- [`{e.name}{'/' if e.is_dir() else ''}`]({link})")
            files.append(File.generated(config, f"{rel}/index.md", content="\n".join(body) + "\n"))
    return files


_REMOTE = re.compile(
    r"""<(?:script|img|iframe|source)\b[^>]*\bsrc=["']?(?:https?:)?//|<link\b[^>]*\bhref=["']?(?:https?:)?//""", re.I
)


def on_post_build(config, **kwargs):
    """Fail the build if a page would fetch anything from the network when viewed
    (scripts, styles, fonts, images from another host)."""
    from mkdocs.exceptions import PluginError

    bad = []
    for page in Path(config["site_dir"]).rglob("*.html"):
        text = page.read_text(encoding="utf-8", errors="replace")
        for m in _REMOTE.finditer(text):
            bad.append(f"{page.relative_to(config['site_dir'])}: {text[m.start():m.start() + 120]}")
    css = [p for p in Path(config["site_dir"]).rglob("*.css") if "fonts.googleapis" in p.read_text(errors="replace")]
    if bad or css:
        found = bad[:20] + [str(c) for c in css]
        raise PluginError("the site would fetch assets from the network:\n" + "\n".join(found))


_RESULTS_LINK = re.compile(r"\]\(((?:\.\./)*|/)benchmarks/results/")


def on_page_markdown(markdown, page, **kwargs):
    """Links to ``benchmarks/results/`` work written either way: relative to the repository
    (``../../benchmarks/results/x.md`` from ``docs/guides/``, right on a code host) or
    relative to the site (``../benchmarks/results/x.md``); both point at the published copy."""
    depth = page.file.src_uri.count("/")
    return _RESULTS_LINK.sub("](" + "../" * depth + "benchmarks/results/", markdown)
