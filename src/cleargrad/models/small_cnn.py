"""A small CNN for 1x28x28 images (Fashion-MNIST): conv blocks, GAP, linear."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN"]


def _block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Four 3x3 conv blocks (BN, in-place ReLU, two max-pools), global average pooling
    and one linear layer: a "GAP-linear" network, so CAM identities hold exactly.

    The last conv block is ``features`` (output ``(N, 4*width, H/4, W/4)``), which is
    what ``layer="auto"`` finds.

    Args:
        in_channels: input channels (1 for Fashion-MNIST).
        num_classes: number of outputs.
        width: channels of the first block; later blocks use 2x and 4x.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(in_channels, w, pool=False),
            _block(w, 2 * w, pool=True),
            _block(2 * w, 4 * w, pool=True),
            _block(4 * w, 4 * w, pool=False),
        )
        self.classifier = nn.Linear(4 * w, num_classes)
        self.config = {"in_channels": in_channels, "num_classes": num_classes, "width": width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x)
        return self.classifier(a.mean(dim=(2, 3)))
