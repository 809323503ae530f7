"""The docs site's own machinery (docs/_hooks): Sphinx roles become links or code, the nav
is generated from the pages present (a guide added later appears, a missing one breaks
nothing), a page that would fetch from the network fails the build; and the README stays
a front page whose links resolve. The full strict build runs in `make docs` (make test)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", ROOT / "docs" / "_hooks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sphinx_roles_become_optional_links() -> None:
    roles = _load("sphinx_roles")
    out = roles.convert("see :class:`~cleargrad.cam.BaseCAM` and :func:`as_rgb` or :meth:`.attribute`", "cleargrad.viz")
    assert ":class:" not in out and ":func:" not in out and ":meth:" not in out
    assert '<autoref identifier="cleargrad.cam.BaseCAM" optional><code>BaseCAM</code></autoref>' in out
    assert '<autoref identifier="cleargrad.viz.as_rgb" optional><code>as_rgb</code></autoref>' in out
    assert "<code>attribute</code>" in out
    titled = roles.convert(":class:`the base <cleargrad.cam.BaseCAM>`", "x")
    assert titled == '<autoref identifier="cleargrad.cam.BaseCAM" optional><code>the base</code></autoref>'


def test_nav_lists_every_guide_present(tmp_path, monkeypatch) -> None:
    site = _load("site")
    docs = tmp_path / "docs"
    for sub in ("guides", "tutorials", "research"):
        (docs / sub).mkdir(parents=True)
    (docs / "guides" / "gad.md").write_text("# GAD\n")
    (docs / "guides" / "zz-new-topic.md").write_text("# A guide written later\n")
    (docs / "research" / "gad.md").write_text("# Findings\n")
    monkeypatch.setattr(site, "DOCS", docs)
    nav = site.on_config({"nav": None})["nav"]
    guides = next(e["Guides"] for e in nav if "Guides" in e)
    assert guides == [{"GAD": "guides/gad.md"}, {"A guide written later": "guides/zz-new-topic.md"}]
    # the pages named for other topics (deeplift-lrp.md, cams.md, ...) are absent here: no entry, no error
    assert not any("deeplift" in str(e) for e in nav)
    ref = next(e["API reference"] for e in nav if "API reference" in e)
    assert {"viz": "reference/viz.md"} in ref and {"cam": "reference/cam.md"} in ref


def test_real_nav_covers_the_docs_pages() -> None:
    site = _load("site")
    nav = str(site.on_config({"nav": None})["nav"])
    for page in (ROOT / "docs").rglob("*.md"):
        rel = page.relative_to(ROOT / "docs").as_posix()
        assert f"'{rel}'" in nav, f"{rel} is not in the generated nav"
    for nb in (ROOT / "docs" / "tutorials").glob("*.ipynb"):
        assert f"'tutorials/{nb.stem}.md'" in nav


@pytest.mark.parametrize(
    "html, remote",
    [
        ('<script src="https://cdn.example/x.js"></script>', True),
        ('<link rel="stylesheet" href="//fonts.example/css">', True),
        ('<img src="http://example/a.png">', True),
        ('<script src="assets/javascripts/bundle.js"></script>', False),
        ('<a href="https://example.org">a link is not a fetch</a>', False),
    ],
)
def test_remote_asset_detection(tmp_path, html, remote) -> None:
    site = _load("site")
    (tmp_path / "index.html").write_text(f"<html><body>{html}</body></html>")
    if remote:
        with pytest.raises(Exception, match="network"):
            site.on_post_build({"site_dir": str(tmp_path)})
    else:
        site.on_post_build({"site_dir": str(tmp_path)})


def test_readme_is_a_front_page_with_working_links() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 25_600
    for cmd in ("make demo", "make test", "make docs"):
        assert cmd in readme
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    assert len(links) > 10
    for link in links:
        if not link.startswith(("http://", "https://")):
            assert (ROOT / link).exists(), f"README links {link}, which does not exist"


def test_offline_theme_settings() -> None:
    cfg = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^\s+font: false", cfg, re.M), "Material must not load Google fonts"
    assert re.search(r"^strict: true", cfg, re.M)


def test_readme_snippets_run() -> None:
    """The README's three Python snippets, run in order in one namespace, as a reader would."""
    from matplotlib.figure import Figure

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 3
    ns: dict = {}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), ns)
    assert ns["a"].shape == ns["x"].shape and ns["m"].shape == (4, 1, 28, 28)
    assert isinstance(ns["fig"], Figure)


@pytest.mark.parametrize("page", ["guides/targets.md", "guides/expected-gradcam.md"])
def test_self_contained_guide_snippets_run(page) -> None:
    """Guides whose snippets need nothing but the package and the Fashion-MNIST files."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(encoding="utf-8"), re.S)
    assert blocks
    ns: dict = {}
    for code in blocks:
        exec(compile(code, page, "exec"), ns)


def test_results_links_written_either_way_point_at_the_published_copy() -> None:
    site = _load("site")

    class _File:
        src_uri = "guides/topic.md"

    class _Page:
        file = _File()

    md = "[a](../../benchmarks/results/x.md) [b](../benchmarks/results/y/z.png) [c](other.md)"
    out = site.on_page_markdown(md, _Page())
    assert out == "[a](../benchmarks/results/x.md) [b](../benchmarks/results/y/z.png) [c](other.md)"
