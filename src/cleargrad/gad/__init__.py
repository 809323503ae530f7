"""GAD — Gradient Artificial Distancing (spec § 3): distancing, support models, fusion,
multi-class strategies, and the :class:`GAD` explainer that ties them together."""

from .distancing import Grouping, alpha_schedule, check_alphas, distance_targets, group_margin
from .fusion import fuse, important_mask, normalized_importance
from .gad import GAD, SPEC_SETTINGS
from .strategies import STRATEGIES, make_tasks, two_means
from .support import SupportStats, TrainSettings, train_support_models

__all__ = [
    "GAD",
    "SPEC_SETTINGS",
    "STRATEGIES",
    "Grouping",
    "SupportStats",
    "TrainSettings",
    "alpha_schedule",
    "check_alphas",
    "distance_targets",
    "fuse",
    "group_margin",
    "important_mask",
    "make_tasks",
    "normalized_importance",
    "train_support_models",
    "two_means",
]
