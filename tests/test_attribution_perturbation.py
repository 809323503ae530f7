"""Perturbation methods: Captum 0.9 reference equality, hand-computed cases, invariants,
batching, reproducibility and bad inputs.

Reference tolerance: ``max |ours - captum| <= 1e-4 * max |captum|``. These methods are
differences of model scores; ours runs the perturbed copies in large batches, Captum one
perturbation at a time, so the convolutions sum in different orders and each score
carries a float32 rounding of ~1e-6 of its size, which a difference of two scores may
amplify by the ratio score / difference (up to ~10 on these random-init models).
"""

from __future__ import annotations

import functools
import itertools
import math

import captum.attr as ca
import pytest
import torch
import torchvision
from captum._utils.models.linear_model import SkLearnLasso, SkLearnLinearRegression
from helpers import ModelSnapshot, tiny_cnn
from torch import nn

import cleargrad as cg
from cleargrad.attribution import (
    RISE,
    FeatureAblation,
    KernelShap,
    Lime,
    Occlusion,
    ShapleyValueSampling,
    grid_mask,
    rise_masks,
    slic_mask,
)
from cleargrad.models import SmallCNN

RTOL = 1e-4
TARGETS = [3, 7]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.cache
def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if name == "resnet18":
        model, x = torchvision.models.resnet18(weights=None, num_classes=10), torch.randn(2, 3, 32, 32)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
                    m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    else:
        model, x = SmallCNN(width=8), 3 * torch.randn(2, 1, 28, 28)
    return model.eval(), x


def assert_close(ours: torch.Tensor, ref: torch.Tensor, rtol: float = RTOL) -> None:
    assert ours.shape == ref.shape
    scale = ref.abs().max().item()
    assert scale > 0, "degenerate reference (all zero): the comparison would prove nothing"
    err = (ours - ref.to(ours.dtype)).abs().max().item()
    assert err <= rtol * scale, f"max abs diff {err:.3e} > {rtol:g} x max|ref| ({scale:.3e})"


def _fixed(samples: torch.Tensor):
    """A Captum perturb_func (generator function) yielding the given interpretable samples."""

    def gen(_inputs, **_kw):
        for z in samples:
            yield z.view(1, -1)

    return gen


MODELS = ["small_cnn", "resnet18"]


# ----------------------------------------------------------------- reference equality
@pytest.mark.parametrize("model_name", MODELS)
def test_occlusion_equals_captum(model_name: str) -> None:
    model, x = build(model_name)
    c = x.shape[1]
    for window, strides in (((c, 5, 5), (c, 3, 3)), ((1, 6, 4), (1, 4, 2))):
        ours = Occlusion(model).attribute(x, TARGETS, sliding_window_shapes=window, strides=strides, baselines=0.1)
        ref = ca.Occlusion(model).attribute(
            x, sliding_window_shapes=window, strides=strides, baselines=0.1, target=TARGETS
        )
        assert_close(ours, ref)


@pytest.mark.parametrize("model_name", MODELS)
def test_feature_ablation_equals_captum(model_name: str) -> None:
    model, x = build(model_name)
    mask = grid_mask(x.shape, 4)
    base = torch.randn(1, *x.shape[1:])
    ours = FeatureAblation(model).attribute(x, TARGETS, feature_mask=mask, baselines=base)
    ref = ca.FeatureAblation(model).attribute(x, feature_mask=mask, baselines=base, target=TARGETS)
    assert_close(ours, ref)


def test_feature_ablation_per_channel_mask_equals_captum() -> None:
    model, x = build("resnet18")
    mask = (grid_mask(x.shape, 2) * 3 + torch.arange(3).view(1, 3, 1, 1))  # 12 features, per channel
    ours = FeatureAblation(model).attribute(x, TARGETS, feature_mask=mask)
    ref = ca.FeatureAblation(model).attribute(x, feature_mask=mask, target=TARGETS)
    assert_close(ours, ref)


@pytest.mark.parametrize("model_name", MODELS)
def test_shapley_value_sampling_equals_captum_with_the_same_permutations(model_name: str) -> None:
    model, x = build(model_name)
    mask = grid_mask(x.shape, 3)
    perms = torch.stack([torch.randperm(9, generator=torch.Generator().manual_seed(s)) for s in range(3)])
    ours = ShapleyValueSampling(model).attribute(x, TARGETS, feature_mask=mask, permutations=perms)
    ref_method = ca.ShapleyValueSampling(model)
    ref_method.permutation_generator = lambda nf, ns: iter(perms.tolist())
    ref = ref_method.attribute(x, feature_mask=mask, target=TARGETS, n_samples=3)
    assert_close(ours, ref)


@pytest.mark.parametrize("model_name", MODELS)
def test_lime_equals_captum_with_the_same_samples(model_name: str) -> None:
    model, x = build(model_name)
    mask = grid_mask(x.shape, 4)
    samples = (torch.rand(40, 16, generator=torch.Generator().manual_seed(1)) < 0.5).long()
    ours = Lime(model).attribute(x, TARGETS, feature_mask=mask, samples=samples, interpretable_model="linear")
    ref = ca.Lime(model, interpretable_model=SkLearnLinearRegression(), perturb_func=_fixed(samples)).attribute(
        x, target=TARGETS, feature_mask=mask, n_samples=40
    )
    assert_close(ours, ref)
    # the default surrogate: a Lasso; sklearn run to convergence (its default tol=1e-4
    # stops earlier, ~1e-5 relative away from the optimum on this case)
    alpha = 1e-3
    ours = Lime(model).attribute(x, TARGETS, feature_mask=mask, samples=samples, alpha=alpha)
    lasso = SkLearnLasso(alpha=alpha, tol=1e-12, max_iter=1_000_000)
    ref = ca.Lime(model, interpretable_model=lasso, perturb_func=_fixed(samples)).attribute(
        x, target=TARGETS, feature_mask=mask, n_samples=40
    )
    assert_close(ours, ref)
    assert (ref == 0).any() and (ref != 0).any(), "the Lasso must be active for the comparison to mean something"


@pytest.mark.parametrize("model_name", MODELS)
def test_kernel_shap_equals_captum_with_the_same_samples(model_name: str) -> None:
    model, x = build(model_name)
    mask = grid_mask(x.shape, 4)
    drawn = (torch.rand(38, 16, generator=torch.Generator().manual_seed(2)) < 0.5).float()
    samples = torch.cat([torch.ones(1, 16), torch.zeros(1, 16), drawn]).long()
    ours = KernelShap(model).attribute(x, TARGETS, feature_mask=mask, samples=samples)
    ref_method = ca.KernelShap(model)
    ref_method.perturb_func = _fixed(samples)
    ref = ref_method.attribute(x, target=TARGETS, feature_mask=mask, n_samples=40)
    assert_close(ours, ref)


def test_kernel_shap_draws_follow_captums_distribution() -> None:
    """Our coalition sizes follow the kernel distribution Captum samples from (chi-square)."""
    nf, n = 6, 6000
    z = KernelShap._draw(nf, n + 2, torch.Generator().manual_seed(0))
    assert torch.equal(z[0], torch.ones(nf)) and torch.equal(z[1], torch.zeros(nf))
    sizes = z[2:].sum(1).long()
    k = torch.arange(1, nf, dtype=torch.float64)
    probs = (nf - 1) / (k * (nf - k))
    expected = n * probs / probs.sum()
    observed = torch.bincount(sizes, minlength=nf)[1:nf].double()
    chi2 = (((observed - expected) ** 2) / expected).sum().item()
    assert observed.sum() == n
    assert chi2 < 20.5, chi2  # 4 degrees of freedom: P(chi2 > 20.5) < 1e-3


# ------------------------------------------------------------------ hand-computed cases
class TwoLayer(nn.Module):
    """``f(x) = v . relu(W x + c)`` on the 3 elements of a (1, 1, 1, 3) input, 2 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(3, 4)
        self.l2 = nn.Linear(4, 2)
        with torch.no_grad():
            self.l1.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0], [-1.0, 0.5, 2.0], [2.0, 1.0, 1.0]]))
            self.l1.bias.copy_(torch.tensor([0.1, -0.2, 0.3, -1.0]))
            self.l2.weight.copy_(torch.tensor([[1.0, -1.0, 2.0, 0.5], [0.2, 0.3, -0.4, 1.0]]))
            self.l2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.relu(self.l1(x.flatten(1))))


def _f(net: nn.Module, vals: list[float], cls: int = 0) -> float:
    with torch.no_grad():
        return net(torch.tensor(vals).view(1, 1, 1, 3))[0, cls].item()


def test_occlusion_hand_computed_on_a_two_layer_net() -> None:
    net = TwoLayer().eval()
    x = [1.0, 2.0, -1.0]
    fx = _f(net, x)
    d0 = fx - _f(net, [0.0, 0.0, -1.0])  # window [0, 1]
    d1 = fx - _f(net, [1.0, 0.0, 0.0])  # window [1, 2]
    expected = torch.tensor([d0, (d0 + d1) / 2, d1])
    out = Occlusion(net).attribute(torch.tensor(x).view(1, 1, 1, 3), 0, sliding_window_shapes=(1, 1, 2), strides=1)
    assert torch.allclose(out.flatten(), expected, atol=1e-6)
    assert expected.abs().min() > 0.1  # a non-trivial case


def _exact_shapley(net: nn.Module, x: list[float], b: list[float]) -> torch.Tensor:
    """Shapley values of the 3-player game v(S) = f(x on S, b elsewhere), by enumeration."""
    phi = torch.zeros(3, dtype=torch.float64)
    perms = list(itertools.permutations(range(3)))
    for perm in perms:
        cur = list(b)
        prev = _f(net, cur)
        for j in perm:
            cur[j] = x[j]
            now = _f(net, cur)
            phi[j] += now - prev
            prev = now
    return phi / len(perms)


def test_kernel_shap_with_every_coalition_gives_the_exact_shapley_values() -> None:
    net = TwoLayer().eval()
    x, b = [1.0, 2.0, -1.0], [0.2, -0.3, 0.5]
    phi = _exact_shapley(net, x, b)
    xt, bt = torch.tensor(x).view(1, 1, 1, 3), torch.tensor(b).view(1, 1, 1, 3)
    mask = torch.arange(3).view(1, 1, 1, 3)
    out = KernelShap(net).attribute(xt, 0, feature_mask=mask, baselines=bt, exact=True)
    assert torch.allclose(out.flatten().double(), phi, atol=1e-5), (out.flatten(), phi)
    # the game is not additive: a plain Feature Ablation differs from it
    fa = FeatureAblation(net).attribute(xt, 0, feature_mask=mask, baselines=bt)
    assert (fa.flatten().double() - phi).abs().max() > 1e-2
    # Shapley Value Sampling over all 6 orders is exact too
    perms = torch.tensor(list(itertools.permutations(range(3))))
    svs = ShapleyValueSampling(net).attribute(xt, 0, feature_mask=mask, baselines=bt, permutations=perms)
    assert torch.allclose(svs.flatten().double(), phi, atol=1e-5)


# -------------------------------------------------------------------------- invariants
def test_occlusion_with_the_whole_image_as_window_is_the_score_drop() -> None:
    model, x = build("small_cnn")
    out = Occlusion(model).attribute(x, TARGETS, sliding_window_shapes=tuple(x.shape[1:]), baselines=0.5)
    with torch.no_grad():
        drop = model(x)[[0, 1], TARGETS] - model(torch.full_like(x, 0.5))[[0, 1], TARGETS]
    assert torch.allclose(out, drop.view(2, 1, 1, 1).expand_as(x), atol=1e-5)


def test_kernel_shap_is_efficient() -> None:
    model, x = build("small_cnn")
    mask = grid_mask(x.shape, 3)
    base = torch.full_like(x, 0.2)
    out = KernelShap(model).attribute(x, TARGETS, feature_mask=mask, baselines=base, n_samples=30,
                                      generator=torch.Generator().manual_seed(0))
    per_feature = torch.stack([out[:, 0][mask[0, 0].expand(2, -1, -1) == f].view(2, -1)[:, 0] for f in range(9)], 1)
    with torch.no_grad():
        gap = model(x)[[0, 1], TARGETS] - model(base)[[0, 1], TARGETS]
    assert torch.allclose(per_feature.sum(1), gap, atol=1e-5 * gap.abs().max().item() + 1e-6)


def test_feature_ablation_and_shapley_of_a_linear_model_are_w_times_x_minus_b() -> None:
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).eval()
    x, b = torch.randn(2, 2, 6, 6), torch.randn(1, 2, 6, 6)
    mask = grid_mask(x.shape, 3)
    w = lin[1].weight.detach()[[1, 2]].view(2, 2, 6, 6)
    contrib = w * (x - b)
    expected = torch.zeros_like(x)
    for f in range(9):
        sel = (mask == f).expand_as(x)
        per = (contrib * sel).flatten(1).sum(1)
        expected += per.view(2, 1, 1, 1) * sel
    fa = FeatureAblation(lin).attribute(x, [1, 2], feature_mask=mask, baselines=b)
    assert torch.allclose(fa, expected, atol=1e-5)
    svs = ShapleyValueSampling(lin).attribute(x, [1, 2], feature_mask=mask, baselines=b, n_samples=2,
                                              generator=torch.Generator().manual_seed(0))
    assert torch.allclose(svs, expected, atol=1e-5)
    ks = KernelShap(lin).attribute(x, [1, 2], feature_mask=mask, baselines=b, n_samples=40,
                                   generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ks, expected, atol=1e-4)


def test_rise_equals_a_direct_loop_with_the_same_masks() -> None:
    model, x = build("small_cnn")
    masks = rise_masks(12, x.shape[-2:], cells=4, p=0.3, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (12, 1, 28, 28) and masks.min() >= 0 and masks.max() <= 1
    out = RISE(model).attribute(x, TARGETS, masks=masks, p=0.3, internal_batch_size=5)
    expected = torch.zeros(2, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        for i in range(2):
            for m in masks:
                prob = torch.softmax(model(x[i : i + 1] * m), dim=1)[0, TARGETS[i]].item()
                expected[i] += prob * m.double()
    expected /= 12 * 0.3
    assert torch.allclose(out.double(), expected, rtol=1e-5, atol=1e-7)


def test_rise_masks_have_mean_p_so_a_constant_score_gives_a_constant_map() -> None:
    """E[M(e)] = p is what the 1/(N p) normalisation rests on. Mask values lie in [0, 1]
    (variance <= 1/4): the mean of 4000 masks is within 5 sigma = 0.04 of p at every pixel
    with probability > 1 - 784 * 6e-7."""
    masks = rise_masks(4000, (28, 28), cells=5, p=0.4, generator=torch.Generator().manual_seed(0))
    assert (masks.mean(0) - 0.4).abs().max() < 0.04

    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[2.0, -1.0]]).expand(x.shape[0], 2) + 0 * self.w

    out = RISE(Constant().eval()).attribute(torch.randn(1, 1, 28, 28), 0, masks=masks, p=0.4, scores="logit")
    assert (out - 2.0).abs().max() < 0.2


# ------------------------------------------------- batching, chunking, reproducibility
SAMPLED = {
    "shapley": (ShapleyValueSampling, {"n_samples": 2, "feature_mask": grid_mask((12, 12), 3)}),
    "lime": (Lime, {"n_samples": 12, "feature_mask": grid_mask((12, 12), 3), "interpretable_model": "linear"}),
    "kernel_shap": (KernelShap, {"n_samples": 14, "feature_mask": grid_mask((12, 12), 3)}),
    "rise": (RISE, {"n_masks": 10, "cells": 3}),
}


@pytest.mark.parametrize("name", list(SAMPLED))
def test_batch_equals_images_alone_and_chunking_does_not_matter(name: str) -> None:
    cls, kw = SAMPLED[name]
    model = tiny_cnn()
    x = torch.randn(3, 1, 12, 12)
    method = cls(model)
    batch = method.attribute(x, [0, 1, 2], generator=torch.Generator().manual_seed(5), **kw)
    g = torch.Generator().manual_seed(5)
    alone = torch.cat([method.attribute(x[i : i + 1], i, generator=g, **kw) for i in range(3)])
    assert torch.allclose(batch, alone, atol=1e-5)
    chunked = method.attribute(x, [0, 1, 2], generator=torch.Generator().manual_seed(5), internal_batch_size=3, **kw)
    assert torch.allclose(batch, chunked, atol=1e-5)
    other = method.attribute(x, [0, 1, 2], generator=torch.Generator().manual_seed(6), **kw)
    assert not torch.allclose(batch, other, atol=1e-5)


@pytest.mark.parametrize("cls,kw", [(Occlusion, {"sliding_window_shapes": (3, 3)}), (FeatureAblation, {})])
def test_deterministic_methods_batch_equals_images_alone(cls, kw) -> None:
    model = tiny_cnn()
    x = torch.randn(3, 1, 12, 12)
    batch = cls(model).attribute(x, [0, 1, 2], internal_batch_size=7, **kw)
    alone = torch.cat([cls(model).attribute(x[i : i + 1], i, **kw) for i in range(3)])
    assert torch.allclose(batch, alone, atol=1e-5)


def test_slic_mask_segments_each_image() -> None:
    x = torch.zeros(2, 3, 16, 16)
    x[0, :, :, 8:] = 1.0  # two flat halves
    x[1, :, 8:, :] = 1.0
    m = slic_mask(x, n_segments=4, compactness=0.1)
    assert m.shape == (2, 1, 16, 16) and m.dtype == torch.long and m.min() == 0
    # no superpixel crosses the edge between the two flat halves
    halves = [(m[0, 0, :, :8], m[0, 0, :, 8:]), (m[1, 0, :8], m[1, 0, 8:])]
    for a, b in halves:
        assert not set(a.unique().tolist()) & set(b.unique().tolist())
    model = tiny_cnn()
    out = FeatureAblation(model).attribute(torch.randn(2, 1, 16, 16), [0, 1], feature_mask=m)
    assert out.shape == (2, 1, 16, 16)


# ----------------------------------------------------------------------- bad inputs
BAD = [
    ("mask shape", FeatureAblation, {"feature_mask": torch.zeros(5, 5, dtype=torch.long)}, cg.InputError),
    ("float mask", FeatureAblation, {"feature_mask": torch.zeros(12, 12)}, cg.InputError),
    ("mask batch", Lime, {"feature_mask": torch.zeros(3, 1, 12, 12, dtype=torch.long)}, cg.InputError),
    ("window too big", Occlusion, {"sliding_window_shapes": (13, 3)}, cg.ConfigError),
    ("stride > window", Occlusion, {"sliding_window_shapes": (2, 2), "strides": 3}, cg.ConfigError),
    ("window rank", Occlusion, {"sliding_window_shapes": (1, 1, 2, 2)}, cg.ConfigError),
    ("not permutations", ShapleyValueSampling,
     {"feature_mask": grid_mask((12, 12), 2), "permutations": torch.tensor([[0, 0, 1, 2]])}, cg.InputError),
    ("permutation width", ShapleyValueSampling,
     {"feature_mask": grid_mask((12, 12), 2), "permutations": torch.tensor([[0, 1, 2]])}, cg.InputError),
    ("non-binary samples", KernelShap,
     {"feature_mask": grid_mask((12, 12), 2), "samples": torch.full((4, 4), 2)}, cg.InputError),
    ("sample weights shape", KernelShap,
     {"feature_mask": grid_mask((12, 12), 2), "samples": torch.eye(4), "sample_weights": torch.ones(3)},
     cg.InputError),
    ("exact too many", KernelShap, {"exact": True}, cg.ConfigError),
    ("one feature", KernelShap, {"feature_mask": torch.zeros(12, 12, dtype=torch.long)}, cg.ConfigError),
    ("lime model", Lime, {"interpretable_model": "tree"}, cg.ConfigError),
    ("rise masks", RISE, {"masks": torch.ones(3, 1, 5, 5)}, cg.InputError),
    ("rise p", RISE, {"p": 0.0}, cg.ConfigError),
    ("n_samples", ShapleyValueSampling, {"n_samples": 0}, cg.ConfigError),
    ("chunk", FeatureAblation, {"internal_batch_size": 0}, cg.ConfigError),
    ("baseline shape", FeatureAblation, {"baselines": torch.zeros(3, 3)}, cg.InputError),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_inputs_raise_specific_errors(case) -> None:
    _, cls, kw, err = case
    model = tiny_cnn()
    snap = ModelSnapshot.take(model)
    with pytest.raises(err):
        cls(model).attribute(torch.randn(2, 1, 12, 12), [0, 1], **kw)
    snap.assert_same(model)


# --------------------------------------------------------- model untouched on error
@pytest.mark.parametrize("cls,kw", [
    (Occlusion, {"sliding_window_shapes": (4, 4), "strides": 4}),
    (FeatureAblation, {}),
    (ShapleyValueSampling, {"n_samples": 1}),
    (Lime, {"n_samples": 8}),
    (KernelShap, {"n_samples": 8}),
    (RISE, {"n_masks": 8}),
])
def test_model_untouched_when_a_forward_hook_raises_mid_call(cls, kw) -> None:
    """A hook that fails on the third forward (inside the perturbed passes, under inference
    mode) leaves the model as it was; the call can be repeated once the hook is gone."""
    model = tiny_cnn()
    calls = {"n": 0}

    def hook(_m, _i, _o):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("hook failed")

    handle = model.classifier.register_forward_hook(hook) if hasattr(model, "classifier") else None
    assert handle is not None
    snap = ModelSnapshot.take(model)
    x = torch.randn(2, 1, 12, 12)
    with pytest.raises(RuntimeError, match="hook failed"):
        cls(model).attribute(x, [0, 1], internal_batch_size=2, generator=torch.Generator().manual_seed(0), **kw) \
            if "generator" in cls(model).option_names() else \
            cls(model).attribute(x, [0, 1], internal_batch_size=2, **kw)
    assert calls["n"] == 3
    snap.assert_same(model)
    handle.remove()
    out = cls(model).attribute(x, [0, 1], **kw)
    assert torch.isfinite(out).all() and math.isfinite(out.abs().max().item())


# ------------------------------------------------------------ Guided Grad-CAM, random
@pytest.mark.parametrize("model_name,layer", [("resnet18", "layer3"), ("resnet18", "layer2"), ("small_cnn", None)])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_guided_gradcam_equals_captum(model_name: str, layer: str | None, mode: str) -> None:
    model, x = build(model_name)
    layer = layer or cg.GradCAM(model).resolve_layers(x)[0]
    module = model.get_submodule(layer) if isinstance(layer, str) else layer
    ours = cg.GuidedGradCAM(model, layer).attribute(x, TARGETS, interpolate_mode=mode)
    ref = ca.GuidedGradCam(model, module).attribute(x, TARGETS, interpolate_mode=mode)
    assert_close(ours, ref, rtol=1e-5)
    assert ours.shape == x.shape


def test_guided_gradcam_by_name_and_target_none() -> None:
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    inst, _ = cg.make_method(model, "guided_gradcam")
    out = inst.attribute(x)
    with torch.no_grad():
        t = model(x).argmax(1)
    assert torch.equal(out, inst.attribute(x, t))
    with pytest.raises(cg.ConfigError):
        inst.attribute(x, 0, interpolate_mode="linear")


def test_random_control_is_iid_reproducible_and_per_image() -> None:
    model = tiny_cnn()
    x = torch.randn(3, 1, 12, 12)
    r = cg.RandomAttribution(model)
    a = r.attribute(x, generator=torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.min() >= 0 and a.max() < 1
    assert torch.equal(a, r.attribute(x, generator=torch.Generator().manual_seed(0)))
    g = torch.Generator().manual_seed(0)
    alone = torch.cat([r.attribute(x[i : i + 1], generator=g) for i in range(3)])
    assert torch.equal(a, alone)
    assert not torch.equal(a[0], a[1])
    big = r.attribute(torch.zeros(1, 1, 100, 100), distribution="normal", generator=torch.Generator().manual_seed(1))
    assert abs(big.mean().item()) < 0.05 and abs(big.std().item() - 1) < 0.05  # 5 sigma at n = 1e4
    with pytest.raises(cg.TargetError):
        r.attribute(x, [0, 1, 99])
    with pytest.raises(cg.ConfigError):
        r.attribute(x, distribution="beta")


def test_lasso_solver_equals_sklearn_weighted_lasso() -> None:
    from sklearn.linear_model import Lasso

    from cleargrad.attribution.perturbation import _lasso

    g = torch.Generator().manual_seed(0)
    z = (torch.rand(2, 60, 10, generator=g) < 0.5).double()
    y = z @ torch.randn(10, generator=g).double() + 0.3 * torch.randn(2, 60, generator=g).double()
    w = torch.rand(2, 60, generator=g).double()
    ours = _lasso(z, y, w, 0.2)
    for i in range(2):
        ref = Lasso(alpha=0.2, tol=1e-12, max_iter=1_000_000)
        ref.fit(z[i].numpy(), y[i].numpy(), sample_weight=w[i].numpy())
        ref_coef = torch.from_numpy(ref.coef_)
        assert (ref_coef == 0).any() and (ref_coef != 0).any()
        assert torch.allclose(ours[i], ref_coef, atol=1e-7 * ref_coef.abs().max().item())
