"""CIFAR-style ResNet-18: 3x3 stride-1 stem, no initial max-pool, BasicBlocks [2, 2, 2, 2]."""

from __future__ import annotations

import torch
from torch import nn

from ._width import check_width, scaled

__all__ = ["BasicBlock", "CifarResNet", "cifar_resnet18"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN projection) shortcut.

    Args:
        cin: input channels.
        cout: output channels.
        stride: stride of the first conv (and of the projection shortcut).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                nn.BatchNorm2d(cout),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """ResNet for small images (32x32 CIFAR, 28x28 Fashion-MNIST).

    Compared with the ImageNet ResNet the stem is one 3x3 stride-1 conv and there is no
    max-pool, so a 32x32 input reaches ``layer4`` at 4x4 (28x28 at 4x4 too). The head
    is global average pooling and one linear layer ``fc`` (GAP-linear), and
    ``layer="auto"`` finds ``layer4``.

    Args:
        blocks: number of BasicBlocks in each of the four stages.
        in_channels: input channels (3 for RGB, 1 for grayscale).
        num_classes: number of outputs.
        width: channel multiplier applied to the base widths 64, 128, 256, 512.
    """

    # the four stages, registered with add_module in __init__
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(
        self,
        blocks: tuple[int, int, int, int] = (2, 2, 2, 2),
        in_channels: int = 3,
        num_classes: int = 10,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        w = check_width(width)
        widths = [scaled(c, w) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        cin = widths[0]
        for i, (cout, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(cin, cout, stride)] + [BasicBlock(cout, cout) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            cin = cout
        self.fc = nn.Linear(cin, num_classes)
        self.config = {"in_channels": in_channels, "num_classes": num_classes, "width": w, "blocks": list(blocks)}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def cifar_resnet18(in_channels: int = 3, num_classes: int = 10, width: float = 1.0) -> CifarResNet:
    """CIFAR-style ResNet-18 (BasicBlocks [2, 2, 2, 2], stages ``layer1``..``layer4``,
    GAP + ``fc``), randomly initialised.

    Args:
        in_channels: input channels (3 for RGB, 1 for 28x28 Fashion-MNIST).
        num_classes: number of outputs.
        width: channel multiplier (1.0 gives 64-128-256-512 channels, ~11M parameters).
    """
    return CifarResNet((2, 2, 2, 2), in_channels=in_channels, num_classes=num_classes, width=width)
