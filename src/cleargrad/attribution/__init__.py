"""Pixel-level attribution methods, one small class each on a shared base."""

from .base import Attribution, GradientAttribution
from .deeplift import DeepLift, DeepLiftShap
from .expected import ExpectedGradients
from .gradient import Deconvolution, GuidedBackprop, InputXGradient, Saliency
from .integrated import IntegratedGradients
from .lrp import LRP, Composite
from .noise import NoiseTunnel, SmoothGrad

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
]
