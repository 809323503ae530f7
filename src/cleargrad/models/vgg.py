"""A small VGG-style CNN for 1x28x28 images with a nonlinear fully connected head."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallVGG"]


def _block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU layers (out-of-place ReLU)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class SmallVGG(nn.Module):
    """VGG-style CNN: three double-conv blocks (max-pool after the first two), then
    adaptive max-pool to 3x3, flatten, ``Linear -> ReLU -> Dropout -> Linear``.

    Unlike :class:`SmallCNN` (GAP-linear, where Grad-CAM is exact at the last layer), the
    head after the last conv block is nonlinear, so the class score is not linear in the
    block's activation and its gradient can saturate: the case Expected Grad-CAM targets.

    The last conv block is ``features`` (output ``(N, 4*width, H/4, W/4)``, 7x7 for a
    28x28 input); ``layer="auto"`` finds it.

    Args:
        in_channels: input channels (1 for Fashion-MNIST).
        num_classes: number of outputs.
        width: channels of the first block; later blocks use 2x and 4x.
        hidden: units of the hidden fully connected layer.
        dropout: dropout probability before the last layer.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, width: int = 16, hidden: int = 128, dropout: float = 0.5
    ) -> None:
        super().__init__()
        w = int(width)
        self.stem = nn.Sequential(_block(in_channels, w), nn.MaxPool2d(2), _block(w, 2 * w), nn.MaxPool2d(2))
        self.features = _block(2 * w, 4 * w)
        self.pool = nn.AdaptiveMaxPool2d(3)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * w * 9, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.config = {
            "in_channels": in_channels, "num_classes": num_classes, "width": w, "hidden": hidden, "dropout": dropout
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(self.stem(x))
        return self.classifier(self.pool(a))
