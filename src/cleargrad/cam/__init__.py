"""The CAM family on one base class; each method states only its channel (or pixel) weights."""

from .ablation import AblationCAM
from .base import BaseCAM, CAMMaps, fuse_maps, normalize_maps, upsample_maps
from .eigen import KPCACAM, EigenCAM, EigenGradCAM
from .expected import ExpectedGradCAM
from .fullgrad import FullGrad, FullGradDecomposition
from .gradient import CAM, AxiomCAM, GradCAM, GradCAMPlusPlus, GradientCAM, HiResCAM, LayerCAM, XGradCAM
from .integrated import IntegratedGradCAM
from .noisy_score import ISCAM, SSCAM
from .saturation import internal_saturation
from .score import ScoreCAM
from .smooth import SmoothGradCAMPlusPlus
from .variants import FEM, FinerCAM, GradCAMElementWise, RandomCAM, ShapleyCAM

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
    "EigenCAM",
    "EigenGradCAM",
    "FEM",
    "FinerCAM",
    "FullGrad",
    "FullGradDecomposition",
    "GradCAMElementWise",
    "KPCACAM",
    "RandomCAM",
    "ShapleyCAM",
    "SSCAM",
    "ISCAM",
]
