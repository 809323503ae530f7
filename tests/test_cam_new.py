"""The CAMs of issue 29 against pytorch-grad-cam 1.5.7 and TorchCAM 0.5, and their invariants.

Reference maps are compared min–max normalised (ours ``normalize=True``), max abs diff
<= 1e-4, on torchvision resnet18 / vgg11_bn (random init, eval, 2x3x64x64) and ViT-B/16 at
64x64 (MHA fast path off on both sides, as tests/test_transformers.py explains), with the
same layer, targets and reshape.

Sign of principal components: an SVD solver returns either sign (numpy's and torch's agree
on about half of the activations tried). Our convention is pytorch-grad-cam's own sign
correction (``get_2d_projection_with_sign_correction``: ``|max| >= |min|``), so the
comparison runs pytorch-grad-cam with that function in place of its uncorrected
``get_2d_projection`` (monkeypatched in its modules); the sign rule itself is tested below.

Stochastic methods get the peer's noise injected: RandomCAM's weights (pytorch-grad-cam
draws them with ``np.random.uniform``), SS-CAM's mask noise (TorchCAM's ``_distrib``).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import pytorch_grad_cam.utils.svd_on_activations as svd
import torch
import torchvision
from helpers import ModelSnapshot
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import cleargrad as cg
import cleargrad.cam.noisy_score as noisy_score
from cleargrad.cam.projection import first_component, kernel_component

TARGETS = [3, 7]
_cache: dict[str, tuple[nn.Module, torch.Tensor]] = {}


def _vit_tokens_to_maps(t: torch.Tensor) -> torch.Tensor:
    side = math.isqrt(t.shape[1] - 1)
    return t[:, 1:, :].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)


def _build(name: str) -> nn.Module:
    if name == "resnet18":
        torch.manual_seed(1)
        return torchvision.models.resnet18(weights=None, num_classes=10).eval()
    if name == "vgg11_bn":
        torch.manual_seed(2)
        return torchvision.models.vgg11_bn(weights=None, num_classes=10).eval()
    if name == "vit_b_16":
        torch.manual_seed(0)
        m = torchvision.models.vit_b_16(image_size=64, num_classes=10)
        g = torch.Generator().manual_seed(8)
        with torch.no_grad():  # non-zero head, so gradients exist
            for n, p in m.named_parameters():
                if n.startswith("head") and p.dim() == 2:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        return m.eval()
    if name == "vit_narrow":  # torchvision's ViT class, narrow: the many-pass methods
        torch.manual_seed(0)
        return torchvision.models.VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=24, mlp_dim=48, num_classes=10
        ).eval()
    raise KeyError(name)


def _model_and_input(name: str, size: int = 64) -> tuple[nn.Module, torch.Tensor]:
    if name not in _cache:
        _cache[name] = (_build(name), torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4)))
    m, x = _cache[name]
    return m, x[:, :, :size, :size].contiguous()


# model -> (layer, pytorch-grad-cam reshape_transform)
MODELS = {
    "resnet18": ("layer3", None),
    "vgg11_bn": ("features.27", None),
    "vit_b_16": ("encoder.layers.encoder_layer_11.ln_1", _vit_tokens_to_maps),
}

# (pytorch-grad-cam class, ours, our constructor options, our attribute options)
METHODS = {
    "eigencam": (pgc.EigenCAM, cg.EigenCAM, {}),
    "eigengradcam": (pgc.EigenGradCAM, cg.EigenGradCAM, {}),
    "kpcacam": (pgc.KPCA_CAM, cg.KPCACAM, {}),
    "gradcam_elementwise": (pgc.GradCAMElementWise, cg.GradCAMElementWise, {}),
    "fem": (pgc.FEM, cg.FEM, {}),
    "shapleycam": (pgc.ShapleyCAM, cg.ShapleyCAM, {}),
}


@pytest.fixture
def peer_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytorch-grad-cam with its sign-corrected projection and the MHA fast path off."""
    plain = svd.get_2d_projection
    for name, mod in list(sys.modules.items()):
        if name.startswith("pytorch_grad_cam") and getattr(mod, "get_2d_projection", None) is plain:
            monkeypatch.setattr(mod, "get_2d_projection", svd.get_2d_projection_with_sign_correction)
    monkeypatch.setattr(torch.backends.mha, "get_fastpath_enabled", lambda: False)


def _peer(cls, model: nn.Module, layer: str, rt, x: torch.Tensor, targets, **call) -> np.ndarray:
    module = dict(model.named_modules())[layer]
    cam = cls(model, [module], reshape_transform=rt)
    try:
        return cam(x.clone(), targets=[ClassifierOutputTarget(t) for t in targets], **call)
    finally:
        # its release detaches the stored gradients in place, which fails for ShapleyCAM's
        # token-layer gradients (views); they are not needed any more
        cam.activations_and_grads.gradients = []
        cam.activations_and_grads.release()


def _shapley_by_hand(model: nn.Module, layer: str, rt, x: torch.Tensor, targets: list[int]) -> np.ndarray:
    """pytorch-grad-cam's ShapleyCAM written out: w = mean(G - H A / 2), map ReLU(sum_k w_k A^k),
    min–max normalised, bilinear to the input, normalised again."""
    store: dict[str, torch.Tensor] = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: store.setdefault("a", o))
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            out = model(x.clone().requires_grad_(True))
            a = store["a"]
            (g,) = torch.autograd.grad(out[torch.arange(len(targets)), targets].sum(), a, create_graph=True)
            (hvp,) = torch.autograd.grad(g, a, grad_outputs=a)
    finally:
        handle.remove()
    w = rt(g - 0.5 * hvp).mean(dim=(2, 3))
    cam = torch.relu((w[:, :, None, None] * rt(a)).sum(1, keepdim=True)).detach()
    cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    flat = cam.flatten(1)
    cam = (flat - flat.amin(1, keepdim=True)) / (flat.amax(1, keepdim=True) - flat.amin(1, keepdim=True))
    return cam.view(len(targets), *x.shape[-2:]).numpy()


def _check(ours: torch.Tensor, ref: np.ndarray) -> float:
    assert ref.max() > 0.5 and ref.std() > 0.05  # a non-degenerate map, so the comparison means something
    err = float(np.abs(ours[:, 0].numpy() - ref).max())
    assert err <= 1e-4
    return err


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("method", list(METHODS))
def test_equals_pytorch_grad_cam(model_name: str, method: str, peer_sign: None) -> None:
    model, x = _model_and_input(model_name)
    layer, rt = MODELS[model_name]
    ref_cls, ours_cls, opts = METHODS[method]
    if method == "shapleycam" and rt is not None:
        # pytorch-grad-cam 1.5.7's ShapleyCAM cannot run a reshape_transform (with detach=False it
        # leaves the activations as tokens and raises "Invalid activation shape"): its formula by hand
        ref = _shapley_by_hand(model, layer, rt, x, TARGETS)
    else:
        with sdpa_kernel([SDPBackend.MATH]):  # ShapleyCAM's second derivative: the peer needs the math kernel
            ref = _peer(ref_cls, model, layer, rt, x, TARGETS)
    ours = ours_cls(model, layer=layer).attribute(x, target=TARGETS, normalize=True, **opts)
    assert ours.shape == (2, 1, 64, 64)
    _check(ours, ref)


@pytest.mark.parametrize("kernel", ["rbf", "poly", "linear", "cosine"])
def test_kpca_kernels_equal_pytorch_grad_cam(kernel: str, peer_sign: None) -> None:
    model, x = _model_and_input("resnet18")
    module = model.layer3
    with pgc.KPCA_CAM(model, [module], kernel=kernel, gamma=None if kernel != "rbf" else 0.01) as cam:
        ref = cam(x.clone(), targets=None)
    ours = cg.KPCACAM(model, layer="layer3").attribute(
        x, normalize=True, kernel=kernel, gamma=None if kernel != "rbf" else 0.01
    )
    _check(ours, ref)


@pytest.mark.parametrize("model_name", ["resnet18", "vgg11_bn", "vit_b_16"])
def test_finercam_equals_pytorch_grad_cam(model_name: str, peer_sign: None) -> None:
    model, x = _model_and_input(model_name)
    layer, rt = MODELS[model_name]
    module = dict(model.named_modules())[layer]
    for target_idx in (None, 4):
        with pgc.FinerCAM(model, [module], reshape_transform=rt) as cam:
            ref = cam(x.clone(), targets=None, target_idx=target_idx, alpha=0.7)
        t = None if target_idx is None else [target_idx] * 2
        ours = cg.FinerCAM(model, layer=layer).attribute(x, target=t, normalize=True, alpha=0.7)
        _check(ours, ref)


@pytest.mark.parametrize("model_name", ["resnet18", "vgg11_bn", "vit_b_16"])
def test_randomcam_equals_pytorch_grad_cam_with_the_same_weights(
    model_name: str, peer_sign: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, x = _model_and_input(model_name)
    layer, rt = MODELS[model_name]
    k = {"resnet18": 256, "vgg11_bn": 512, "vit_b_16": 768}[model_name]
    # our draw: 2 U - 1, U = torch.rand((N, K), generator, float64)
    w = torch.rand((2, k), generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2 - 1
    monkeypatch.setattr(np.random, "uniform", lambda low, high, size: w.numpy().copy())
    ref = _peer(pgc.RandomCAM, model, layer, rt, x, TARGETS)
    ours = cg.RandomCAM(model, layer=layer).attribute(
        x, target=TARGETS, normalize=True, generator=torch.Generator().manual_seed(5)
    )
    _check(ours, ref)


@pytest.mark.parametrize("model_name", ["resnet18", "vgg11_bn", "vit_b_16"])
def test_fullgrad_equals_pytorch_grad_cam(model_name: str) -> None:
    model, x = _model_and_input(model_name)
    with pgc.FullGrad(model, []) as cam:
        ref = cam(x.clone(), targets=[ClassifierOutputTarget(t) for t in TARGETS])
    ours = cg.FullGrad(model).attribute(x, target=TARGETS, normalize=True)
    _check(ours, ref)


# smoothing options: (ours, peer) for every CAM pytorch-grad-cam has in the same form
SMOOTHED = [
    (cg.GradCAM, pgc.GradCAM),
    (cg.GradCAMPlusPlus, pgc.GradCAMPlusPlus),
    (cg.XGradCAM, pgc.XGradCAM),
    (cg.LayerCAM, pgc.LayerCAM),
    (cg.HiResCAM, pgc.HiResCAM),
    (cg.GradCAMElementWise, pgc.GradCAMElementWise),
    (cg.EigenCAM, pgc.EigenCAM),
    (cg.ShapleyCAM, pgc.ShapleyCAM),
]


@pytest.mark.parametrize("ours_cls,ref_cls", SMOOTHED, ids=[c.__name__ for c, _ in SMOOTHED])
def test_eigen_smooth_equals_pytorch_grad_cam(ours_cls, ref_cls, peer_sign: None) -> None:
    model, x = _model_and_input("resnet18")
    ref = _peer(ref_cls, model, "layer3", None, x, TARGETS, eigen_smooth=True)
    ours = ours_cls(model, layer="layer3").attribute(x, target=TARGETS, normalize=True, eigen_smooth=True)
    _check(ours, ref)
    plain = ours_cls(model, layer="layer3").attribute(x, target=TARGETS, normalize=True)
    if ours_cls is not cg.EigenCAM:  # the option changes the map (EigenCAM already is a projection)
        assert float((plain - ours).abs().max()) > 1e-2


@pytest.mark.parametrize("ours_cls,ref_cls", SMOOTHED[:1] + SMOOTHED[6:7], ids=["GradCAM", "EigenCAM"])
def test_aug_smooth_equals_pytorch_grad_cam(ours_cls, ref_cls, peer_sign: None) -> None:
    model, x = _model_and_input("resnet18")
    ref = _peer(ref_cls, model, "layer3", None, x, TARGETS, aug_smooth=True)
    ours = ours_cls(model, layer="layer3").attribute(x, target=TARGETS, aug_smooth=True)  # the peer's mean, as is
    np.testing.assert_allclose(ours[:, 0].numpy(), ref, rtol=0, atol=1e-4)
    plain = ours_cls(model, layer="layer3").attribute(x, target=TARGETS, normalize=True)
    assert float((plain - ours).abs().max()) > 1e-2


def test_smoothing_on_fullgrad_and_score_cam_equal_pytorch_grad_cam(peer_sign: None) -> None:
    model, x = _model_and_input("resnet18")
    with pgc.FullGrad(model, []) as cam:
        ref = cam(x.clone(), targets=[ClassifierOutputTarget(t) for t in TARGETS], eigen_smooth=True)
    _check(cg.FullGrad(model).attribute(x, target=TARGETS, normalize=True, eigen_smooth=True), ref)
    xs = x[:1, :, :32, :32].contiguous()
    ref = _peer(pgc.ScoreCAM, model, "layer1", None, xs, [7], eigen_smooth=True)
    ours = cg.ScoreCAM(model, layer="layer1").attribute(
        xs, target=7, normalize=True, eigen_smooth=True,
        mask_space="normalized", weights="softmax_over_channels", mask_align_corners=True,
    )
    _check(ours, ref)


# SS-CAM / IS-CAM against TorchCAM (low-resolution maps, both normalised with eps 1e-8)
TORCHCAM_MODELS = {
    "resnet18": ("layer1", 32, None),
    "vgg11_bn": ("features.2", 32, None),
    "vit_narrow": ("encoder.layers.encoder_layer_1.ln_1", 32, _vit_tokens_to_maps),
}


@pytest.mark.parametrize("model_name", list(TORCHCAM_MODELS))
def test_sscam_and_iscam_equal_torchcam(model_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchcam.methods import ISCAM, SSCAM

    layer, size, rt = TORCHCAM_MODELS[model_name]
    model, x = _model_and_input(model_name, size)
    x = x[:1]  # one image: these run S x K passes each (batching is tested below)
    k = cg.GradCAM(model, layer=layer).attribute(x, target=0, upsample=False).shape  # grid
    channels = {"resnet18": 64, "vgg11_bn": 64, "vit_narrow": 24}[model_name]
    s = 1 if model_name == "vgg11_bn" else 2  # vgg's 64 channels at 32x32 are the slowest passes
    g = torch.Generator().manual_seed(0)
    noise = [torch.randn(1, channels, size, size, generator=g) * 2.0 for _ in range(s)]

    class Injected:
        i = 0

        def sample(self, shape: torch.Size) -> torch.Tensor:
            out = noise[self.i]
            assert tuple(shape) == tuple(out.shape)
            self.i += 1
            return out

    def lookup(items, seeds, like, std):
        img, smp, ch = items
        return torch.stack([noise[a][b, c] for b, a, c in zip(img.tolist(), smp.tolist(), ch.tolist())])[:, None]

    monkeypatch.setattr(noisy_score, "_mask_noise", lookup)
    kw = {"reshape_transform": rt} if rt is not None else {}
    for ref_cls, ours_cls, opts in ((SSCAM, cg.SSCAM, {"num_samples": s, "std": 2.0}),
                                    (ISCAM, cg.ISCAM, {"num_samples": s + 1})):
        with ref_cls(model, layer, batch_size=64, input_shape=(3, size, size), **opts, **kw) as ex:
            if ref_cls is SSCAM:
                ex._distrib = Injected()
            with torch.no_grad():
                model(x)
            ref = ex(class_idx=[7])[0]
        ours = ours_cls(model, layer=layer).attribute(
            x, target=7, upsample=False, normalize=True, n_samples=opts["num_samples"], batch_size=50
        )
        assert ours.shape[-2:] == k[-2:]
        assert ref.max() > 0.5 and ref.std() > 0.05
        assert float((ours[:, 0] - ref).abs().max()) <= 1e-4, ours_cls.__name__


# invariants ------------------------------------------------------------------------------
def test_first_component_sign_scale_and_centring() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.relu(torch.randn(3, 16, 5, 6, generator=g, dtype=torch.float64))
    p = first_component(a)
    assert p.shape == (3, 1, 5, 6)
    flat = p.flatten(1)
    assert bool((flat.amax(1).abs() >= flat.amin(1).abs()).all())  # the sign convention
    for i in range(3):
        m = a[i].reshape(16, -1).T.numpy()
        m = m - m.mean(axis=0)
        _, s, vt = np.linalg.svd(m)
        ref = m @ vt[0]
        np.testing.assert_allclose(np.linalg.norm(flat[i].numpy()), s[0], rtol=1e-10)  # scale: sigma_1
        sign = 1.0 if abs(ref.max()) >= abs(ref.min()) else -1.0
        np.testing.assert_allclose(flat[i].numpy(), sign * ref, atol=1e-10)
    shift = torch.randn(1, 16, 1, 1, generator=g, dtype=torch.float64)
    torch.testing.assert_close(first_component(a + shift), p)  # centring: a per-channel constant is removed
    torch.testing.assert_close(first_component(2.5 * a), 2.5 * p)  # positive scale carries through
    torch.testing.assert_close(first_component(-a), p)  # the sign is fixed by the rule, not the data's sign


def test_kernel_component_equals_sklearn() -> None:
    from sklearn.decomposition import KernelPCA

    a = torch.randn(2, 8, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for kernel, gamma in (("sigmoid", None), ("rbf", 0.3), ("poly", None), ("cosine", None), ("linear", None)):
        ours = kernel_component(a, kernel, gamma).flatten(1).numpy()
        for i in range(2):
            m = a[i].reshape(8, -1).T.numpy()
            ref = KernelPCA(n_components=1, kernel=kernel, gamma=gamma).fit_transform(m - m.mean(axis=0))[:, 0]
            np.testing.assert_allclose(ours[i], ref, atol=1e-8)


class _BiasFree(nn.Module):
    def __init__(self, bias: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=bias)
        self.fc = nn.Linear(8, 4, bias=bias)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            self.bn.running_mean.copy_(torch.randn(6, generator=g) * 0.1)
            self.bn.running_var.copy_(torch.rand(6, generator=g) + 0.5)
        self.use_bn = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        if self.use_bn:
            x = self.bn(x)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.mean(dim=(2, 3)))


def test_fullgrad_completeness() -> None:
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    free = _BiasFree(bias=False).eval()
    d = cg.FullGrad(free).decompose(x, target=[1, 2])
    assert d.bias_terms.shape[1] == 0
    torch.testing.assert_close(d.input_term, d.scores, rtol=1e-5, atol=1e-6)  # f(x) = x . grad f
    biased = _BiasFree(bias=True).eval()
    d = cg.FullGrad(biased).decompose(x, target=[1, 2])
    assert d.layers == ("conv1", "bn", "conv2", "fc")
    assert float(d.bias_terms.abs().min()) > 0
    torch.testing.assert_close(d.input_term + d.bias_terms.sum(1), d.scores, rtol=1e-5, atol=1e-6)
    # the map's bias layers are pytorch-grad-cam's (Conv2d and BatchNorm2d), the map non-trivial
    m = cg.FullGrad(biased).attribute(x, target=[1, 2], normalize=True)
    assert m.shape == (2, 1, 8, 8) and float(m.std()) > 0.05


class _FlipSymmetric(nn.Module):
    """Bias-free ReLU CNN with horizontally symmetric kernels and a global-average head:
    flip-equivariant feature maps, flip-invariant and positively homogeneous scores."""

    def __init__(self, symmetric: bool = True) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.fc = nn.Linear(8, 5, bias=False)
        with torch.no_grad():
            for c in (self.c1, self.c2):
                w = torch.randn(c.weight.shape, generator=g)
                c.weight.copy_((w + w.flip(-1)) / 2 if symmetric else w)
            self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(a.mean(dim=(2, 3)))


@pytest.mark.parametrize("cls", [cg.GradCAM, cg.EigenCAM, cg.LayerCAM, cg.GradCAMElementWise])
def test_aug_smooth_of_a_flip_symmetric_model_is_the_plain_map(cls) -> None:
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(6))
    sym = _FlipSymmetric().eval()
    plain = cls(sym, layer="c2").attribute(x, target=[0, 3], normalize=True)
    smooth = cls(sym, layer="c2").attribute(x, target=[0, 3], normalize=True, aug_smooth=True)
    torch.testing.assert_close(smooth, plain, rtol=0, atol=1e-5)
    asym = _FlipSymmetric(symmetric=False).eval()  # the check can fail: without symmetry it differs
    plain = cls(asym, layer="c2").attribute(x, target=[0, 3], normalize=True)
    smooth = cls(asym, layer="c2").attribute(x, target=[0, 3], normalize=True, aug_smooth=True)
    assert float((smooth - plain).abs().max()) > 1e-2


# batch, model state, errors -------------------------------------------------------------------
DETERMINISTIC = {
    "eigencam": {}, "eigengradcam": {}, "kpcacam": {}, "gradcam_elementwise": {}, "fem": {"k": 1.0},
    "shapleycam": {}, "finercam": {}, "fullgrad": {}, "iscam": {"n_samples": 2},
    "sscam": {"n_samples": 2, "noise_std": 0.0}, "gradcam": {"aug_smooth": True, "eigen_smooth": True},
}


@pytest.mark.parametrize("method", list(DETERMINISTIC))
def test_batch_equals_images_alone(method: str) -> None:
    from helpers import tiny_cnn

    model = tiny_cnn()
    x = torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(7))
    snap = ModelSnapshot.take(model)
    batch = cg.explain(model, x, method=method, target=[0, 2, 4], **DETERMINISTIC[method])
    alone = torch.cat([cg.explain(model, x[i : i + 1], method=method, target=t, **DETERMINISTIC[method])
                       for i, t in enumerate([0, 2, 4])])
    assert float(batch.abs().max()) > 0
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)
    snap.assert_same(model)


def test_random_cam_is_reproducible_and_varies() -> None:
    from helpers import tiny_cnn

    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(7))
    a = cg.RandomCAM(model).attribute(x, generator=torch.Generator().manual_seed(1), relu=False)
    b = cg.RandomCAM(model).attribute(x, generator=torch.Generator().manual_seed(1), relu=False)
    c = cg.RandomCAM(model).attribute(x, generator=torch.Generator().manual_seed(2), relu=False)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert float((a - c).abs().max()) > 1e-3


BAD = [
    ("kpcacam", {"kernel": "laplace"}, cg.ConfigError, "kernel must be one of"),
    ("kpcacam", {"gamma": -1.0}, cg.ConfigError, "gamma must be a positive"),
    ("fem", {"k": "two"}, cg.ConfigError, "k must be a number"),
    ("finercam", {"comparison_ranks": (0, 1)}, cg.ConfigError, "rank 0 is the target"),
    ("finercam", {"alpha": "x"}, cg.ConfigError, "alpha must be a number"),
    ("sscam", {"noise_std": -1.0}, cg.ConfigError, "noise_std must be"),
    ("sscam", {"n_samples": 0}, cg.ConfigError, "n_samples must be a positive int"),
    ("iscam", {"batch_size": 0}, cg.ConfigError, "batch_size must be a positive int"),
    ("randomcam", {"generator": 5}, cg.ConfigError, "generator"),
    ("gradcam", {"aug_smooth": "yes"}, cg.ConfigError, "aug_smooth must be True or False"),
    ("eigencam", {"eigen_smooth": 1}, cg.ConfigError, "eigen_smooth must be True or False"),
    ("eigencam", {"kernel": "rbf"}, cg.ConfigError, "unknown option"),
]


@pytest.mark.parametrize("method,opts,err,match", BAD, ids=[f"{m}-{next(iter(o))}" for m, o, _, _ in BAD])
def test_bad_options_raise_specific_errors(method: str, opts: dict, err: type, match: str) -> None:
    from helpers import tiny_cnn

    model = tiny_cnn()
    snap = ModelSnapshot.take(model)
    with pytest.raises(err, match=match):
        cg.explain(model, torch.randn(2, 1, 12, 12), method=method, target=[0, 1], **opts)
    snap.assert_same(model)


def test_finer_cam_bad_base_and_targets() -> None:
    from helpers import tiny_cnn

    model = tiny_cnn()
    with pytest.raises(cg.ConfigError, match="base must be one of"):
        cg.FinerCAM(model, base="scorecam")
    for method in ("eigencam", "kpcacam", "fem", "fullgrad", "finercam", "shapleycam", "sscam", "aug"):
        snap = ModelSnapshot.take(model)
        opts = {"aug_smooth": True} if method == "aug" else {}
        with pytest.raises(cg.TargetError):
            cg.explain(model, torch.randn(2, 1, 12, 12), method="gradcam" if method == "aug" else method,
                       target=[0, 99], **opts)
        snap.assert_same(model)


def test_shapley_cam_differs_from_grad_cam_where_the_head_is_not_piecewise_linear() -> None:
    model, x = _model_and_input("vit_b_16")
    layer = MODELS["vit_b_16"][0]
    shapley = cg.ShapleyCAM(model, layer=layer).attribute(x, target=TARGETS, normalize=True)
    grad = cg.GradCAM(model, layer=layer).attribute(x, target=TARGETS, normalize=True)
    assert float((shapley - grad).abs().max()) > 1e-3
    resnet, xr = _model_and_input("resnet18")  # layer4 -> pooling -> linear: H A = 0
    torch.testing.assert_close(cg.ShapleyCAM(resnet, layer="layer4").attribute(xr, target=TARGETS),
                               cg.GradCAM(resnet, layer="layer4").attribute(xr, target=TARGETS))


@pytest.mark.parametrize("shape", [(2, 5, 4, 6), (1, 3, 2, 3, 4)])
def test_fullgrad_sums_channels_before_the_linear_resize(shape) -> None:
    """FullGrad's post-processing sums each layer's normalised channels before resizing
    them: equal to resizing every channel and summing (bilinear / trilinear are linear)."""
    from cleargrad.cam.fullgrad import _norm_resize

    t = torch.rand(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    size = tuple(3 * s + 1 for s in shape[2:])
    fast = _norm_resize(t, size, channel_sum=True)
    assert fast.shape == (shape[0], 1, *size)
    torch.testing.assert_close(fast, _norm_resize(t, size).sum(dim=1, keepdim=True), rtol=1e-12, atol=1e-12)
