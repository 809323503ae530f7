"""Dataset-scale evaluation: explain and score image sets into a resumable results store.

Sits between :mod:`cleargrad.metrics` / the method families and :mod:`cleargrad.cli`
(which parses arguments and prints); it never imports :mod:`cleargrad.cli`. Submodules
are imported on use (``import cleargrad.evaluation`` loads no PyTorch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import EvalPlan, run_evaluation
    from .run import run_evaluate
    from .settings import EvaluationSettings
    from .verdict import VerdictTable, verdict_table

__all__ = ["EvalPlan", "EvaluationSettings", "VerdictTable", "run_evaluate", "run_evaluation", "verdict_table"]

_LAZY = {
    "EvalPlan": "engine",
    "run_evaluation": "engine",
    "run_evaluate": "run",
    "EvaluationSettings": "settings",
    "VerdictTable": "verdict",
    "verdict_table": "verdict",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
