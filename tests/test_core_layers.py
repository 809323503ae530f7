"""Layer lookup (dotted names, module objects, "auto") and activation capture."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from helpers import tiny_cnn
from test_attribution_reference import VGG11BNTrunk, one_thread  # noqa: F401  (autouse fixture)
from torch import nn

import cleargrad as cg
from cleargrad.core import auto_layer, capture_activations, find_layer, forward_hooks, layer_name
from cleargrad.models import SmallCNN


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


@pytest.fixture(scope="module")
def vgg() -> nn.Module:
    return VGG11BNTrunk().eval()


@pytest.fixture(scope="module")
def mobilenet() -> nn.Module:
    return torchvision.models.mobilenet_v2(weights=None, num_classes=10).eval()


def test_dotted_names(resnet: nn.Module, vgg: nn.Module) -> None:
    assert find_layer(resnet, "layer4.1.conv2") is resnet.layer4[1].conv2
    assert find_layer(resnet, "layer4") is resnet.layer4
    assert find_layer(vgg, "features.28") is vgg.features[28]
    assert layer_name(resnet, resnet.layer4[1].conv2) == "layer4.1.conv2"


def test_module_objects_and_foreign_module(resnet: nn.Module) -> None:
    assert find_layer(resnet, resnet.layer3[0]) is resnet.layer3[0]
    foreign = nn.Conv2d(3, 3, 1)
    with pytest.raises(cg.LayerError, match="not part of the model"):
        find_layer(resnet, foreign)
    with pytest.raises(cg.LayerError, match="dotted name"):
        find_layer(resnet, 4)  # type: ignore[arg-type]
    with pytest.raises(cg.LayerError, match="no layer named ''"):
        find_layer(resnet, "")


def test_unknown_name_lists_close_matches(resnet: nn.Module) -> None:
    with pytest.raises(cg.LayerError, match=r"Did you mean: .*layer4\.1\.conv2") as info:
        find_layer(resnet, "layer4.1.con2")
    assert "Top-level layers: conv1, bn1, relu, maxpool, layer1" in str(info.value)


def test_auto_layer_on_reference_architectures(resnet: nn.Module, vgg: nn.Module, mobilenet: nn.Module) -> None:
    x3 = torch.randn(1, 3, 32, 32)
    # at 32x32 layer4 is 1x1 (a constant CAM): auto takes the last map larger than 1x1
    assert find_layer(resnet, "auto", example=x3) is resnet.layer3
    assert find_layer(resnet, "auto", example=torch.randn(1, 3, 64, 64)) is resnet.layer4
    # vgg11_bn: the last ReLU before the final max-pool (index 28)
    assert find_layer(vgg, "auto", example=x3) is vgg.features[27]
    assert isinstance(vgg.features[27], nn.ReLU) and isinstance(vgg.features[28], nn.MaxPool2d)
    # mobilenet_v2: the last 1x1 conv block; `features` returns that very tensor and finishes last
    # (at 64x64: at 32x32 its output is 1x1)
    mb = find_layer(mobilenet, "auto", example=torch.randn(1, 3, 64, 64))
    assert mb is mobilenet.features
    small = SmallCNN(width=4).eval()
    assert auto_layer(small, torch.randn(1, 1, 28, 28)) is small.features


def test_auto_layer_leaves_no_hooks_and_needs_example(resnet: nn.Module) -> None:
    counts = [len(m._forward_hooks) for m in resnet.modules()]
    find_layer(resnet, "auto", example=torch.randn(1, 3, 32, 32))
    assert [len(m._forward_hooks) for m in resnet.modules()] == counts
    with pytest.raises(cg.LayerError, match="example"):
        find_layer(resnet, "auto")


def test_auto_layer_without_4d_output() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    with pytest.raises(cg.LayerError, match="no module with a 4-D"):
        find_layer(mlp, "auto", example=torch.randn(1, 1, 4, 4))


class InplaceAfter(nn.Module):
    """conv -> (captured) -> in-place scaling and in-place ReLU -> GAP -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3, 2)

    def head(self, a: torch.Tensor) -> torch.Tensor:
        a.mul_(2.0)
        a = F.relu(a, inplace=True)
        return self.fc(a.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x))


def test_capture_activations_survives_downstream_inplace_ops() -> None:
    torch.manual_seed(0)
    m = InplaceAfter().eval()
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        pre = m.conv(x)
    with capture_activations([m.conv], requires_grad=True) as cap:
        y = m(x)
    a = cap.activations[0]
    assert torch.equal(a, pre), "the captured activation was clobbered by the in-place ReLU"
    assert (pre < 0).any()
    (g,) = torch.autograd.grad(y[:, 1].sum(), a)
    # reference: the same head applied to a leaf copy of the activation
    leaf = pre.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(m.head(leaf.clone())[:, 1].sum(), leaf)
    torch.testing.assert_close(g, g_ref)
    assert len(m.conv._forward_hooks) == 0


def test_capture_activations_plain_and_removal_on_error() -> None:
    m = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    with torch.no_grad(), capture_activations([m.features, m.classifier]) as cap:
        out = m(x)
    assert cap.get(0).shape == (2, 16, 3, 3) and torch.equal(cap.get(1), out)
    with pytest.raises(RuntimeError, match="inside"), capture_activations([m.features]):
        raise RuntimeError("inside")
    assert all(len(mod._forward_hooks) == 0 for mod in m.modules())
    with pytest.raises(RuntimeError, match="inside"), forward_hooks([m.classifier], lambda *a: None):
        assert len(m.classifier._forward_hooks) == 1
        raise RuntimeError("inside")
    assert len(m.classifier._forward_hooks) == 0
