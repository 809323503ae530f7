"""Pixel-level attribution methods, one small class each on a shared base."""

from .base import Attribution, GradientAttribution
from .controls import GuidedGradCAM, RandomAttribution
from .expected import ExpectedGradients
from .gradient import Deconvolution, GuidedBackprop, InputXGradient, Saliency
from .integrated import IntegratedGradients
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
    "ExpectedGradients",
    "GradientAttribution",
    "GuidedBackprop",
    "InputXGradient",
    "IntegratedGradients",
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
