"""The random-map verdict of an evaluation (``cleargrad evaluate --random-control``).

:func:`verdict_table` reads a results store (or its rows) and says, per metric, which
methods separate from the random-map control and whether the metric is uninformative
(it cannot tell the methods from a random map). It lives in :mod:`cleargrad.report.verdict`
(the report shows it) and is re-exported here, beside the engine that writes the rows.
"""

from __future__ import annotations

from ..report.verdict import CONTROL, NO_CONTROL, VerdictTable, latest_settings, verdict_table

__all__ = ["CONTROL", "NO_CONTROL", "VerdictTable", "latest_settings", "verdict_table"]
