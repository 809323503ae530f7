"""Expected Grad-CAM (spec § 5.2, § 5.4) and the internal-saturation diagnostic (§ 5.3)."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_cnn
from torch import nn

import cleargrad as cg


def _gap_linear() -> tuple[nn.Module, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return tiny_cnn(seed=21), torch.randn(2, 1, 12, 12, generator=g)


def _scores(model: nn.Module, x: torch.Tensor, target: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(x)[range(x.shape[0]), target]


def test_reference_equal_to_input_without_noise_gives_zero_map() -> None:
    model = tiny_cnn(seed=22)
    x = torch.randn(1, 1, 12, 12)
    egc = cg.ExpectedGradCAM(model)
    out = egc.attribute(x, target=1, references=x.clone(), stdevs=0.0, n_samples=8, normalize=True)
    assert torch.isfinite(out).all() and torch.equal(out, torch.zeros_like(out))
    ghat = egc.layer_gradient(x, target=1, references=x.clone(), stdevs=0.0, n_samples=8)
    assert torch.equal(ghat, torch.zeros_like(ghat))


@pytest.mark.parametrize("references", ["zeros", "image"])
def test_completeness_on_gap_linear(references: str) -> None:
    model, x = _gap_linear()
    target = [1, 3]
    ref = torch.zeros(1, 1, 12, 12) if references == "zeros" else torch.randn(1, 1, 12, 12)
    egc = cg.ExpectedGradCAM(model, layer="features")
    gen = torch.Generator().manual_seed(0)
    ghat = egc.layer_gradient(x, target=target, references=references if references == "zeros" else ref,
                              stdevs=0.0, n_samples=7, generator=gen)
    # sum(G^) = y_c(x) - y_c(x')  (exact per draw: y is linear in A)
    expected = _scores(model, x, target) - _scores(model, ref.expand_as(x), target)
    torch.testing.assert_close(ghat.sum(dim=(1, 2, 3)), expected, rtol=1e-5, atol=1e-5)
    # w_k = (W_ck / Z) (mean A^k(x) - mean A^k(x'))
    with torch.no_grad():
        a, a0 = model.features(x), model.features(ref.expand_as(x))
    z = a.shape[-1] * a.shape[-2]
    w = model.classifier.weight[target].detach() / z * (a.mean(dim=(2, 3)) - a0.mean(dim=(2, 3)))
    raw = egc.attribute(x, target=target, references=ref, stdevs=0.0, n_samples=5, upsample=False, relu=False)
    torch.testing.assert_close(raw, (w[:, :, None, None] * a).sum(1, keepdim=True), rtol=1e-4, atol=1e-6)
    # "xgrad" weighting carries completeness into the map: its total is the sum of G^ over
    # the channels active at x (a channel that is all zero at x cannot show anything)
    xg = egc.attribute(x, target=target, references=ref, stdevs=0.0, n_samples=5, weighting="xgrad",
                       upsample=False, relu=False)
    active = (a.sum(dim=(2, 3)) != 0)[:, :, None, None]
    torch.testing.assert_close(xg.sum(dim=(1, 2, 3)), (ghat * active).sum(dim=(1, 2, 3)), rtol=1e-4, atol=1e-6)


def test_without_delta_weights_equal_gradcam_on_gap_linear() -> None:
    model, x = _gap_linear()
    ours = cg.ExpectedGradCAM(model).attribute(x, target=[0, 4], multiply_by_delta=False, n_samples=6,
                                               generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours, cg.GradCAM(model).attribute(x, target=[0, 4]), rtol=1e-4, atol=1e-6)


def _layer_ig(model: nn.Module, layer: nn.Module, x: torch.Tensor, base: torch.Tensor, target: int) -> torch.Tensor:
    """Literal 512-step midpoint Riemann layer IG along the input-space straight path:
    ``(A(x) - A(x')) * mean_m dy_c/dA(x' + t_m (x - x'))``.

    (Captum's LayerIntegratedGradients interpolates in the layer's space instead, a
    different quantity when the layer is not affine in the input.)
    """
    store: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: object, o: torch.Tensor) -> torch.Tensor:
        o = o.detach().requires_grad_(True)
        store.append(o)
        return o.clone()

    h = layer.register_forward_hook(hook)
    try:
        t = (torch.arange(512, dtype=x.dtype) + 0.5) / 512
        out = model(base + t.view(-1, 1, 1, 1) * (x - base))  # the 512 path points as one batch
        (g,) = torch.autograd.grad(out[:, target].sum(), store[-1])
        total = g.sum(dim=0, keepdim=True)
        with torch.no_grad():
            model(x)
            ax = store[-1].detach()
            model(base)
            ab = store[-1].detach()
    finally:
        h.remove()
    return (ax - ab) * total / 512


def test_converges_to_layer_integrated_gradients() -> None:
    model = tiny_cnn(seed=23)
    layer = model.features[1]  # a nonlinear part of the network follows it
    x = torch.randn(1, 1, 8, 8)
    base = torch.randn(1, 1, 8, 8) * 0.5
    ig = _layer_ig(model, layer, x, base, target=2)
    egc = cg.ExpectedGradCAM(model, layer="features.1")
    # grid t: the midpoint Riemann sum itself
    grid = egc.layer_gradient(x, target=2, references=base, stdevs=0.0, n_samples=512, t_sampling="grid")
    torch.testing.assert_close(grid, ig, rtol=1e-4, atol=1e-6)
    # random t: Monte Carlo, within 2 % at S = 4096; much worse at S = 16
    def err(s: int) -> float:
        g = egc.layer_gradient(x, target=2, references=base, stdevs=0.0, n_samples=s,
                               generator=torch.Generator().manual_seed(5))
        return float((g - ig).norm() / ig.norm())

    assert err(4096) < 0.02
    assert err(16) > err(4096)


def test_batch_equals_one_by_one_deterministic_setting() -> None:
    model = tiny_cnn(seed=24)
    x = torch.randn(3, 1, 12, 12)
    ref = torch.randn(1, 1, 12, 12)
    egc = cg.ExpectedGradCAM(model, layer="features.2")
    opts = dict(references=ref, stdevs=0.0, t_sampling="grid", n_samples=6)
    batch = egc.attribute(x, target=[0, 1, 2], **opts)
    single = torch.cat([egc.attribute(x[i : i + 1], target=i, **opts) for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-7)


def test_generator_reproducibility_and_chunk_independence() -> None:
    model = tiny_cnn(seed=25)
    x = torch.randn(2, 1, 12, 12)
    refs = torch.randn(5, 1, 12, 12)
    egc = cg.ExpectedGradCAM(model, layer="features.2")

    def run(seed: int, **kw) -> torch.Tensor:  # noqa: ANN003
        return egc.attribute(x, target=[3, 4], references=refs, n_samples=10,
                             generator=torch.Generator().manual_seed(seed), **kw)

    a = run(0)
    torch.testing.assert_close(a, run(0))
    torch.testing.assert_close(a, run(0, internal_batch_size=3), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(a, run(1))


def test_noise_smoothing_is_used_with_default_scale() -> None:
    model = tiny_cnn(seed=26)
    x = torch.randn(2, 1, 12, 12)
    egc = cg.ExpectedGradCAM(model, layer="features.2")
    gen = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    kw = dict(target=[0, 1], n_samples=8, relu=False, upsample=False)
    clean = egc.attribute(x, stdevs=0.0, generator=gen(), **kw)
    smooth = egc.attribute(x, generator=gen(), **kw)  # sigma = 0.15 (max - min) of each image
    assert not torch.allclose(clean, smooth)
    # the default equals the explicit per-image value (one image at a time, so one sigma each)
    for i in range(2):
        sigma = 0.15 * float(x[i].max() - x[i].min())
        one = dict(kw, target=kw["target"][i])
        torch.testing.assert_close(
            egc.attribute(x[i : i + 1], generator=gen(), **one),
            egc.attribute(x[i : i + 1], stdevs=sigma, generator=gen(), **one),
        )


def test_blur_references_are_each_images_own_blur() -> None:
    # GAP-linear, no noise: sum(G^) = y_c(x) - y_c(blur(x)) per image, with blur(x) a
    # Gaussian of std side/8 (1.5 px at 12 px, radius 3), reflect padding, built here in 2-D
    model, x = _gap_linear()
    target = [2, 0]
    ax = torch.arange(-3, 4, dtype=x.dtype)
    k1 = torch.exp(-0.5 * (ax / 1.5) ** 2)
    k2 = torch.outer(k1, k1) / k1.sum() ** 2
    blurred = nn.functional.conv2d(nn.functional.pad(x, (3, 3, 3, 3), mode="reflect"), k2.view(1, 1, 7, 7))
    ghat = cg.ExpectedGradCAM(model, layer="features").layer_gradient(
        x, target=target, references="blur", stdevs=0.0, n_samples=6, generator=torch.Generator().manual_seed(0))
    expected = _scores(model, x, target) - _scores(model, blurred, target)
    torch.testing.assert_close(ghat.sum(dim=(1, 2, 3)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("references", ["noise", "uniform", 0.5, "zeros", "blur"])
@pytest.mark.parametrize("weighting", ["gradcam", "xgrad", "gradcam_pp"])
def test_named_references_and_weightings_run(references, weighting: str) -> None:  # noqa: ANN001
    model = tiny_cnn(seed=27)
    x = torch.randn(2, 1, 12, 12)
    out = cg.ExpectedGradCAM(model).attribute(x, target=[0, 1], references=references, weighting=weighting,
                                              n_samples=4, generator=torch.Generator().manual_seed(0),
                                              normalize=True)
    assert out.shape == (2, 1, 12, 12) and torch.isfinite(out).all()


def test_option_errors() -> None:
    model = tiny_cnn(seed=28)
    x = torch.randn(2, 1, 12, 12)
    egc = cg.ExpectedGradCAM(model)
    with pytest.raises(cg.ConfigError):
        egc.attribute(x, references="imagenet")
    with pytest.raises(cg.InputError):
        egc.attribute(x, references=torch.zeros(3, 3, 12, 12))
    with pytest.raises(cg.ConfigError):
        egc.attribute(x, n_samples=0)
    with pytest.raises(cg.ConfigError):
        egc.attribute(x, weighting="max")
    with pytest.raises(cg.ConfigError):
        egc.attribute(x, t_sampling="sobol")
    with pytest.raises(cg.ConfigError):
        egc.attribute(x, stdevs=-1.0)


def test_internal_saturation_curve() -> None:
    model = tiny_cnn(seed=29)
    x = torch.randn(2, 1, 12, 12)
    t, cos = cg.internal_saturation(model, x, "features", baseline=0.0, n_points=11, batch_size=5)
    assert t.shape == (11,) and cos.shape == (2, 11)
    torch.testing.assert_close(cos[:, -1], torch.ones(2))
    # hand computation at t = 0.3
    with torch.no_grad():
        a1, a = model.features(0.3 * x).flatten(1), model.features(x).flatten(1)
    torch.testing.assert_close(cos[:, 3], torch.nn.functional.cosine_similarity(a1, a, dim=1), rtol=1e-5, atol=1e-6)
    assert (cos <= 1 + 1e-6).all()
