"""The import graph of ``src/cleargrad``: no circles, no arrow from a lower layer up.

Every module is parsed with :mod:`ast` (nothing is imported); every ``import`` and
``from ... import`` of a ``cleargrad`` module counts, wherever it is written: at the top,
inside a function (a lazy import is still a dependency) and under ``if TYPE_CHECKING:``
(a type-only import still couples the two modules; state the type as a ``Protocol`` in
the lower module instead). Imports named by a string (``importlib.import_module``) are
not seen: :mod:`cleargrad.families` is the one place that names the method families so.

The layer order is written once, in :data:`LAYERS` (the "Layout" section of
``docs/guides/development.md`` describes it). A package may import from its own layer
and the layers below; the root package ``cleargrad/__init__.py`` is the lazy public
facade above everything and is left out.
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "cleargrad"

#: lowest first; each entry is one layer (top-level packages and modules of cleargrad)
LAYERS: list[tuple[str, ...]] = [
    ("errors",),                                   # the exception types: no cleargrad import
    ("atomic",),                                   # atomic file writes (temp file + fsync + rename)
    ("runtime",),                                  # memory planning, layouts, folding, compiling
    ("core", "_progress"),                         # the explanation kernel, the Method root (+ an old alias)
    ("attribution", "cam", "attention"),           # the method families
    ("families",),                                 # the one list of the family packages
    ("gad", "training"),                           # built on the families / on core
    ("metrics",),                                  # any explanation tensor, no method
    ("api",),                                      # explain(), methods(), gad:BASE
    ("models", "data", "viz", "store"),            # architectures, data, figures, results store
    ("report",),                                   # the HTML report of a store
    ("evaluation",),                               # the dataset-scale engine (methods, metrics, data, store, report)
    ("cli", "__main__"),                           # the command line
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}

#: circles still being removed (none: the evaluation engine left cli/)
KNOWN_CIRCLES: list[list[str]] = []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(module: str, path: Path) -> set[str]:
    """The cleargrad modules ``module`` imports (``from pkg import sub`` names the submodule)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            targets = subs if len(subs) == len(node.names) else [target, *subs]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        out |= {t for t in targets if t in MODULES and t not in (module, "cleargrad")}
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items() if m != "cleargrad"}


def _unit(module: str) -> str:
    """The top-level package or module of ``cleargrad.a.b`` (``a``)."""
    return module.split(".")[1]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = itertools.count()

    def visit(v: str) -> None:
        index[v] = low[v] = next(counter)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_package_has_a_layer() -> None:
    unplaced = sorted({_unit(m) for m in GRAPH} - set(LAYER))
    assert not unplaced, f"place {unplaced} in LAYERS of tests/test_import_graph.py (and in the Layout guide)"


def test_no_import_circles_between_modules() -> None:
    assert [c for c in _cycles(GRAPH) if c not in KNOWN_CIRCLES] == []


def test_no_import_circles_between_packages() -> None:
    packages: dict[str, set[str]] = defaultdict(set)
    for m, targets in GRAPH.items():
        packages[_unit(m)] |= {_unit(t) for t in targets if _unit(t) != _unit(m)}
    assert _cycles(packages) == []


def test_no_upward_imports() -> None:
    upward = sorted(
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        for t in targets
        if LAYER.get(_unit(t), -1) > LAYER.get(_unit(m), len(LAYERS))
    )
    assert upward == []


def test_the_checker_sees_circles_and_upward_arrows() -> None:
    """The checks can fail: a circle and an upward arrow written by hand are found."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    fake = _imports("cleargrad.core.fake", ROOT / "core" / "registry.py")
    assert "cleargrad.errors" in fake  # relative imports resolve
    assert LAYER["core"] < LAYER["cam"] < LAYER["gad"] < LAYER["metrics"] < LAYER["cli"]
