"""The CAM family on one base class; each method states only its channel (or pixel) weights."""

from .ablation import AblationCAM
from .base import BaseCAM, CAMMaps, fuse_maps, normalize_maps, upsample_maps
from .expected import ExpectedGradCAM
from .gradient import CAM, AxiomCAM, GradCAM, GradCAMPlusPlus, GradientCAM, HiResCAM, LayerCAM, XGradCAM
from .integrated import IntegratedGradCAM
from .saturation import internal_saturation
from .score import ScoreCAM
from .smooth import SmoothGradCAMPlusPlus

__all__ = [
    "CAM",
    "AblationCAM",
    "AxiomCAM",
    "BaseCAM",
    "CAMMaps",
    "ExpectedGradCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientCAM",
    "HiResCAM",
    "IntegratedGradCAM",
    "LayerCAM",
    "ScoreCAM",
    "SmoothGradCAMPlusPlus",
    "XGradCAM",
    "fuse_maps",
    "internal_saturation",
    "normalize_maps",
    "upsample_maps",
]
