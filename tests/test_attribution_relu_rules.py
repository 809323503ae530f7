"""Guided backprop / deconvolution ReLU rules, hand-computed, for every way to call a ReLU.

The network ``y = w2 · relu(W1 x + b1)`` with explicit numbers:

    x  = [1, 2]
    W1 = [[1, 0], [0, 1], [1, 1]],  b1 = [2, -3, -1]   ->  u = W1 x + b1 = [3, -1, 2]
    w2 = [1, 2, -3] (class 0)

    d y / d r      = [1, 2, -3]
    plain:   d y / d u = 1[u>0] * [1, 2, -3]       = [1, 0, -3]  ->  d y / d x = W1^T [1, 0, -3] = [-2, -3]
    guided:  1[u>0] * relu([1, 2, -3])             = [1, 0,  0]  ->  W1^T [1, 0, 0]  = [1, 0]
    deconv:  relu([1, 2, -3])                      = [1, 2,  0]  ->  W1^T [1, 2, 0]  = [1, 2]

Ours must give the guided / deconv values whatever way the ReLU is called. Captum's
module-hook approach only sees ``nn.ReLU`` modules: for a functional ReLU it silently
returns the plain gradient, which this test shows as well.
"""

from __future__ import annotations

import captum.attr as ca
import pytest
import torch
import torch.nn.functional as F
from helpers import FunctionalReLUNet
from torch import nn

import cleargrad as cg

X = torch.tensor([[1.0, 2.0]])
PLAIN = torch.tensor([[-2.0, -3.0]])
GUIDED = torch.tensor([[1.0, 0.0]])
DECONV = torch.tensor([[1.0, 2.0]])


class HandNet(nn.Module):
    """``w2 · relu(W1 x + b1)`` with the numbers of the module docstring; ``relu`` is pluggable."""

    def __init__(self, relu: nn.Module | None = None, call=None) -> None:  # noqa: ANN001
        super().__init__()
        self.fc1 = nn.Linear(2, 3)
        self.fc2 = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
            self.fc1.bias.copy_(torch.tensor([2.0, -3.0, -1.0]))
            self.fc2.weight.copy_(torch.tensor([[1.0, 2.0, -3.0], [0.5, 0.5, 0.5]]))
        self.relu = relu
        self.call = call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.fc1(x)
        r = self.relu(u) if self.relu is not None else self.call(u)
        return self.fc2(r)


FUNCTIONAL = {
    "F.relu": lambda u: F.relu(u),
    "F.relu_inplace": lambda u: F.relu(u, inplace=True),
    "F.relu_": lambda u: F.relu_(u),
    "torch.relu": lambda u: torch.relu(u),
    "torch.relu_": lambda u: torch.relu_(u),
    "Tensor.relu": lambda u: u.relu(),
    "Tensor.relu_": lambda u: u.relu_(),
}


@pytest.mark.parametrize("style", list(FUNCTIONAL))
def test_functional_relu_hand_computed_and_captum_wrong(style: str) -> None:
    model = HandNet(call=FUNCTIONAL[style]).eval()
    assert torch.equal(cg.Saliency(model).attribute(X, target=0, abs=False), PLAIN)
    assert torch.equal(cg.GuidedBackprop(model).attribute(X, target=0), GUIDED)
    assert torch.equal(cg.Deconvolution(model).attribute(X, target=0), DECONV)
    # Captum's hooks never see a functional ReLU: it returns the plain gradient
    with pytest.warns(UserWarning):
        cap_gb = ca.GuidedBackprop(model).attribute(X.clone(), target=0)
        cap_dc = ca.Deconvolution(model).attribute(X.clone(), target=0)
    assert torch.equal(cap_gb, PLAIN) and not torch.equal(cap_gb, GUIDED)
    assert torch.equal(cap_dc, PLAIN) and not torch.equal(cap_dc, DECONV)


@pytest.mark.parametrize("inplace", [False, True])
def test_module_relu_hand_computed_and_captum_agrees(inplace: bool) -> None:
    model = HandNet(relu=nn.ReLU(inplace=inplace)).eval()
    assert torch.equal(cg.GuidedBackprop(model).attribute(X, target=0), GUIDED)
    assert torch.equal(cg.Deconvolution(model).attribute(X, target=0), DECONV)
    with pytest.warns(UserWarning):
        assert torch.equal(ca.GuidedBackprop(model).attribute(X.clone(), target=0), GUIDED)
        assert torch.equal(ca.Deconvolution(model).attribute(X.clone(), target=0), DECONV)


def test_functional_relu_cnn_equals_captum_on_module_twin() -> None:
    """On a real CNN with F.relu / torch.relu / Tensor.relu_, ours equals Captum run on a
    twin with the same weights whose ReLUs are nn.ReLU modules; Captum on the functional
    net itself returns the plain gradient."""

    class ModuleTwin(nn.Module):
        def __init__(self, src: FunctionalReLUNet) -> None:
            super().__init__()
            self.src = src
            self.r1, self.r2, self.r3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = self.src
            x = self.r1(s.conv1(x))
            x = self.r2(s.conv2(x))
            x = self.r3(s.conv3(x))
            return s.fc(x.mean(dim=(2, 3)))

    torch.manual_seed(0)
    net = FunctionalReLUNet().eval()
    twin = ModuleTwin(net).eval()
    x = torch.randn(2, 1, 10, 10)
    plain = cg.Saliency(net).attribute(x, target=[1, 2], abs=False)
    for ours_cls, cap_cls in ((cg.GuidedBackprop, ca.GuidedBackprop), (cg.Deconvolution, ca.Deconvolution)):
        ours = ours_cls(net).attribute(x, target=[1, 2])
        with pytest.warns(UserWarning):
            ref = cap_cls(twin).attribute(x.clone(), target=[1, 2])
            wrong = cap_cls(net).attribute(x.clone(), target=[1, 2])
        assert (ours - ref).abs().max() <= 1e-6 * ref.abs().max()
        assert torch.allclose(wrong, plain, atol=1e-7)
        assert (ours - plain).abs().max() > 0.1 * plain.abs().max()


# ReLU6 (MobileNet-V2): u = x + b = [-1, 3, 8, 2], y = w2 · relu6(u), w2 = [2, -1, 4, 5]
#   plain:  1[0<u<6] * w2         = [0, -1, 0, 5]
#   guided: 1[0<u<6] * relu(w2)   = [0,  0, 0, 5]
#   deconv: relu(w2)              = [2,  0, 4, 5]
X6 = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
B6 = torch.tensor([-2.0, 1.0, 5.0, -2.0])
W6 = torch.tensor([[2.0, -1.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0]])

RELU6 = {
    "nn.ReLU6": nn.ReLU6(),
    "nn.ReLU6_inplace": nn.ReLU6(inplace=True),
    "F.relu6": lambda u: F.relu6(u),
    "F.relu6_inplace": lambda u: F.relu6(u, inplace=True),
    "F.hardtanh_0_6": lambda u: F.hardtanh(u, 0.0, 6.0),
    "nn.Hardtanh_0_6": nn.Hardtanh(0.0, 6.0),
}


class HandNet6(nn.Module):
    def __init__(self, act) -> None:  # noqa: ANN001
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.eye(4))
            self.fc1.bias.copy_(B6)
            self.fc2.weight.copy_(W6)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.parametrize("style", list(RELU6))
def test_relu6_rules_hand_computed(style: str) -> None:
    model = HandNet6(RELU6[style]).eval()
    assert torch.equal(cg.Saliency(model).attribute(X6, target=0, abs=False), torch.tensor([[0.0, -1.0, 0.0, 5.0]]))
    assert torch.equal(cg.GuidedBackprop(model).attribute(X6, target=0), torch.tensor([[0.0, 0.0, 0.0, 5.0]]))
    assert torch.equal(cg.Deconvolution(model).attribute(X6, target=0), torch.tensor([[2.0, 0.0, 4.0, 5.0]]))


def test_other_hardtanh_is_left_alone() -> None:
    """hardtanh(-1, 1) is not ReLU-like: no rule applies, guided == plain gradient."""
    model = HandNet6(nn.Hardtanh(-1.0, 1.0)).eval()
    x = torch.tensor([[1.5, -1.0, -4.5, 2.0]])  # u = [-0.5, 0, 0.5, 0]: all inside (-1, 1)
    plain = cg.Saliency(model).attribute(x, target=0, abs=False)
    assert torch.equal(cg.GuidedBackprop(model).attribute(x, target=0), plain)
    assert torch.equal(plain, W6[:1])
