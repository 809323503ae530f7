"""cleargrad: sharper, more faithful gradient explanations of image classifiers."""

from . import metrics
from .api import explain, make_method, methods
from .attention import AttentionRelevance, AttentionRollout
from .attribution import (
    Deconvolution,
    ExpectedGradients,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
    SmoothGrad,
)
from .cam import (
    CAM,
    AblationCAM,
    AxiomCAM,
    ExpectedGradCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    IntegratedGradCAM,
    LayerCAM,
    ScoreCAM,
    SmoothGradCAMPlusPlus,
    XGradCAM,
    internal_saturation,
)
from .core.layout import get_memory_format, set_memory_format
from .core.tokens import TokenGrid
from .errors import (
    ConfigError,
    DataError,
    ExplanationError,
    InputError,
    LayerError,
    ModelStateError,
    TargetError,
)
from .gad import GAD
from .training import InterpretableGradientLoss

__version__ = "0.1.0"

__all__ = [
    "get_memory_format",
    "set_memory_format",
    "CAM",
    "AblationCAM",
    "AttentionRelevance",
    "AttentionRollout",
    "AxiomCAM",
    "ExpectedGradCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "IntegratedGradCAM",
    "LayerCAM",
    "ScoreCAM",
    "SmoothGradCAMPlusPlus",
    "XGradCAM",
    "internal_saturation",
    "ConfigError",
    "DataError",
    "Deconvolution",
    "ExpectedGradients",
    "ExplanationError",
    "GAD",
    "GuidedBackprop",
    "InputError",
    "InputXGradient",
    "IntegratedGradients",
    "InterpretableGradientLoss",
    "LayerError",
    "ModelStateError",
    "NoiseTunnel",
    "Saliency",
    "SmoothGrad",
    "TargetError",
    "TokenGrid",
    "explain",
    "make_method",
    "methods",
    "metrics",
]
