"""Pixel-level attribution methods, one small class each on a shared base."""

from .base import Attribution, GradientAttribution
from .controls import GuidedGradCAM, RandomAttribution
from .deeplift import DeepLift, DeepLiftShap
from .expected import ExpectedGradients
from .gradient import Deconvolution, GuidedBackprop, InputXGradient, Saliency
from .integrated import IntegratedGradients
from .lrp import LRP, Composite
from .noise import NoiseTunnel, SmoothGrad
from .perturbation import (
    RISE,
    FeatureAblation,
    KernelShap,
    Lime,
    Occlusion,
    ShapleyValueSampling,
    grid_mask,
    rise_masks,
    shapley_kernel_coalitions,
    slic_mask,
)

__all__ = [
    "Attribution",
    "Deconvolution",
    "DeepLift",
    "DeepLiftShap",
    "ExpectedGradients",
    "GradientAttribution",
    "GuidedBackprop",
    "InputXGradient",
    "IntegratedGradients",
    "LRP",
    "Composite",
    "NoiseTunnel",
    "Saliency",
    "SmoothGrad",
    "FeatureAblation",
    "KernelShap",
    "Lime",
    "Occlusion",
    "RISE",
    "ShapleyValueSampling",
    "grid_mask",
    "rise_masks",
    "shapley_kernel_coalitions",
    "slic_mask",
    "GuidedGradCAM",
    "RandomAttribution",
]
