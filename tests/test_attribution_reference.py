"""Reference equality with Captum 0.9 on real architectures (random init, eval mode).

Same model, same input, same target: ``max |ours - captum| <= 1e-5 * max |captum|``.
Models: torchvision resnet18 (in-place ReLU, BatchNorm), the vgg11_bn convolutional
trunk, mobilenet_v2 (ReLU6) and cleargrad's SmallCNN, all with randomised BatchNorm
statistics so that eval-mode BatchNorm is not the identity.

Captum's guided backprop / deconvolution hook only ``nn.ReLU`` modules, so on
mobilenet_v2 (``nn.ReLU6``) Captum runs on a copy whose ReLU6 modules are replaced by an
``nn.ReLU`` subclass computing ``hardtanh(u, 0, 6)``: Captum's hook then applies exactly
the rule of spec §1.4 for ReLU6 (forward mask ``1[0<u<6]`` times ``relu(g)``), while our
side runs on the unmodified model.
"""

from __future__ import annotations

import copy
import functools

import captum.attr as ca
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cleargrad as cg
from cleargrad.models import SmallCNN

RTOL = 1e-5


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these models are tiny, and with parallel test processes on a
    shared machine OpenMP threads mostly spin-wait (measured here: ~7x slower with 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomise_bn(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model.eval()


class VGG11BNTrunk(nn.Module):
    """torchvision's vgg11_bn ``features`` (same layers, same indices) with a small head.

    The full torchvision classifier (25088x4096 weights) is replaced by GAP and a small
    ReLU/Dropout MLP to keep the test light; the convolutional part is the real one.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        vgg = torchvision.models.vgg
        self.features = vgg.make_layers(vgg.cfgs["A"], batch_norm=True)
        self.classifier = nn.Sequential(
            nn.Linear(512, 64), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(64, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


@functools.cache
def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    """(model, input) for each reference architecture; cached across tests."""
    torch.manual_seed(0)
    if name == "resnet18":
        model, x = torchvision.models.resnet18(weights=None, num_classes=10), torch.randn(2, 3, 32, 32)
    elif name == "vgg11_bn":
        model, x = VGG11BNTrunk(), torch.randn(2, 3, 32, 32)
    elif name == "mobilenet_v2":
        model, x = torchvision.models.mobilenet_v2(weights=None, num_classes=10), torch.randn(2, 3, 32, 32)
    elif name == "small_cnn":
        model, x = SmallCNN(width=8), torch.randn(2, 1, 28, 28)
    else:  # pragma: no cover
        raise KeyError(name)
    return _randomise_bn(model, seed=1), x


class _ReLU6AsReLU(nn.ReLU):
    """An ``nn.ReLU`` (so Captum hooks it) that computes ReLU6."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(x, 0.0, 6.0, self.inplace)


def captum_view(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on which Captum's ReLU hooks see every ReLU-like module."""
    if not any(isinstance(m, nn.ReLU6) for m in model.modules()):
        return model
    twin = copy.deepcopy(model)
    for parent in twin.modules():
        for key, child in parent.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(parent, key, _ReLU6AsReLU(inplace=child.inplace))
    return twin.eval()


MODELS = ["resnet18", "vgg11_bn", "mobilenet_v2", "small_cnn"]
TARGETS = [3, 7]


def assert_close_to_reference(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    scale = ref.abs().max().item()
    assert scale > 0, "degenerate reference (all zero): the comparison would prove nothing"
    err = (ours - ref).abs().max().item()
    assert err <= RTOL * scale, f"max abs diff {err:.3e} > {RTOL:g} x max|ref| ({scale:.3e})"


SIMPLE = {
    "saliency_abs": (lambda m: cg.Saliency(m), {}, lambda m: ca.Saliency(m), {"abs": True}),
    "saliency_signed": (lambda m: cg.Saliency(m), {"abs": False}, lambda m: ca.Saliency(m), {"abs": False}),
    "input_x_gradient": (lambda m: cg.InputXGradient(m), {}, lambda m: ca.InputXGradient(m), {}),
    "guided_backprop": (lambda m: cg.GuidedBackprop(m), {}, lambda m: ca.GuidedBackprop(m), {}),
    "deconvolution": (lambda m: cg.Deconvolution(m), {}, lambda m: ca.Deconvolution(m), {}),
}


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("method", list(SIMPLE))
def test_single_pass_methods_equal_captum(model_name: str, method: str) -> None:
    model, x = build(model_name)
    ours_f, ours_kw, ref_f, ref_kw = SIMPLE[method]
    ours = ours_f(model).attribute(x, target=TARGETS, **ours_kw)
    ref = ref_f(captum_view(model)).attribute(x.clone(), target=TARGETS, **ref_kw)
    assert_close_to_reference(ours, ref)


def test_guided_differs_from_plain_gradient_on_every_model() -> None:
    """Guards the comparison above: the ReLU rules must actually change the result."""
    for name in MODELS:
        model, x = build(name)
        plain = cg.Saliency(model).attribute(x, target=TARGETS, abs=False)
        for cls in (cg.GuidedBackprop, cg.Deconvolution):
            a = cls(model).attribute(x, target=TARGETS)
            assert (a - plain).abs().max() > 1e-3 * plain.abs().max(), (name, cls.__name__)


IG_STEPS = 5
# trapezoid and Gauss-Legendre on every model; the other Riemann rules on two of them
IG_CASES = [(m, r) for r in ("riemann_trapezoid", "gausslegendre") for m in MODELS] + [
    (m, r) for r in ("riemann_left", "riemann_right", "riemann_middle") for m in ("resnet18", "small_cnn")
]


@pytest.mark.parametrize("model_name,method", IG_CASES)
def test_integrated_gradients_equal_captum(model_name: str, method: str) -> None:
    """Equal to Captum for every rule, with one documented exception.

    Captum's ``riemann_trapezoid`` puts nodes at ``j/(m-1)`` but uses step ``1/m``
    (weights sum to ``(m-1)/m``, not 1), which breaks completeness by a factor
    ``(m-1)/m``; ours uses the trapezoid weights ``1/(m-1)`` (halved at both ends). The
    two are therefore equal up to exactly that factor, which this test checks.
    """
    model, x = build(model_name)
    baseline = 0.1 * torch.randn(1, *x.shape[1:])
    ours, d_ours = cg.IntegratedGradients(model).attribute(
        x, target=TARGETS, baselines=baseline, n_steps=IG_STEPS, method=method, return_convergence_delta=True
    )
    ref, d_ref = ca.IntegratedGradients(model).attribute(
        x, baselines=baseline.expand_as(x), target=TARGETS, n_steps=IG_STEPS, method=method,
        return_convergence_delta=True,
    )
    out_scale = model(x).abs().max().item()
    if method == "riemann_trapezoid":
        assert_close_to_reference(ours * ((IG_STEPS - 1) / IG_STEPS), ref)
        # Captum's delta misses exactly 1/m of the attribution sum
        d_ref = d_ref + ours.flatten(1).sum(1) / IG_STEPS
    else:
        assert_close_to_reference(ours, ref)
    assert (d_ours - d_ref).abs().max().item() <= 1e-4 * out_scale


def test_trapezoid_is_the_true_trapezoid_rule() -> None:
    """Ours integrates a linear path integrand exactly; Captum's misses 1/m of it."""
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    x = torch.randn(2, 3, 2, 2)
    _, d_ours = cg.IntegratedGradients(lin).attribute(
        x, target=[0, 2], n_steps=4, method="riemann_trapezoid", return_convergence_delta=True
    )
    _, d_ref = ca.IntegratedGradients(lin).attribute(
        x, target=[0, 2], n_steps=4, method="riemann_trapezoid", return_convergence_delta=True
    )
    assert d_ours.abs().max() < 1e-5
    assert d_ref.abs().min() > 1e-3


def test_integrated_gradients_chunking_equals_captum_internal_batches() -> None:
    model, x = build("resnet18")
    ours = cg.IntegratedGradients(model).attribute(x, target=TARGETS, n_steps=6, internal_batch_size=5)
    ref = ca.IntegratedGradients(model).attribute(x, target=TARGETS, n_steps=6, internal_batch_size=4)
    assert_close_to_reference(ours, ref)


@pytest.mark.parametrize("model_name", ["resnet18", "small_cnn"])
def test_noise_tunnel_zero_noise_equals_captum_base_method(model_name: str) -> None:
    model, x = build(model_name)
    ours = cg.NoiseTunnel(cg.IntegratedGradients(model)).attribute(
        x, target=TARGETS, stdevs=0.0, n_samples=3, n_steps=4, generator=torch.Generator().manual_seed(0)
    )
    ref = ca.IntegratedGradients(model).attribute(x, target=TARGETS, n_steps=4)
    assert_close_to_reference(ours, ref)
