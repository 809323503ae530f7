"""NoiseTunnel around any method: Captum's NoiseTunnel under the same noise, CAMs and
perturbation methods wrapped through their public ``attribute``, model left untouched."""

from __future__ import annotations

import captum.attr as ca
import pytest
import torch
import torchvision
from helpers import BoomNet, ModelSnapshot, tiny_cnn
from torch import nn

import cleargrad as cg

RTOL = 1e-5


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _resnet() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval(), torch.randn(2, 3, 32, 32)


def _captum_noise(x: torch.Tensor, n_samples: int, std: float, seed: int) -> torch.Tensor:
    """The noise Captum's NoiseTunnel draws after ``torch.manual_seed(seed)`` (one
    ``torch.normal`` over the image-major expanded batch), as ``(N, S, ...)``."""
    torch.manual_seed(seed)
    noise = torch.normal(0, torch.full((x.shape[0] * n_samples, *x.shape[1:]), std))
    return noise.view(x.shape[0], n_samples, *x.shape[1:])


def assert_close(ours: torch.Tensor, ref: torch.Tensor, rtol: float = RTOL) -> None:
    assert ours.shape == ref.shape
    scale = ref.abs().max().item()
    assert scale > 0
    err = (ours - ref).abs().max().item()
    assert err <= rtol * scale, f"max abs diff {err:.3e} > {rtol:g} x {scale:.3e}"


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("base", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_noise_tunnel_equals_captum_under_the_same_noise(base: str, nt_type: str) -> None:
    model, x = _resnet()
    ours_m, ref_m, kw = {
        "saliency": (cg.Saliency(model), ca.Saliency(model), {}),
        "input_x_gradient": (cg.InputXGradient(model), ca.InputXGradient(model), {}),
        "integrated_gradients": (cg.IntegratedGradients(model), ca.IntegratedGradients(model), {"n_steps": 3}),
    }[base]
    noise = _captum_noise(x, 3, 0.2, seed=11)
    torch.manual_seed(11)
    ref = ca.NoiseTunnel(ref_m).attribute(x, nt_type=nt_type, nt_samples=3, stdevs=0.2, target=[3, 7], **kw)
    ours = cg.NoiseTunnel(ours_m).attribute(x, [3, 7], nt_type=nt_type, noise=noise, internal_batch_size=4, **kw)
    assert_close(ours, ref, rtol=1e-5 if base != "integrated_gradients" else 1e-4)


def _hand_tunnel(method, x, target, noise, nt_type="smoothgrad", **kw) -> torch.Tensor:
    outs = [torch.stack([method.attribute(x[i : i + 1] + noise[i, s : s + 1], target[i], **kw)[0]
                         for s in range(noise.shape[1])]) for i in range(x.shape[0])]
    a = torch.stack(outs)  # (N, S, ...)
    if nt_type == "smoothgrad":
        return a.mean(1)
    if nt_type == "smoothgrad_sq":
        return (a * a).mean(1)
    return (a * a).mean(1) - a.mean(1) ** 2


@pytest.mark.parametrize("name,kw", [
    ("gradcam", {}), ("gradcam", {"upsample": False, "relu": False}), ("scorecam", {"batch_size": 8}),
    ("occlusion", {"sliding_window_shapes": (4, 4), "strides": 4}),
])
@pytest.mark.parametrize("nt_type", ["smoothgrad", "vargrad"])
def test_noise_tunnel_wraps_cams_and_perturbation_methods(name: str, kw: dict, nt_type: str) -> None:
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    method, _ = cg.make_method(model, name)
    noise = 0.3 * torch.randn(2, 3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    out = cg.NoiseTunnel(method).attribute(x, [0, 3], nt_type=nt_type, noise=noise, internal_batch_size=4, **kw)
    ref = _hand_tunnel(method, x, [0, 3], noise, nt_type, **kw)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-7)
    assert out.abs().max() > 0
    # drawn noise: reproducible, and a batch equals its images alone
    g = torch.Generator().manual_seed(3)
    a = cg.NoiseTunnel(method).attribute(x, [0, 3], nt_type=nt_type, stdevs=0.3, n_samples=2,
                                         generator=torch.Generator().manual_seed(3), **kw)
    b = torch.cat([cg.NoiseTunnel(method).attribute(x[i : i + 1], t, nt_type=nt_type, stdevs=0.3, n_samples=2,
                                                    generator=g, **kw) for i, t in enumerate([0, 3])])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_noise_tunnel_gradcam_shape_and_default_target() -> None:
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    out = cg.NoiseTunnel(cg.GradCAM(model)).attribute(x, stdevs=0.1, n_samples=2, generator=torch.Generator())
    assert out.shape == (2, 1, 12, 12)
    assert (out >= 0).all()  # a mean of rectified maps
    assert "upsample" in cg.NoiseTunnel(cg.GradCAM(model)).option_names()


def test_noise_tunnel_passes_its_generator_to_sampled_methods() -> None:
    model = tiny_cnn()
    x = torch.randn(1, 1, 12, 12)
    nt = cg.NoiseTunnel(cg.RISE(model))
    kw = {"n_masks": 6, "cells": 3, "stdevs": 0.1, "n_samples": 2}
    a = nt.attribute(x, 0, generator=torch.Generator().manual_seed(0), **kw)
    b = nt.attribute(x, 0, generator=torch.Generator().manual_seed(0), **kw)
    c = nt.attribute(x, 0, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_noise_tunnel_bad_inputs() -> None:
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    with pytest.raises(TypeError):
        cg.NoiseTunnel(model)
    with pytest.raises(cg.InputError, match="noise must be"):
        cg.NoiseTunnel(cg.GradCAM(model)).attribute(x, 0, noise=torch.zeros(2, 3, 1, 11, 12))
    with pytest.raises(cg.ConfigError):
        cg.NoiseTunnel(cg.GradCAM(model)).attribute(x, 0, nt_type="mean")
    with pytest.raises(cg.ConfigError):
        cg.NoiseTunnel(cg.GradCAM(model)).attribute(x, 0, no_such_option=1)


@pytest.mark.parametrize("name", ["gradcam", "scorecam", "occlusion"])
def test_noise_tunnel_around_a_cam_leaves_the_model_untouched_on_error(name: str) -> None:
    model = BoomNet().eval()
    x = torch.randn(2, 1, 12, 12)
    method, _ = cg.make_method(model, name)
    snap = ModelSnapshot.take(model)
    nt = cg.NoiseTunnel(method)
    out = nt.attribute(x, [0, 1], stdevs=0.1, n_samples=2, generator=torch.Generator())
    assert torch.isfinite(out).all()
    snap.assert_same(model)
    model.boom.armed = True
    with pytest.raises(RuntimeError, match="boom"):
        nt.attribute(x, [0, 1], stdevs=0.1, n_samples=2, generator=torch.Generator())
    model.boom.armed = False
    snap.assert_same(model)
    with pytest.raises(cg.TargetError):
        nt.attribute(x, [0, 99], stdevs=0.1, n_samples=2)
    snap.assert_same(model)
