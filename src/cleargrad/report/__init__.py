"""HTML report of a results store (``cleargrad report``)."""

from .html import build_report, render_report, versions
from .summary import Cell, MetricColumn, Table, summarise

__all__ = ["Cell", "MetricColumn", "Table", "build_report", "render_report", "summarise", "versions"]
