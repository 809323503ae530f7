"""Explanation-quality metrics: faithfulness, complexity, localisation, regions, robustness.

Every metric takes an explanation from any source (a tensor or numpy array shaped
``(N, C, H, W)``, ``(N, 1, H, W)`` or ``(N, H, W)``) and returns one value per image
as a tensor on the input's device. :data:`METRICS` maps each metric's name to its
:class:`MetricInfo` (``direction``: which values are better; ``category``; a one-line
summary; the callable). Metrics that run a model leave it exactly as found, run it
in eval mode, and batch all perturbed inputs into chunked forward passes under
``torch.inference_mode()`` (``batch_size`` knob).
"""

from .average import average_drop, average_gain, average_increase, masked_confidence, unit_map
from .base import CATEGORIES, DIRECTIONS, METRICS, MetricInfo, get_metric, metric
from .complexity import complexity, sparseness
from .infidelity import infidelity
from .insertion_deletion import (
    CurveOptions,
    CurveResult,
    blur,
    blur_kernel,
    deletion,
    insertion,
    perturbation_curve,
    trapezoid_auc,
)
from .localisation import energy_pointing_game, pointing_game
from .maps import MAP_REDUCTIONS, normalize_01, prepare_attributions, prepare_maps
from .perturbations import baseline_difference, gaussian_noise, square_removal, uniform_ball
from .protocol import SHARED_METRICS, SharedBatch
from .region import RegionSensitivity, convex_hull_region, occlude, region_complexity, region_sensitivity
from .scoring import mask_image
from .sensitivity import max_sensitivity
from .summary import Summary, nan_summary

__all__ = [
    "MAP_REDUCTIONS",
    "CATEGORIES",
    "DIRECTIONS",
    "METRICS",
    "CurveOptions",
    "CurveResult",
    "MetricInfo",
    "RegionSensitivity",
    "SHARED_METRICS",
    "SharedBatch",
    "Summary",
    "average_drop",
    "average_gain",
    "average_increase",
    "baseline_difference",
    "blur",
    "blur_kernel",
    "complexity",
    "convex_hull_region",
    "deletion",
    "energy_pointing_game",
    "gaussian_noise",
    "get_metric",
    "infidelity",
    "insertion",
    "mask_image",
    "masked_confidence",
    "max_sensitivity",
    "metric",
    "nan_summary",
    "normalize_01",
    "occlude",
    "perturbation_curve",
    "pointing_game",
    "prepare_attributions",
    "prepare_maps",
    "region_complexity",
    "region_sensitivity",
    "sparseness",
    "square_removal",
    "trapezoid_auc",
    "unit_map",
    "uniform_ball",
]

from .road import (  # noqa: E402
    NEIGHBOUR_WEIGHTS,
    ROAD_FRACTIONS,
    RoadResult,
    linear_imputation,
    road_combined,
    road_curves,
    road_lerf,
    road_morf,
    road_removal_mask,
)

__all__ += [
    "NEIGHBOUR_WEIGHTS",
    "ROAD_FRACTIONS",
    "RoadResult",
    "linear_imputation",
    "road_combined",
    "road_curves",
    "road_lerf",
    "road_morf",
    "road_removal_mask",
]

from .randomisation import (  # noqa: E402
    LAYER_ORDERS,
    MPRTResult,
    efficient_mprt,
    explanation_entropy,
    mprt,
    random_logit,
    randomisable_layers,
    randomised_copies,
    sanity_check,
    smooth_mprt,
)
from .similarity import SIMILARITIES, pearson, spearman, ssim, ssim_flat  # noqa: E402

__all__ += [
    "LAYER_ORDERS",
    "MPRTResult",
    "SIMILARITIES",
    "efficient_mprt",
    "explanation_entropy",
    "mprt",
    "pearson",
    "random_logit",
    "randomisable_layers",
    "randomised_copies",
    "sanity_check",
    "smooth_mprt",
    "spearman",
    "ssim",
    "ssim_flat",
]

from .verdict import (  # noqa: E402
    MetricVerdict,
    Separation,
    format_verdicts,
    paired_difference,
    random_map_verdict,
    separation_mark,
)

__all__ += [
    "MetricVerdict",
    "Separation",
    "format_verdicts",
    "paired_difference",
    "random_map_verdict",
    "separation_mark",
]

from .axiomatic import completeness, effective_complexity  # noqa: E402
from .localisation_masks import (  # noqa: E402
    attribution_localisation,
    localisation_auc,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)

__all__ += [
    "attribution_localisation",
    "completeness",
    "effective_complexity",
    "localisation_auc",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "top_k_intersection",
]

from .faithfulness_extra import faithfulness_correlation, monotonicity_arya, selectivity  # noqa: E402

__all__ += ["faithfulness_correlation", "monotonicity_arya", "selectivity"]

from .sensitivity_avg import avg_sensitivity, local_lipschitz_estimate, sensitivity_distances  # noqa: E402

__all__ += ["avg_sensitivity", "local_lipschitz_estimate", "sensitivity_distances"]

from .axiomatic_more import input_invariance, non_sensitivity, shifted_model  # noqa: E402
from .faithfulness_more import (  # noqa: E402
    grid_segments,
    irof,
    monotonicity_nguyen,
    region_perturbation,
    slic_segments,
    sufficiency,
)
from .stability import (  # noqa: E402
    continuity,
    relative_input_stability,
    relative_output_stability,
    relative_representation_stability,
    translate_x,
    uniform_noise,
)

__all__ += [
    "continuity",
    "grid_segments",
    "input_invariance",
    "irof",
    "monotonicity_nguyen",
    "non_sensitivity",
    "region_perturbation",
    "relative_input_stability",
    "relative_output_stability",
    "relative_representation_stability",
    "shifted_model",
    "slic_segments",
    "sufficiency",
    "translate_x",
    "uniform_noise",
]
