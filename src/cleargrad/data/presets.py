"""Named preprocessing presets shared by :func:`cleargrad.data.load_image_folder` and the
command line (``cleargrad explain`` / ``evaluate``), so Python and CLI inputs are equal.

``imagenet`` is torchvision's ImageNet evaluation transform: RGB, shorter side 256, centre
crop 224 (crop fraction 0.875), the ImageNet mean and std. ``fashion-mnist`` is what the
shipped SmallCNN expects: grayscale 28×28 with the Fashion-MNIST mean and std.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD

__all__ = ["IMAGENET_CROP_FRACTION", "IMAGENET_MEAN", "IMAGENET_STD", "PRESETS", "Preset", "get_preset"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: torchvision's ImageNet evaluation transform: shorter side 256, centre crop 224
IMAGENET_CROP_FRACTION = 0.875


@dataclass(frozen=True)
class Preset:
    """One preprocessing: ``size``×``size``, ``channels``, per-channel ``mean``/``std``
    applied after scaling to [0, 1], resize-then-centre-crop keeping ``crop_fraction``."""

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_fraction: float


PRESETS: dict[str, Preset] = {
    "imagenet": Preset(224, 3, IMAGENET_MEAN, IMAGENET_STD, IMAGENET_CROP_FRACTION),
    "fashion-mnist": Preset(28, 1, (FASHION_MNIST_MEAN,), (FASHION_MNIST_STD,), 1.0),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (``imagenet``, ``fashion-mnist``).

    Raises:
        ConfigError: an unknown name (the message lists the valid ones).
    """
    from ..core.names import dashed_key

    key = dashed_key(name)
    if key not in PRESETS:
        raise ConfigError(f"unknown preprocessing preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[key]
