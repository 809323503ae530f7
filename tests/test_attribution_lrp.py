"""LRP: equality with Zennit 1.0 per composite on torchvision vgg11_bn and resnet18,
each rule against a hand computation and against Zennit's rule on a two-layer net,
relevance conservation, functional ReLUs, custom rules, the model left untouched."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
import torchvision
from helpers import FunctionalReLUNet, ModelSnapshot
from test_attribution_reference import _randomise_bn  # the same batch-norm statistics as the reference tests
from torch import nn

import cleargrad as cg
from cleargrad.attribution import LRP, Composite
from cleargrad.core import lrp_rules as R

zennit = pytest.importorskip("zennit")
from zennit import rules as zr  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import SequentialMergeBatchNorm  # noqa: E402
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat  # noqa: E402
from zennit.core import Composite as ZComposite  # noqa: E402
from zennit.torchvision import ResNetCanonizer  # noqa: E402

RTOL = 1e-4


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _close(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())




@functools.cache
def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "vgg11_bn":
        m = torchvision.models.vgg11_bn(weights=None, num_classes=10)
        # the real features and 7x7 adaptive pool; a narrower classifier of the same shape
        m.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 64), nn.ReLU(True),
            nn.Dropout(), nn.Linear(64, 10),
        )
    else:
        m = torchvision.models.resnet18(weights=None, num_classes=10)
    return _randomise_bn(m, 1)


ZENNIT = {
    "epsilon_plus_flat": lambda can: EpsilonPlusFlat(canonizers=can),
    "epsilon_gamma_box": lambda can: EpsilonGammaBox(low=-3.0, high=3.0, canonizers=can),
    "epsilon_alpha2_beta1": lambda can: EpsilonAlpha2Beta1(canonizers=can),
}


def _zennit(model: nn.Module, composite, x: torch.Tensor, t: list[int]) -> torch.Tensor:  # noqa: ANN001
    onehot = F.one_hot(torch.tensor(t), 10).to(x.dtype)
    with Gradient(model, composite) as attributor:
        _, rel = attributor(x, lambda out: out * onehot)  # relevance starts at the logit, as ours
    return rel


@pytest.mark.parametrize("arch", ["vgg11_bn", "resnet18"])
@pytest.mark.parametrize("composite", list(ZENNIT))
def test_lrp_equals_zennit(arch: str, composite: str) -> None:
    model = _model(arch)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    t = [3, 7]
    snap = ModelSnapshot.take(model)
    ours = LRP(model).attribute(x, target=t, composite=composite, low=-3.0, high=3.0)
    snap.assert_same(model)
    can = [SequentialMergeBatchNorm()] if arch == "vgg11_bn" else [ResNetCanonizer()]
    # on a copy: Zennit 1.0's BatchNorm merge leaves new zero biases behind (test below)
    ref = _zennit(copy.deepcopy(model), ZENNIT[composite](can), x, t)
    assert _close(ours, ref) <= RTOL


# --- rules on a two-layer net -----------------------------------------------------

def _two_layer(bias: bool = True) -> nn.Sequential:
    l1, l2 = nn.Linear(3, 2, bias=bias), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        l1.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 2.0]]))
        if bias:
            l1.bias.copy_(torch.tensor([0.5, -0.25]))
        l2.weight.copy_(torch.tensor([[1.5, 2.0]]))
    return nn.Sequential(l1, nn.ReLU(), l2).eval()


X = torch.tensor([[1.0, -0.5, 1.0]])  # hidden pre-activations (3.0, 0.25): both units active


def _hand(rule: str) -> torch.Tensor:
    """Relevance at the input when the first layer uses ``rule`` and the last LRP-0."""
    w = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 2.0]])
    b = torch.tensor([0.5, -0.25])
    v = torch.tensor([1.5, 2.0])
    x = X[0]
    z = w @ x + b
    a = z.clamp(min=0)
    r = a * v  # LRP-0 on the bias-free last layer with R_out = its output: R_j = a_j v_j
    eps = 1e-6

    def st(d: float) -> float:
        return d + eps * (1.0 if d >= 0 else -1.0)

    out = torch.zeros(3)
    for j in range(2):
        if r[j] == 0:
            continue
        for i in range(3):
            wij, xi = float(w[j, i]), float(x[i])
            if rule == "epsilon":
                out[i] += xi * wij / st(float(z[j])) * r[j]
            elif rule in ("zplus", "alpha2beta1"):
                # positive part: x_i w_ij > 0 contributions (with the positive bias)
                pos = [max(float(x[k] * w[j, k]), 0.0) for k in range(3)]
                neg = [min(float(x[k] * w[j, k]), 0.0) for k in range(3)]
                zp = sum(pos) + max(float(b[j]), 0.0)
                zn = sum(neg) + min(float(b[j]), 0.0)
                alpha, beta = (1.0, 0.0) if rule == "zplus" else (2.0, 1.0)
                out[i] += alpha * pos[i] / st(zp) * r[j]
                if beta:
                    out[i] -= beta * neg[i] / st(zn) * r[j]
            elif rule == "gamma":
                g = 0.25
                # z_j > 0 here for both active units: numerator x_i (w_ij + g w_ij+) for
                # x_i w_ij >= 0 and x_i w_ij for the rest, i.e. contributions boosted by g
                contrib = [float(x[k] * w[j, k]) + g * max(float(x[k] * w[j, k]), 0.0) for k in range(3)]
                den = sum(contrib) + float(b[j]) + g * max(float(b[j]), 0.0)
                assert z[j] > 0
                out[i] += contrib[i] / st(den) * r[j]
            elif rule == "zbox":
                lo, hi = -2.0, 2.0
                part = [float(x[k] * w[j, k]) - lo * max(float(w[j, k]), 0.0) - hi * min(float(w[j, k]), 0.0)
                        for k in range(3)]
                out[i] += part[i] / st(sum(part)) * r[j]
            elif rule == "flat":
                out[i] += 1.0 / st(3.0) * r[j]
            elif rule == "wsquare":
                den = float((w[j] ** 2).sum())  # zero_bias=True: the textbook rule
                out[i] += wij**2 / st(den) * r[j]
    return out[None]


OURS = {
    "epsilon": lambda: R.Epsilon(1e-6),
    "zplus": lambda: R.ZPlus(),
    "alpha2beta1": lambda: R.AlphaBeta(2.0, 1.0),
    "gamma": lambda: R.Gamma(0.25),
    "zbox": lambda: R.ZBox(-2.0, 2.0),
    "flat": lambda: R.Flat(),
    "wsquare": lambda: R.WSquare(zero_bias=True),
}
THEIRS = {
    "epsilon": lambda: zr.Epsilon(1e-6),
    "zplus": lambda: zr.ZPlus(),
    "alpha2beta1": lambda: zr.AlphaBeta(2.0, 1.0),
    "gamma": lambda: zr.Gamma(0.25),
    "zbox": lambda: zr.ZBox(-2.0, 2.0),
    "flat": lambda: zr.Flat(),
    "wsquare": lambda: zr.WSquare(zero_params=["bias"]),
}


def _first_rule(rule: R.Rule) -> Composite:
    return Composite([(nn.Linear, R.Epsilon(0.0))], first=[(nn.Linear, rule)])


@pytest.mark.parametrize("rule", list(OURS))
def test_rule_by_hand_and_against_zennit(rule: str) -> None:
    model = _two_layer()
    ours = LRP(model).attribute(X, target=0, composite=_first_rule(OURS[rule]()))
    assert torch.allclose(ours, _hand(rule), atol=1e-5), (ours, _hand(rule))

    def zmap(ctx, name, module):  # noqa: ANN001
        if name == "0":
            return THEIRS[rule]()
        if name == "2":
            return zr.Epsilon(0.0)
        return zr.Pass() if isinstance(module, nn.ReLU) else None

    with Gradient(model, ZComposite(module_map=zmap)) as attributor:
        _, ref = attributor(X, lambda out: out)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_alpha1_beta0_is_zplus_and_wsquare_bias_as_zennit() -> None:
    model = _two_layer()
    a = LRP(model).attribute(X, target=0, composite=_first_rule(R.AlphaBeta(1.0, 0.0)))
    b = LRP(model).attribute(X, target=0, composite=_first_rule(R.ZPlus()))
    assert torch.equal(a, b)
    ours = LRP(model).attribute(X, target=0, composite=_first_rule(R.WSquare()))

    def zmap(ctx, name, module):  # noqa: ANN001
        return {"0": zr.WSquare(), "2": zr.Epsilon(0.0)}.get(name, zr.Pass() if isinstance(module, nn.ReLU) else None)

    with Gradient(model, ZComposite(module_map=zmap)) as attributor:
        _, ref = attributor(X, lambda out: out)
    assert torch.allclose(ours, ref, atol=1e-6)


# --- invariants --------------------------------------------------------------------

class _BiasFreeResNet(nn.Module):
    """Bias-free: conv, ReLU (functional and module), max pool, a residual sum, average pool."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.c2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.max_pool2d(F.relu(self.c1(x)), 2)
        h = self.c2(a)
        h += a
        h = self.relu(h)
        return self.fc(torch.flatten(self.pool(h), 1))


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus"])
def test_relevance_conservation_bias_free(composite: str) -> None:
    torch.manual_seed(4)
    model = _BiasFreeResNet().eval()
    x = torch.rand(3, 3, 8, 8)  # non-negative inputs: z+ denominators are positive
    t = [0, 2, 4]
    rel = LRP(model).attribute(x, target=t, composite=composite, epsilon=1e-9, stabilizer=1e-9)
    with torch.no_grad():
        logit = model(x)[[0, 1, 2], t]
    assert torch.allclose(rel.flatten(1).sum(1), logit, rtol=1e-4, atol=1e-6)


def test_functional_relus_are_caught() -> None:
    """The functional-ReLU net equals its nn.ReLU-module twin, on ours and on Zennit."""
    torch.manual_seed(5)
    f = FunctionalReLUNet(3, 4).eval()

    class Twin(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.f, self.r = f, nn.ModuleList([nn.ReLU() for _ in range(3)])

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            z = self.r[0](self.f.conv1(z))
            z = self.r[1](self.f.conv2(z))
            z = self.r[2](self.f.conv3(z))
            return self.f.fc(z.mean(dim=(2, 3)))

    twin = Twin().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    ours_f = LRP(f).attribute(x, target=[1, 2], composite="epsilon_plus_flat")
    ours_t = LRP(twin).attribute(x, target=[1, 2], composite="epsilon_plus_flat")
    assert torch.allclose(ours_f, ours_t, atol=1e-6)
    # Zennit's Pass hooks see only the twin's modules; a ReLU's gradient kills relevance
    # wherever its output is 0 (as Pass does not), so the twin is what to compare with
    onehot = F.one_hot(torch.tensor([1, 2]), 4).float()
    with Gradient(twin, EpsilonPlusFlat()) as attributor:
        _, ref = attributor(x, lambda out: out * onehot)
    assert _close(ours_t, ref) <= RTOL


def test_custom_rules_by_layer_type_and_name() -> None:
    model = _model("resnet18")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    a = cg.explain(model, x, method="lrp", target=1, composite="epsilon_plus_flat", rules={nn.Conv2d: "gamma"})
    comp = Composite([(nn.Conv2d, R.Gamma(0.25)), (nn.Linear, R.Epsilon())], first=[((nn.Conv2d, nn.Linear), R.Flat())])
    b = LRP(model).attribute(x, target=1, composite=comp)
    assert torch.allclose(a, b)
    c = LRP(model).attribute(x, target=1, composite="epsilon_plus_flat")
    assert not torch.allclose(a, c)


def test_bad_options() -> None:
    model = _two_layer()
    with pytest.raises(cg.ConfigError, match="composite"):
        LRP(model).attribute(X, target=0, composite="nope")
    with pytest.raises(cg.ConfigError, match="rule"):
        LRP(model).attribute(X, target=0, rules={nn.Linear: "nope"})
    with pytest.raises(cg.ConfigError, match="alpha"):
        R.AlphaBeta(2.0, 2.0)


def test_model_untouched_when_a_forward_hook_raises_mid_call() -> None:
    """BatchNorm folding on a real vgg11_bn / resnet18, interrupted inside the forward."""
    for arch in ("vgg11_bn", "resnet18"):
        model = _model(arch)
        snap = ModelSnapshot.take(model)
        bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
        handle = bn.register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
        try:
            with pytest.raises(RuntimeError, match="boom"):
                LRP(model).attribute(torch.randn(1, 3, 32, 32), target=0, composite="epsilon_gamma_box")
        finally:
            handle.remove()
        snap.assert_same(model)
        # and a normal call afterwards is unaffected by the interrupted one
        x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(8))
        assert torch.equal(LRP(model).attribute(x, target=0), LRP(model).attribute(x, target=0))


def test_zennit_merge_leaves_parameters_behind_ours_leaves_none() -> None:
    """Zennit 1.0 merges BatchNorm by giving bias-free convolutions a new ``bias``
    parameter, which its restore does not unregister: the state_dict gains keys. Ours
    folds on copies inside the backward rule and never writes the model."""
    model = copy.deepcopy(_model("resnet18"))
    keys = set(model.state_dict())
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    snap = ModelSnapshot.take(model)
    LRP(model).attribute(x, target=0)
    snap.assert_same(model)
    _zennit(model, EpsilonPlusFlat(canonizers=[ResNetCanonizer()]), x, [0])
    from importlib.metadata import version

    if int(version("zennit").split(".")[0]) >= 1:  # 0.5 restored with setattr, which unregisters
        assert set(model.state_dict()) - keys  # e.g. conv1.bias
