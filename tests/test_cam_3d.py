"""CAMs on 3-D inputs ``(N, C, D, H, W)``: video / volume CNNs (issue 29, part 3).

Reference: pytorch-grad-cam 1.5.7 on torchvision's ``r3d_18`` (random init, eval) at
``(2, 3, 4, 32, 32)``, layer ``layer2`` (a ``(128, 2, 8, 8)`` map), same targets. Compared
at the layer's resolution (``upsample=False``), both min–max normalised, max abs diff
<= 1e-4: pytorch-grad-cam resizes volume maps with ``scipy.ndimage.zoom`` (cubic spline)
and we resize trilinearly (the 3-D form of our bilinear 2-D resize), so its resize is
replaced by its own per-image min–max normalisation alone (monkeypatched
``scale_cam_image``), and our trilinear resize is checked separately. Principal components
use pytorch-grad-cam's sign-corrected projection, as in tests/test_cam_new.py.

pytorch-grad-cam's Score-CAM and Ablation-CAM fail on 5-D activations (a 2-D ``Upsample``,
a 4-D ``repeat``), so those two are checked against the method written out by hand on a
tiny Conv3d net.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import pytorch_grad_cam.base_cam as pgc_base
import pytorch_grad_cam.utils.svd_on_activations as svd
import torch
import torch.nn.functional as F
from helpers import ModelSnapshot
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from torchvision.models.video import r3d_18

import cleargrad as cg

TARGETS = [3, 7]
_cache: dict[str, tuple[nn.Module, torch.Tensor]] = {}


def _r3d() -> tuple[nn.Module, torch.Tensor]:
    if "r3d" not in _cache:
        torch.manual_seed(0)
        model = r3d_18(weights=None, num_classes=10).eval()
        x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
        _cache["r3d"] = (model, x)
    return _cache["r3d"]


class TinyC3D(nn.Module):
    """Two Conv3d layers, global average pooling, a linear head."""

    def __init__(self, seed: int = 3) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv3d(2, 4, 3, padding=1)
        self.c2 = nn.Conv3d(4, 6, 3, stride=(1, 2, 2), padding=1)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(self.pool(a).flatten(1))


def _tiny() -> tuple[nn.Module, torch.Tensor]:
    return TinyC3D().eval(), torch.randn(3, 2, 4, 8, 8, generator=torch.Generator().manual_seed(2))


def _minmax(a: np.ndarray | torch.Tensor) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    lo, hi = a.min(1, keepdims=True), a.max(1, keepdims=True)
    return (a - lo) / np.where(hi > lo, hi - lo, 1.0)


@pytest.fixture
def peer_at_layer_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytorch-grad-cam without its resize (min–max only) and with its sign-corrected projection."""

    def normalise_only(cam: np.ndarray, target_size: object = None) -> np.ndarray:
        out = [(img - img.min()) / (1e-7 + (img - img.min()).max()) for img in cam]
        return np.float32(out)

    monkeypatch.setattr(pgc_base, "scale_cam_image", normalise_only)
    plain = svd.get_2d_projection
    for name, mod in list(sys.modules.items()):
        if name.startswith("pytorch_grad_cam") and getattr(mod, "get_2d_projection", None) is plain:
            monkeypatch.setattr(mod, "get_2d_projection", svd.get_2d_projection_with_sign_correction)


PEERS = {
    "gradcam": pgc.GradCAM,
    "gradcam_pp": pgc.GradCAMPlusPlus,
    "xgradcam": pgc.XGradCAM,
    "layercam": pgc.LayerCAM,
    "hirescam": pgc.HiResCAM,
    "gradcam_elementwise": pgc.GradCAMElementWise,
    "eigencam": pgc.EigenCAM,
    "eigengradcam": pgc.EigenGradCAM,
    "kpcacam": pgc.KPCA_CAM,
    "fem": pgc.FEM,
    "shapleycam": pgc.ShapleyCAM,
}


@pytest.mark.parametrize("method", list(PEERS))
def test_volume_cams_equal_pytorch_grad_cam_on_r3d_18(method: str, peer_at_layer_size: None) -> None:
    model, x = _r3d()
    module = model.layer2
    with PEERS[method](model, [module]) as cam:
        ref = cam(x.clone(), targets=[ClassifierOutputTarget(t) for t in TARGETS])
    snap = ModelSnapshot.take(model)
    ours = cg.explain(model, x, method=method, layer="layer2", target=TARGETS, upsample=False, normalize=True)
    snap.assert_same(model)
    assert ours.shape == (2, 1, 2, 8, 8) and ref.shape == (2, 2, 8, 8)
    assert float(ours.max()) > 0
    err = float(np.abs(_minmax(ours.detach()) - _minmax(ref)).max())
    assert err <= 1e-4, f"{method}: max abs diff {err:.2e}"


def test_volume_finercam_equals_pytorch_grad_cam(peer_at_layer_size: None) -> None:
    model, x = _r3d()
    with pgc.FinerCAM(model, [model.layer2]) as cam:
        ref = cam(x.clone(), targets=None, target_idx=4, alpha=0.7)
    ours = cg.FinerCAM(model, layer="layer2").attribute(x, target=[4, 4], upsample=False, normalize=True, alpha=0.7)
    assert float(np.abs(_minmax(ours.detach()) - _minmax(ref)).max()) <= 1e-4


def test_auto_layer_of_r3d_18_is_layer4_and_the_map_is_upsampled_trilinearly() -> None:
    model, x = _r3d()
    cam = cg.GradCAM(model)
    assert cam.resolve_layers(x) == [model.layer4]
    low = cam.attribute(x, target=[4, 7], upsample=False)
    full = cam.attribute(x, target=[4, 7])
    assert low.shape == (2, 1, 1, 2, 2) and full.shape == (2, 1, 4, 32, 32)
    torch.testing.assert_close(full, F.interpolate(low, size=(4, 32, 32), mode="trilinear", align_corners=False))
    # a depth-1 map resized trilinearly is its bilinear resize repeated over the frames
    flat = F.interpolate(low[:, :, 0], size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(full, flat[:, :, None].expand_as(full))
    norm = cam.attribute(x, target=[4, 7], normalize=True)
    for i in range(2):  # normalised over the whole volume, per image
        assert float(norm[i].amax()) == pytest.approx(1.0, abs=1e-5) and float(norm[i].amin()) == 0.0


def _score_cam_by_hand(model: nn.Module, x: torch.Tensor, t: list[int]) -> torch.Tensor:
    """Score-CAM written out: each channel of c2's output resized trilinearly to the input,
    min–max normalised, multiplies the input; weight = softmax probability of the target."""
    acts = []
    h = model.c2.register_forward_hook(lambda _m, _i, o: acts.append(o))
    with torch.no_grad():
        model(x)
        h.remove()
        a = torch.relu(acts[0])
        maps = []
        for n in range(x.shape[0]):
            w = []
            for k in range(a.shape[1]):
                up = F.interpolate(a[n : n + 1, k : k + 1], size=x.shape[2:], mode="trilinear", align_corners=False)
                m = (up - up.min()) / (up.max() - up.min() + 1e-8)
                w.append(torch.softmax(model(x[n : n + 1] * m), dim=1)[0, t[n]])
            maps.append((torch.stack(w)[:, None, None, None] * a[n]).sum(0))
    return torch.relu(torch.stack(maps))


class _C2ReLU(TinyC3D):
    """TinyC3D whose ReLU after c2 is a module (the layer the CAM reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.r2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.r2(self.c2(torch.relu(self.c1(x))))
        return self.fc(self.pool(a).flatten(1))


def test_volume_score_cam_equals_the_method_by_hand() -> None:
    model, x = _C2ReLU().eval(), _tiny()[1]
    t = [0, 2, 4]
    ours = cg.ScoreCAM(model, layer="r2").attribute(x, target=t, upsample=False)[:, 0]
    ref = _score_cam_by_hand(model, x, t)
    assert float(ref.max()) > 0
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_volume_ablation_cam_equals_the_method_by_hand() -> None:
    model, x = _C2ReLU().eval(), _tiny()[1]
    t = [0, 2, 4]
    acts = []
    with torch.no_grad():
        h = model.r2.register_forward_hook(lambda _m, _i, o: acts.append(o))
        y = model(x).gather(1, torch.tensor(t)[:, None])[:, 0]
        h.remove()
        a = acts[0]
        w = torch.zeros(3, a.shape[1])
        for k in range(a.shape[1]):
            def drop(_m, _i, o, k=k):
                o = o.clone()
                o[:, k] = 0
                return o
            h = model.r2.register_forward_hook(drop)
            yk = model(x).gather(1, torch.tensor(t)[:, None])[:, 0]
            h.remove()
            w[:, k] = (y - yk) / y
        ref = torch.relu((w[:, :, None, None, None] * a).sum(1))
    for path in ("fx", "full"):
        ours = cg.AblationCAM(model, layer="r2").attribute(x, target=t, upsample=False, path=path)[:, 0]
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


# batch, model state ---------------------------------------------------------------------------
BATCH = {
    "gradcam": {}, "gradcam_pp": {}, "xgradcam": {}, "layercam": {}, "hirescam": {}, "gradcam_elementwise": {},
    "eigencam": {}, "eigengradcam": {}, "kpcacam": {}, "fem": {"k": 1.0}, "shapleycam": {}, "finercam": {},
    "scorecam": {}, "ablationcam": {}, "cam": {}, "fullgrad": {}, "iscam": {"n_samples": 2},
    "sscam": {"n_samples": 2, "noise_std": 0.0}, "smooth_gradcam_pp": {"stdevs": 0.0},
    "integrated_gradcam": {"n_steps": 3}, "gradcam+smoothing": {"aug_smooth": True, "eigen_smooth": True},
    "expected_gradcam": {"n_samples": 2, "t_sampling": "grid", "stdevs": 0.0},
}


@pytest.mark.parametrize("method", list(BATCH))
def test_volume_batch_equals_images_alone_and_model_untouched(method: str) -> None:
    model, x = _tiny()
    name = method.split("+")[0]
    t = [0, 2, 4]
    snap = ModelSnapshot.take(model)
    batch = cg.explain(model, x, method=name, target=t, **BATCH[method])
    alone = torch.cat([cg.explain(model, x[i : i + 1], method=name, target=t[i], **BATCH[method]) for i in range(3)])
    snap.assert_same(model)
    assert batch.shape == (3, 1, 4, 8, 8)
    assert float(batch.abs().max()) > 0
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)


def test_volume_noise_broadcast_is_per_image() -> None:
    """Smooth Grad-CAM++'s per-image noise scale on a batch of 3 volumes with 3 channels
    (a (B, 1, 1, 1) view would broadcast over the channels instead)."""
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = torch.randn(3, 3, 2, 6, 6, generator=torch.Generator().manual_seed(9))
    kw = {"n_samples": 2, "stdevs": 0.2}
    batch = cg.SmoothGradCAMPlusPlus(model, layer="1").attribute(
        x, target=[0, 1, 2], generator=torch.Generator().manual_seed(1), **kw)
    g = torch.Generator().manual_seed(1)
    alone = torch.cat([cg.SmoothGradCAMPlusPlus(model, layer="1").attribute(x[i : i + 1], target=i, generator=g, **kw)
                       for i in range(3)])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)


def test_volume_pixel_methods_equal_captum() -> None:
    from captum.attr import IntegratedGradients, Saliency

    model, x = _tiny()
    t = torch.tensor([0, 2, 4])
    snap = ModelSnapshot.take(model)
    sal = cg.Saliency(model).attribute(x, target=t)
    ig = cg.IntegratedGradients(model).attribute(x, target=t, n_steps=8, method="riemann_left")
    snap.assert_same(model)
    assert sal.shape == x.shape and ig.shape == x.shape
    torch.testing.assert_close(sal, Saliency(model).attribute(x, target=t), rtol=1e-5, atol=1e-7)
    ref = IntegratedGradients(model).attribute(x, target=t, n_steps=8, method="riemann_left")
    torch.testing.assert_close(ig, ref, rtol=1e-4, atol=1e-6)


# refusals ------------------------------------------------------------------------------------
def test_volume_refusals_name_why_and_leave_the_model_untouched() -> None:
    model, x = _tiny()
    snap = ModelSnapshot.take(model)
    with pytest.raises(cg.InputError, match=r"\(N, C, D, H, W\)"):
        cg.GradCAM(model).attribute(x[:, :, 0], target=0)  # a 4-D input for a Conv3d model
    with pytest.raises(cg.InputError, match=r"references='blur' blurs 2-D images"):
        cg.ExpectedGradCAM(model, layer="c2").attribute(x, target=0, references="blur", n_samples=2)
    with pytest.raises(cg.LayerError, match=r"volume"):
        cg.GradCAM(model, layer="c2", reshape="channels_last").attribute(x, target=0)
    with pytest.raises(cg.LayerError, match=r"volume"):
        cg.GradCAM(model, layer="c2", reshape=cg.TokenGrid(prefix=1)).attribute(x, target=0)
    with pytest.raises(cg.LayerError, match=r"5-D \(N, K, d, h, w\)"):
        cg.GradCAM(model, layer="fc").attribute(x, target=0)  # not a volume feature map
    with pytest.raises(cg.LayerError, match=r"\(N, K, d, h, w\)"):
        cg.GradCAM(model, layer="c2", reshape=lambda o: o.mean(2)).attribute(x, target=0)
    snap.assert_same(model)
    conv2d = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    with pytest.raises(cg.InputError, match=r"\(N, C, H, W\)"):
        cg.GradCAM(conv2d.eval()).attribute(x, target=0)  # a volume for a 2-D model


def test_volume_aug_smooth_of_a_flip_symmetric_model_is_the_plain_map() -> None:
    g = torch.Generator().manual_seed(4)

    def net(symmetric: bool) -> nn.Module:
        m = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1, bias=False), nn.ReLU(),
                          nn.Conv3d(4, 4, 3, padding=1, bias=False), nn.ReLU(),
                          nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 3, bias=False))
        with torch.no_grad():
            for c in (m[0], m[2]):
                w = torch.randn(c.weight.shape, generator=g)
                c.weight.copy_((w + w.flip(-1)) / 2 if symmetric else w)
        return m.eval()

    x = torch.randn(2, 2, 3, 6, 6, generator=torch.Generator().manual_seed(6))
    for symmetric in (True, False):
        m = net(symmetric)
        plain = cg.GradCAM(m, layer="3").attribute(x, target=[0, 2], normalize=True)
        smooth = cg.GradCAM(m, layer="3").attribute(x, target=[0, 2], normalize=True, aug_smooth=True)
        if symmetric:
            torch.testing.assert_close(smooth, plain, rtol=0, atol=1e-5)
        else:  # the check can fail
            assert float((smooth - plain).abs().max()) > 1e-2
