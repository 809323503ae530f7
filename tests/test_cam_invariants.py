"""CAM invariants (spec § 2, § 8), paper-convention oracles, options, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from helpers import ModelSnapshot, tiny_cnn
from torch import nn

import cleargrad as cg
from cleargrad.cam import normalize_maps
from cleargrad.cam.blank import BlankMapWarning


def _gap_linear() -> tuple[nn.Module, torch.Tensor]:
    """SmallCNN: ``y = W mean(A) + b`` with A = ``features`` output (post-ReLU, A >= 0)."""
    g = torch.Generator().manual_seed(0)
    return tiny_cnn(seed=1), torch.randn(3, 1, 12, 12, generator=g)


def _act_and_scores(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        a = model.features(x)
        return a, model.classifier(a.mean(dim=(2, 3)))


def _raw(cls: type, model: nn.Module, x: torch.Tensor, target, **kw) -> torch.Tensor:  # noqa: ANN001
    """The unrectified low-resolution map sum_k w_k A^k."""
    return cls(model, layer="features").attribute(x, target=target, upsample=False, relu=False, **kw)


TARGET = [0, 3, 4]


# --- GAP-linear closed forms --------------------------------------------------------
def test_gradcam_equals_cam_over_z_on_gap_linear() -> None:
    model, x = _gap_linear()
    cam = _raw(cg.CAM, model, x, TARGET)
    grad = _raw(cg.GradCAM, model, x, TARGET)
    z = cam.shape[-1] * cam.shape[-2]
    torch.testing.assert_close(grad * z, cam, rtol=1e-5, atol=1e-6)
    # hand-computed CAM: sum_k W_ck A^k
    a, _ = _act_and_scores(model, x)
    w = model.classifier.weight[TARGET]
    torch.testing.assert_close(cam, (w[:, :, None, None] * a).sum(1, keepdim=True), rtol=1e-5, atol=1e-6)
    # after ReLU, upsampling and normalisation the maps are identical
    n1 = cg.GradCAM(model).attribute(x, target=TARGET, normalize=True)
    n2 = cg.CAM(model).attribute(x, target=TARGET, normalize=True)
    torch.testing.assert_close(n1, n2, rtol=0, atol=1e-5)


def test_xgradcam_equals_gradcam_on_gap_linear_with_nonnegative_activations() -> None:
    model, x = _gap_linear()
    a, _ = _act_and_scores(model, x)
    assert (a >= 0).all()
    assert (a.sum(dim=(2, 3)) > 0).float().mean() > 0.5  # channels summing to 0 contribute 0 to both maps
    torch.testing.assert_close(_raw(cg.XGradCAM, model, x, TARGET), _raw(cg.GradCAM, model, x, TARGET), rtol=1e-4,
                               atol=1e-6)
    assert cg.AxiomCAM is cg.XGradCAM


def test_xgradcam_conservation_on_gap_linear() -> None:
    model, x = _gap_linear()
    _, y = _act_and_scores(model, x)
    total = _raw(cg.XGradCAM, model, x, TARGET).sum(dim=(1, 2, 3))
    expected = y[range(3), TARGET] - model.classifier.bias[TARGET].detach()
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-5)


def test_xgradcam_conservation_on_positively_homogeneous_head() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),  # target layer: index 1
        nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3, bias=False),
    ).eval()
    x = torch.randn(2, 1, 8, 8)
    total = cg.XGradCAM(model, layer="1").attribute(x, target=[0, 2], upsample=False, relu=False).sum(dim=(1, 2, 3))
    with torch.no_grad():
        y = model(x)[[0, 1], [0, 2]]
    torch.testing.assert_close(total, y, rtol=1e-4, atol=1e-5)  # Euler: y = sum A dy/dA


def test_gradcam_pp_closed_form_on_gap_linear() -> None:
    model, x = _gap_linear()
    a, _ = _act_and_scores(model, x)
    z = a.shape[-1] * a.shape[-2]
    g = model.classifier.weight[TARGET].detach() / z  # (N, K), constant over space
    s = a.sum(dim=(2, 3))
    alpha = g**2 / (2 * g**2 + s * g**3 + 1e-6)
    w = z * alpha * g.clamp_min(0)
    expected = (w[:, :, None, None] * a).sum(1, keepdim=True)
    torch.testing.assert_close(_raw(cg.GradCAMPlusPlus, model, x, TARGET), expected, rtol=1e-4, atol=1e-6)


def test_ablation_cam_closed_form_on_gap_linear() -> None:
    model, x = _gap_linear()
    a, y = _act_and_scores(model, x)
    yc = y[range(3), TARGET]
    w = model.classifier.weight[TARGET].detach() * a.mean(dim=(2, 3)) / yc[:, None]
    expected = (w[:, :, None, None] * a).sum(1, keepdim=True)
    for path in ("fx", "full"):
        torch.testing.assert_close(_raw(cg.AblationCAM, model, x, TARGET, path=path), expected, rtol=1e-4, atol=1e-5)


def test_layercam_and_hirescam_hand_computed() -> None:
    torch.manual_seed(0)
    model = tiny_cnn(seed=2)
    x = torch.randn(2, 1, 12, 12)
    layer = model.features[2]  # gradient varies over space here
    acts: list[torch.Tensor] = []
    h = layer.register_forward_hook(lambda m, i, o: acts.append(o))
    xi = x.clone()
    out = model(xi)
    h.remove()
    (g,) = torch.autograd.grad(out[[0, 1], [1, 2]].sum(), acts[0])
    a = acts[0].detach()
    lay = cg.LayerCAM(model, layer="features.2").attribute(x, target=[1, 2], upsample=False, relu=False)
    torch.testing.assert_close(lay, (g.clamp_min(0) * a).sum(1, keepdim=True), rtol=1e-5, atol=1e-6)
    hires = cg.HiResCAM(model, layer="features.2").attribute(x, target=[1, 2], upsample=False, relu=False)
    torch.testing.assert_close(hires, (g * a).sum(1, keepdim=True), rtol=1e-5, atol=1e-6)
    model.zero_grad(set_to_none=True)


# --- Score-CAM -------------------------------------------------------------------------
def _score_oracle(model, layer, x, target, mean, std) -> torch.Tensor:  # noqa: ANN001
    """Literal paper form: one masked image at a time, probability of the target."""
    acts: list[torch.Tensor] = []
    h = layer.register_forward_hook(lambda m, i, o: acts.append(o.detach().clone()))
    with torch.no_grad():
        model(x)
    h.remove()
    a = acts[0]
    m_, s_ = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    maps = []
    for n in range(x.shape[0]):
        w = []
        for k in range(a.shape[1]):
            up = F.interpolate(a[n : n + 1, k : k + 1], size=x.shape[-2:], mode="bilinear", align_corners=False)
            mask = (up - up.min()) / (up.max() - up.min() + 1e-8)
            pixel = x[n : n + 1] * s_ + m_
            with torch.no_grad():
                p = torch.softmax(model((pixel * mask - m_) / s_), dim=1)[0, target[n]]
            w.append(p)
        w = torch.stack(w)
        maps.append((w[:, None, None] * a[n]).sum(0, keepdim=True))
    return torch.stack(maps)


def test_score_cam_paper_form_matches_literal_oracle() -> None:
    model = tiny_cnn(seed=3)
    x = torch.randn(2, 1, 12, 12)
    mean, std = [0.3], [0.7]
    ours = cg.ScoreCAM(model, layer="features.2").attribute(
        x, target=[1, 4], upsample=False, relu=False, mean=mean, std=std, batch_size=5
    )
    expected = _score_oracle(model, model.features[2], x, [1, 4], mean, std)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_score_cam_constant_channel_no_nan_and_computed_once() -> None:
    model = tiny_cnn(seed=4)
    with torch.no_grad():  # channels 0 and 1 of the last block: constant 0 after ReLU
        model.features[3][0].weight[:2] = 0
        model.features[3][1].bias[:2] = -1.0
    x = torch.randn(3, 1, 12, 12)
    sizes: list[int] = []
    h = model.register_forward_pre_hook(lambda m, i: sizes.append(i[0].shape[0]))
    out = cg.ScoreCAM(model, layer="features").attribute(x, target=[0, 1, 2], normalize=True, batch_size=1000)
    h.remove()
    assert torch.isfinite(out).all()
    with torch.no_grad():
        flat = model.features(x).flatten(2)
    n_const = int((flat.amax(2) == flat.amin(2)).sum())
    assert n_const >= 6  # the two forced channels of each image (random ones may add more)
    # clean pass (3) + all non-constant (image, channel) pairs + ONE pass for every constant channel
    assert sizes == [3, 1, 3 * 16 - n_const]
    # and the weights it gives equal those of a literal per-channel computation
    ours = cg.ScoreCAM(model).attribute(x, target=[0, 1, 2], upsample=False, relu=False)
    torch.testing.assert_close(ours, _score_oracle(model, model.features, x, [0, 1, 2], [0.0], [1.0]),
                               rtol=1e-5, atol=1e-6)


def test_score_cam_options() -> None:
    model = tiny_cnn(seed=5)
    x = torch.randn(2, 1, 12, 12)
    cam = cg.ScoreCAM(model)
    base = cam.attribute(x, target=[0, 1], upsample=False, relu=False)
    # a baseline subtracts p_c(x_b) from every weight: map shifts by -p_c(x_b) * sum_k A^k
    with torch.no_grad():
        pb = torch.softmax(model(torch.zeros_like(x)), 1)[[0, 1], [0, 1]]
        a = model.features(x)
    shifted = cam.attribute(x, target=[0, 1], upsample=False, relu=False, baseline=0.0)
    torch.testing.assert_close(shifted, base - pb[:, None, None, None] * a.sum(1, keepdim=True), rtol=1e-5,
                               atol=1e-6)
    # chunking does not change the result
    torch.testing.assert_close(cam.attribute(x, target=[0, 1], batch_size=3), cam.attribute(x, target=[0, 1]))
    with pytest.raises(cg.ConfigError):
        cam.attribute(x, weights="nope")
    with pytest.raises(cg.ConfigError):
        cam.attribute(x, mask_space="rgb")


# --- Ablation-CAM paths ----------------------------------------------------------------
class _Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = tiny_cnn(seed=6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.body.features(x)
        if a.sum() > -1:  # always true, but not traceable
            a = a * 1.0
        return self.body.classifier(a.mean(dim=(2, 3)))


def test_ablation_fx_split_with_frontier_equals_full_passes() -> None:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    cam = cg.AblationCAM(model, layer="layer2.0.bn2")  # the residual branch around it is the frontier
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fx = cam.attribute(x, target=2, upsample=False, relu=False, path="fx")
    assert cam._splits[id(model.layer2[0].bn2)].head is not None
    full = cam.attribute(x, target=2, upsample=False, relu=False, path="full")
    torch.testing.assert_close(fx, full, rtol=1e-4, atol=1e-5)


def test_ablation_falls_back_to_full_passes_when_untraceable() -> None:
    model = _Untraceable().eval()
    x = torch.randn(2, 1, 12, 12)
    cam = cg.AblationCAM(model, layer="body.features")
    with pytest.warns(UserWarning, match="cannot be traced"):
        auto = cam.attribute(x, target=[0, 1])
    torch.testing.assert_close(auto, cam.attribute(x, target=[0, 1], path="full"))
    with pytest.raises(cg.ConfigError, match="cannot be traced"):
        cam.attribute(x, target=[0, 1], path="fx")


# --- Smooth Grad-CAM++, Integrated Grad-CAM ------------------------------------------
def test_smooth_gradcam_pp_sigma_zero_is_gradcam_pp() -> None:
    model = tiny_cnn(seed=7)
    x = torch.randn(2, 1, 12, 12)
    pp = cg.GradCAMPlusPlus(model, layer="features.2").attribute(x, target=[0, 1], upsample=False, relu=False)
    sm = cg.SmoothGradCAMPlusPlus(model, layer="features.2").attribute(
        x, target=[0, 1], upsample=False, relu=False, stdevs=0.0, n_samples=3
    )
    torch.testing.assert_close(sm, pp, rtol=1e-4, atol=1e-6)


def test_smooth_gradcam_pp_noise_matters_and_is_reproducible() -> None:
    model = tiny_cnn(seed=7)
    x = torch.randn(2, 1, 12, 12)
    cam = cg.SmoothGradCAMPlusPlus(model, layer="features.2")

    def run(seed: int, **kw) -> torch.Tensor:  # noqa: ANN003
        return cam.attribute(x, target=[0, 1], generator=torch.Generator().manual_seed(seed), **kw)

    torch.testing.assert_close(run(0), run(0))
    torch.testing.assert_close(run(0, internal_batch_size=3), run(0))
    assert not torch.allclose(run(0), run(1))
    assert not torch.allclose(run(0), cg.GradCAMPlusPlus(model, layer="features.2").attribute(x, target=[0, 1]))


def test_integrated_gradcam_degenerate_path_is_gradcam() -> None:
    model = tiny_cnn(seed=8)
    x = torch.randn(2, 1, 12, 12)
    grad = cg.GradCAM(model, layer="features.2").attribute(x, target=[2, 3])
    igc = cg.IntegratedGradCAM(model, layer="features.2").attribute(x, target=[2, 3], baselines=x, n_steps=1)
    torch.testing.assert_close(igc, grad, rtol=1e-5, atol=1e-7)


def test_integrated_gradcam_official_and_paper_forms() -> None:
    model = tiny_cnn(seed=8)
    x = torch.randn(2, 1, 12, 12)
    igc = cg.IntegratedGradCAM(model, layer="features.2")
    steps = 4
    # official: sum over m of ReLU(Grad-CAM map at x_m = (m/M) x), m = 0..M-1
    grad = cg.GradCAM(model, layer="features.2")
    expected = sum(grad.attribute(x * (m / steps), target=[2, 3], upsample=False) for m in range(steps))
    ours = igc.attribute(x, target=[2, 3], n_steps=steps, upsample=False, internal_batch_size=3)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-7)
    # paper form on a GAP-linear layer: w = W_c / Z, map = sum_k w_k (A(x) - A(0))
    model2, x2 = _gap_linear()
    a, _ = _act_and_scores(model2, x2)
    a0, _ = _act_and_scores(model2, torch.zeros_like(x2))
    w = model2.classifier.weight[TARGET].detach() / (a.shape[-1] * a.shape[-2])
    paper = _raw(cg.IntegratedGradCAM, model2, x2, TARGET, form="paper", n_steps=3)
    torch.testing.assert_close(paper, (w[:, :, None, None] * (a - a0)).sum(1, keepdim=True), rtol=1e-4, atol=1e-6)


# --- shared behaviour ------------------------------------------------------------------
ALL = [cg.GradCAM, cg.GradCAMPlusPlus, cg.XGradCAM, cg.LayerCAM, cg.HiResCAM, cg.ScoreCAM, cg.AblationCAM, cg.CAM,
       cg.SmoothGradCAMPlusPlus, cg.IntegratedGradCAM, cg.ExpectedGradCAM]
FAST = {cg.SmoothGradCAMPlusPlus: {"n_samples": 2, "stdevs": 0.0}, cg.IntegratedGradCAM: {"n_steps": 3},
        cg.ExpectedGradCAM: {"n_samples": 4, "stdevs": 0.0, "t_sampling": "grid"}}


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_batch_equals_one_by_one_and_shapes(cls: type) -> None:
    model = tiny_cnn(seed=9)
    x = torch.randn(3, 1, 12, 12)
    cam = cls(model)
    opts = FAST.get(cls, {})
    batch = cam.attribute(x, target=[0, 2, 4], normalize=True, **opts)
    assert batch.shape == (3, 1, 12, 12) and batch.dtype == x.dtype
    assert batch.min() >= 0 and batch.max() <= 1
    singles = torch.cat(
        [cam.attribute(x[i : i + 1], target=t, normalize=True, **opts) for i, t in enumerate([0, 2, 4])]
    )
    torch.testing.assert_close(batch, singles, rtol=1e-4, atol=1e-5)
    assert cam.attribute(x, target=[0, 2, 4], upsample=False, **opts).shape == (3, 1, 3, 3)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_float64_and_target_none_is_argmax(cls: type) -> None:
    model = tiny_cnn(seed=10).double()
    x = torch.randn(2, 1, 12, 12, dtype=torch.float64)
    opts = FAST.get(cls, {})
    out = cls(model).attribute(x, **opts)
    assert out.dtype == torch.float64
    with torch.no_grad():
        top = model(x).argmax(1)
    torch.testing.assert_close(out, cls(model).attribute(x, target=top, **opts))


def test_all_zero_map_stays_zero_when_normalised() -> None:
    model = tiny_cnn(seed=11)
    with torch.no_grad():
        model.classifier.weight.zero_()
    with pytest.warns(BlankMapWarning, match="constant or all zero for every image"):
        out = cg.GradCAM(model).attribute(torch.randn(2, 1, 12, 12), target=[0, 1], normalize=True)
    assert torch.equal(out, torch.zeros_like(out))
    z = normalize_maps(torch.zeros(2, 1, 4, 4))
    assert torch.equal(z, torch.zeros_like(z))


def test_output_selector_dict_and_tuple() -> None:
    base = tiny_cnn(seed=12)

    class DictOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = base

        def forward(self, x: torch.Tensor) -> dict:
            out = self.net(x)
            return {"aux": out.sum(), "logits": out}

    x = torch.randn(2, 1, 12, 12)
    plain = cg.GradCAM(base).attribute(x, target=[1, 2])
    wrapped = DictOut().eval()
    for cls in (cg.GradCAM, cg.ScoreCAM, cg.AblationCAM):
        ref = cls(base).attribute(x, target=[1, 2])
        torch.testing.assert_close(cls(wrapped, output="logits").attribute(x, target=[1, 2]), ref)
        torch.testing.assert_close(cls(wrapped, output=lambda o: o["logits"]).attribute(x, target=[1, 2]), ref)
    assert torch.allclose(plain, cg.GradCAM(wrapped, output="logits").attribute(x, target=[1, 2]))


def test_several_layers_give_one_map_each_and_fused_max() -> None:
    model = tiny_cnn(seed=13)
    x = torch.randn(2, 1, 12, 12)
    cam = cg.GradCAM(model, layer=["features.1", "features"])
    res = cam.attribute_layers(x, target=[0, 1])
    assert res.layers == ("features.1", "features")
    for name, m in zip(res.layers, res.maps):
        torch.testing.assert_close(m, cg.GradCAM(model, layer=name).attribute(x, target=[0, 1]))
    expected = torch.maximum(normalize_maps(res.maps[0]), normalize_maps(res.maps[1]))
    torch.testing.assert_close(res.fused, expected)
    torch.testing.assert_close(cam.attribute(x, target=[0, 1]), expected)
    low = cam.attribute_layers(x, target=[0, 1], upsample=False)
    assert [m.shape[-1] for m in low.maps] == [6, 3] and low.fused.shape[-1] == 6


def test_model_untouched_with_in_place_relu_after_layer() -> None:
    model = tiny_cnn(seed=14)
    snap = ModelSnapshot.take(model)
    x = torch.randn(2, 1, 12, 12)
    # features.3.0 is a conv followed by an in-place ReLU inside the block
    for cls in (cg.GradCAM, cg.ScoreCAM, cg.AblationCAM):
        out = cls(model, layer="features.3.0").attribute(x, target=[0, 1])
        assert torch.isfinite(out).all()
    snap.assert_same(model)


# --- errors ----------------------------------------------------------------------------
class _MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(144, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class _Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_cnn(seed=15)
        self.spare = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_layer_errors(cls: type) -> None:
    x = torch.randn(2, 1, 12, 12)
    with pytest.raises(cg.LayerError, match="4-D"):
        cls(_MLP().eval()).attribute(x, target=0)
    with pytest.raises(cg.LayerError, match="4-D"):
        cls(tiny_cnn(), layer="classifier").attribute(x, target=0)
    with pytest.raises(cg.LayerError, match="not called"):
        cls(_Unused().eval(), layer="spare").attribute(x, target=0)
    with pytest.raises(cg.LayerError, match="no layer named"):
        cls(tiny_cnn(), layer="featurez").attribute(x, target=0)
    with pytest.raises(cg.InputError):
        cls(tiny_cnn()).attribute(x[0], target=0)
