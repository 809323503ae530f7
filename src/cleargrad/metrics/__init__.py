"""Explanation-quality metrics: faithfulness, complexity, localisation, regions, robustness.

Every metric takes an explanation from any source (a tensor or numpy array shaped
``(N, C, H, W)``, ``(N, 1, H, W)`` or ``(N, H, W)``) and returns one value per image.
:data:`METRICS` maps each metric's name to its :class:`MetricInfo` (direction: which
values are better; category; one-line summary; the callable).
"""

from .average import average_drop, average_gain, average_increase, masked_confidence, unit_map
from .base import CATEGORIES, DIRECTIONS, METRICS, MetricInfo, get_metric, metric
from .insertion_deletion import CurveResult, blur, blur_kernel, deletion, insertion, perturbation_curve
from .maps import normalize_01, prepare_attributions, prepare_maps
from .region import RegionSensitivity, convex_hull_region, occlude, region_complexity, region_sensitivity
from .scoring import mask_image
from .summary import Summary, nan_summary

__all__ = [
    "CurveResult",
    "average_drop",
    "average_gain",
    "average_increase",
    "blur",
    "blur_kernel",
    "deletion",
    "insertion",
    "masked_confidence",
    "perturbation_curve",
    "unit_map",
    "CATEGORIES",
    "DIRECTIONS",
    "METRICS",
    "MetricInfo",
    "RegionSensitivity",
    "Summary",
    "convex_hull_region",
    "get_metric",
    "mask_image",
    "metric",
    "nan_summary",
    "normalize_01",
    "occlude",
    "prepare_attributions",
    "prepare_maps",
    "region_complexity",
    "region_sensitivity",
]
