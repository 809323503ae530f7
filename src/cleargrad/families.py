"""The one list of the packages whose import registers the built-in methods and metrics.

This module sits above the method families: :mod:`cleargrad.core.registry` knows no family
and runs :func:`load_families` (added here with
:func:`~cleargrad.core.registry.add_loader`) before its first look-up. Everything that
looks methods up by name (:mod:`cleargrad.api`, GAD, the command line) imports this module.
A new family adds its package to :data:`FAMILY_PACKAGES`.
"""

from __future__ import annotations

import importlib

from .core.registry import add_loader

__all__ = ["FAMILY_PACKAGES", "METRIC_PACKAGES", "load_families", "load_registries"]

#: packages whose import registers the built-in methods (imported on the first look-up,
#: so that ``import cleargrad`` stays light)
FAMILY_PACKAGES: tuple[str, ...] = ("cleargrad.attribution", "cleargrad.cam", "cleargrad.attention")
#: packages whose import registers the built-in metrics
METRIC_PACKAGES: tuple[str, ...] = ("cleargrad.metrics",)


def _import_all(packages: tuple[str, ...]) -> None:
    for package in packages:
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as e:  # a package absent from this build; real import bugs still raise
            if e.name != package:
                raise


def load_families() -> None:
    """Import :data:`FAMILY_PACKAGES`, so that every built-in method is registered."""
    _import_all(FAMILY_PACKAGES)


def load_registries() -> None:
    """Import the method families and the metrics, so that they register themselves."""
    _import_all(FAMILY_PACKAGES + METRIC_PACKAGES)


add_loader(load_families)
