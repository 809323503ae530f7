"""cleargrad: sharper, more faithful gradient explanations of image classifiers.

The public names below are imported on first use (PEP 562), so ``import cleargrad`` and
the command line's ``--help`` start without loading PyTorch; ``cg.Saliency``,
``cg.explain``, ``cg.metrics`` and the rest behave as ordinary attributes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: the process-wide runtime switches: exported from :mod:`cleargrad.runtime`, not part of
#: ``__all__``; ``cleargrad.set_memory_check`` and the others still resolve for old code
_RUNTIME_SWITCHES = (
    "get_host_cache_limit",
    "get_memory_check",
    "get_memory_format",
    "host_memory_reuse",
    "set_host_cache_limit",
    "set_host_memory_reuse",
    "set_memory_check",
    "set_memory_format",
)

#: public name -> submodule that defines it (relative to this package)
_LAZY: dict[str, str] = {
    # target objects (issue 27)
    "Target": ".core.target_objects",
    "ClassTarget": ".core.target_objects",
    "SoftmaxTarget": ".core.target_objects",
    "BinaryTarget": ".core.target_objects",
    "MultiLabelTarget": ".core.target_objects",
    "RegressionTarget": ".core.target_objects",
    "SegmentationTarget": ".core.target_objects",
    "BoxScoreTarget": ".core.target_objects",
    "MaskScoreTarget": ".core.target_objects",
    "YOLOScoreTarget": ".core.target_objects",
    "SimilarityTarget": ".core.target_objects",
    "explain": ".api",
    "make_method": ".api",
    "methods": ".api",
    "AttentionRelevance": ".attention",
    "AttentionRollout": ".attention",
    "Deconvolution": ".attribution",
    "ExpectedGradients": ".attribution",
    "GuidedBackprop": ".attribution",
    "InputXGradient": ".attribution",
    "IntegratedGradients": ".attribution",
    "NoiseTunnel": ".attribution",
    "Saliency": ".attribution",
    "SmoothGrad": ".attribution",
    "CAM": ".cam",
    "AblationCAM": ".cam",
    "AxiomCAM": ".cam",
    "ExpectedGradCAM": ".cam",
    "GradCAM": ".cam",
    "GradCAMPlusPlus": ".cam",
    "HiResCAM": ".cam",
    "IntegratedGradCAM": ".cam",
    "LayerCAM": ".cam",
    "ScoreCAM": ".cam",
    "SmoothGradCAMPlusPlus": ".cam",
    "XGradCAM": ".cam",
    "internal_saturation": ".cam",
    "TokenGrid": ".core.tokens",
    "ConfigError": ".errors",
    "DataError": ".errors",
    "ExplanationError": ".errors",
    "InputError": ".errors",
    "LayerError": ".errors",
    "ModelStateError": ".errors",
    "ResourceError": ".errors",
    "TargetError": ".errors",
    "GAD": ".gad",
    "EigenCAM": ".cam",
    "EigenGradCAM": ".cam",
    "FEM": ".cam",
    "FinerCAM": ".cam",
    "FullGrad": ".cam",
    "GradCAMElementWise": ".cam",
    "KPCACAM": ".cam",
    "RandomCAM": ".cam",
    "ShapleyCAM": ".cam",
    "SSCAM": ".cam",
    "ISCAM": ".cam",
    "InterpretableGradientLoss": ".training",
    # perturbation methods, random control, Guided Grad-CAM (issue 28)
    "FeatureAblation": ".attribution",
    "GuidedGradCAM": ".attribution",
    "KernelShap": ".attribution",
    "Lime": ".attribution",
    "Occlusion": ".attribution",
    "RISE": ".attribution",
    "RandomAttribution": ".attribution",
    "ShapleyValueSampling": ".attribution",
    "grid_mask": ".attribution",
    "slic_mask": ".attribution",
    "DeepLift": ".attribution",
    "DeepLiftShap": ".attribution",
    "LRP": ".attribution",
    "Composite": ".attribution",
}

__all__ = [
    "Target",
    "ClassTarget",
    "SoftmaxTarget",
    "BinaryTarget",
    "MultiLabelTarget",
    "RegressionTarget",
    "SegmentationTarget",
    "BoxScoreTarget",
    "MaskScoreTarget",
    "YOLOScoreTarget",
    "SimilarityTarget",
    "AblationCAM",
    "AttentionRelevance",
    "AttentionRollout",
    "AxiomCAM",
    "CAM",
    "ConfigError",
    "DataError",
    "Deconvolution",
    "ExpectedGradCAM",
    "ExpectedGradients",
    "ExplanationError",
    "GAD",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedBackprop",
    "HiResCAM",
    "InputError",
    "InputXGradient",
    "IntegratedGradCAM",
    "IntegratedGradients",
    "InterpretableGradientLoss",
    "LayerCAM",
    "LayerError",
    "ModelStateError",
    "NoiseTunnel",
    "ResourceError",
    "Saliency",
    "ScoreCAM",
    "SmoothGrad",
    "SmoothGradCAMPlusPlus",
    "TargetError",
    "TokenGrid",
    "XGradCAM",
    "__version__",
    "explain",
    "internal_saturation",
    "make_method",
    "methods",
    "metrics",
    "FeatureAblation",
    "GuidedGradCAM",
    "KernelShap",
    "Lime",
    "Occlusion",
    "RISE",
    "RandomAttribution",
    "ShapleyValueSampling",
    "grid_mask",
    "slic_mask",
    "EigenCAM",
    "EigenGradCAM",
    "FEM",
    "FinerCAM",
    "FullGrad",
    "GradCAMElementWise",
    "KPCACAM",
    "RandomCAM",
    "ShapleyCAM",
    "SSCAM",
    "ISCAM",
    "DeepLift",
    "DeepLiftShap",
    "LRP",
    "Composite",
]


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule such as ``cleargrad.data``) on first access."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _RUNTIME_SWITCHES:  # old spelling of cleargrad.runtime.<switch>
        value = getattr(importlib.import_module(".runtime", __name__), name)
    elif not name.startswith("__"):
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from . import metrics
    from .api import explain, make_method, methods
    from .attention import AttentionRelevance, AttentionRollout
    from .attribution import (
        LRP,
        Composite,
        Deconvolution,
        DeepLift,
        DeepLiftShap,
        ExpectedGradients,
        GuidedBackprop,
        InputXGradient,
        IntegratedGradients,
        NoiseTunnel,
        Saliency,
        SmoothGrad,
    )
    from .cam import (  # the CAMs of issue 29
        CAM,
        FEM,
        ISCAM,
        KPCACAM,
        SSCAM,
        AblationCAM,
        AxiomCAM,
        EigenCAM,
        EigenGradCAM,
        ExpectedGradCAM,
        FinerCAM,
        FullGrad,
        GradCAM,
        GradCAMElementWise,
        GradCAMPlusPlus,
        HiResCAM,
        IntegratedGradCAM,
        LayerCAM,
        RandomCAM,
        ScoreCAM,
        ShapleyCAM,
        SmoothGradCAMPlusPlus,
        XGradCAM,
        internal_saturation,
    )
    from .core.target_objects import (  # noqa: I001
        BinaryTarget,
        BoxScoreTarget,
        ClassTarget,
        MaskScoreTarget,
        MultiLabelTarget,
        RegressionTarget,
        SegmentationTarget,
        SimilarityTarget,
        SoftmaxTarget,
        Target,
        YOLOScoreTarget,
    )  # for type checkers and IDEs: the eager imports
    from .core.tokens import TokenGrid
    from .errors import (
        ConfigError,
        DataError,
        ExplanationError,
        InputError,
        LayerError,
        ModelStateError,
        ResourceError,
        TargetError,
    )
    from .gad import GAD
    from .training import InterpretableGradientLoss

if TYPE_CHECKING:  # issue 28: perturbation methods, random control, Guided Grad-CAM
    from .attribution import (
        RISE,
        FeatureAblation,
        GuidedGradCAM,
        KernelShap,
        Lime,
        Occlusion,
        RandomAttribution,
        ShapleyValueSampling,
        grid_mask,
        slic_mask,
    )
