"""CIFAR-style MobileNet-V2: stride-1 stem, ReLU6, inverted residual blocks, 1x1 head conv."""

from __future__ import annotations

import torch
from torch import nn

from ._width import check_width, make_divisible

__all__ = ["ConvBNReLU6", "InvertedResidual", "CifarMobileNetV2", "cifar_mobilenet_v2"]

# (expansion t, output channels c, repeats n, stride of the first repeat s). The ImageNet
# table with the stem and the second stage at stride 1, so 32x32 (or 28x28) inputs end
# at 4x4 after three stride-2 stages.
_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBNReLU6(nn.Sequential):
    """Conv2d (no bias) + BatchNorm + in-place ReLU6; ``groups=cin`` makes it depthwise."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1x1 expansion (ReLU6), 3x3 depthwise (ReLU6), linear 1x1 projection; a residual
    connection when the stride is 1 and the channel count is kept.

    Args:
        cin: input channels.
        cout: output channels.
        stride: stride of the depthwise conv.
        expand: expansion factor of the hidden channels.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class CifarMobileNetV2(nn.Module):
    """MobileNet-V2 for small images (32x32 CIFAR, 28x28 Fashion-MNIST).

    ``features`` holds the stride-1 3x3 stem, the inverted residual stages and, last, the
    1x1 conv block (1280 channels for ``width <= 1``), so ``layer="auto"`` finds
    ``features`` (its output is that last 1x1 conv block's). The head is global average
    pooling, dropout and a linear ``classifier``.

    Args:
        in_channels: input channels.
        num_classes: number of outputs.
        width: channel multiplier; channel counts are rounded to multiples of 8, and as in
            the paper the last 1x1 conv is only widened (``width > 1``), never narrowed.
        dropout: dropout probability before the classifier (inactive in eval mode).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        w = check_width(width)
        cin = make_divisible(32 * w)
        last = make_divisible(1280 * max(1.0, w))
        layers: list[nn.Module] = [ConvBNReLU6(in_channels, cin, stride=1)]
        for t, c, n, s in _SETTINGS:
            cout = make_divisible(c * w)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(ConvBNReLU6(cin, last, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        self.config = {"in_channels": in_channels, "num_classes": num_classes, "width": w, "dropout": dropout}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def cifar_mobilenet_v2(in_channels: int = 3, num_classes: int = 10, width: float = 1.0) -> CifarMobileNetV2:
    """CIFAR-style MobileNet-V2 (ReLU6, stride-1 stem, last 1x1 conv block, GAP +
    ``classifier``), randomly initialised.

    Args:
        in_channels: input channels (3 for RGB, 1 for 28x28 Fashion-MNIST).
        num_classes: number of outputs.
        width: channel multiplier (1.0 is the standard network, ~2.2M parameters).
    """
    return CifarMobileNetV2(in_channels=in_channels, num_classes=num_classes, width=width)
