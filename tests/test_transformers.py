"""Vision transformers: CAMs on token layers, layer='auto', attention rollout and
gradient-weighted attention relevance, on real torchvision and timm backbones.

Real architectures at random init (no weights can be downloaded), classifier heads
re-initialised to non-zero values so gradients exist, small inputs and one image so the
full-width ViT-B/16 and Swin-T stay fast.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from helpers import ModelSnapshot, assert_untouched_when_forward_raises
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import cleargrad as cg
from cleargrad.api import make_method
from cleargrad.attention import attention_probabilities
from cleargrad.core import auto_layer, layer_name

timm = pytest.importorskip("timm")

_cache: dict[str, nn.Module] = {}


def _reinit_heads(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("head") and p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def _model(name: str) -> nn.Module:
    """Built once per session (ViT-B/16 takes about a second to initialise)."""
    if name not in _cache:
        torch.manual_seed(0)
        if name == "vit_b_16":  # full width, 64x64 input: 4x4 patches + class token
            m = torchvision.models.vit_b_16(image_size=64, num_classes=10)
        elif name == "swin_t":  # full width; its last stage is a 4x4 grid at 128x128
            m = torchvision.models.swin_t(num_classes=10)
        elif name == "vit_small_tv":  # torchvision's ViT class, narrow: many-pass methods
            m = torchvision.models.VisionTransformer(
                image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=24, mlp_dim=48, num_classes=10
            )
        elif name == "swin_small_tv":  # torchvision's Swin class, narrow
            m = torchvision.models.SwinTransformer(
                patch_size=[4, 4], embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                window_size=[4, 4], num_classes=10,
            )
        elif name == "timm_vit":
            m = timm.create_model(
                "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=10
            )
        elif name == "timm_deit":
            m = timm.create_model(
                "deit_tiny_distilled_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                num_classes=10,
            )
        elif name == "timm_swin":
            m = timm.create_model(
                "swin_tiny_patch4_window7_224", pretrained=False, img_size=64, window_size=2, embed_dim=16,
                depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), num_classes=10,
            )
        else:
            raise KeyError(name)
        _cache[name] = _reinit_heads(m, seed=len(name))
    return _cache[name]


def _x(size: int, n: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _vit_tokens_to_maps(t: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's reshape_transform for a class-token ViT (written for this test)."""
    side = math.isqrt(t.shape[1] - 1)
    return t[:, 1:, :].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)


def _channels_last_to_maps(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


GRADIENT = [
    (GradCAM, cg.GradCAM),
    (GradCAMPlusPlus, cg.GradCAMPlusPlus),
    (XGradCAM, cg.XGradCAM),
    (LayerCAM, cg.LayerCAM),
    (HiResCAM, cg.HiResCAM),
]

# (model, input size, layer, pytorch-grad-cam reshape_transform)
BACKBONES = {
    "vit_b_16": ("vit_b_16", 64, "encoder.layers.encoder_layer_11.ln_1", _vit_tokens_to_maps),
    # the final norm, channels last; features.7 feeds a LayerNorm, which makes sum_k A_k dy/dA_k = 0
    # (scale invariance): HiResCAM there is float noise in both libraries
    "swin_t": ("swin_t", 128, "norm", _channels_last_to_maps),
}


def _reference(cls: type, model: nn.Module, layer: str, rt, x: torch.Tensor, targets: list[int], **attrs) -> np.ndarray:
    module = dict(model.named_modules())[layer]
    with cls(model=model, target_layers=[module], reshape_transform=rt) as cam:
        for k, v in attrs.items():
            setattr(cam, k, v)
        return cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(t) for t in targets])


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("ref_cls,our_cls", GRADIENT, ids=[c.__name__ for _, c in GRADIENT])
def test_gradient_cams_on_transformers_equal_pytorch_grad_cam(
    backbone: str, ref_cls: type, our_cls: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, size, layer, rt = BACKBONES[backbone]
    model, x = _model(name), _x(size)
    # Same kernels on both sides. Our calls need no parameter gradients, so the
    # nn.MultiheadAttention layers before the target layer take PyTorch's inference fast path,
    # whose kernels round differently (activations at ViT's encoder_layer_11.ln_1 within 5e-7
    # relative); XGrad-CAM divides by sum_ij A^k_ij, as small as 0.018 there (median 5.6), which
    # turned that into 2.9e-4 in the map on a Zen 5 core. With the fast path off in both, the
    # maps agree to 2e-7. This compares the formulas, not the attention kernels.
    monkeypatch.setattr(torch.backends.mha, "get_fastpath_enabled", lambda: False)
    ref = _reference(ref_cls, model, layer, rt, x, [3])
    ours = our_cls(model, layer=layer).attribute(x, target=3, normalize=True)  # reshape detected
    assert ours.shape == (1, 1, size, size)
    assert ref.max() > 0.5 and ref.std() > 0.05  # a non-degenerate map, so the comparison means something
    np.testing.assert_allclose(ours[:, 0].numpy(), ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "name,size,layer,rt",
    [
        ("vit_small_tv", 32, "encoder.layers.encoder_layer_1.ln_1", _vit_tokens_to_maps),
        ("swin_small_tv", 64, "features.7", _channels_last_to_maps),
    ],
)
def test_score_cam_on_transformers_equals_pytorch_grad_cam(name: str, size: int, layer: str, rt) -> None:
    model, x = _model(name), _x(size)
    ref = _reference(ScoreCAM, model, layer, rt, x, [2], batch_size=64)
    ours = cg.ScoreCAM(model, layer=layer).attribute(
        x, target=2, normalize=True, mask_space="normalized", weights="softmax_over_channels", mask_align_corners=True
    )
    assert ref.max() > 0.5 and ref.std() > 0.05
    np.testing.assert_allclose(ours[:, 0].numpy(), ref, rtol=0, atol=1e-4)


def test_explicit_reshapes_equal_the_detected_one() -> None:
    model, x = _model("vit_b_16"), _x(64)
    layer = "encoder.layers.encoder_layer_11.ln_1"
    auto = cg.GradCAM(model, layer=layer).attribute(x, target=1, upsample=False)
    assert auto.shape == (1, 1, 4, 4) and auto.abs().max() > 0
    for reshape in (cg.TokenGrid(prefix=1, grid=(4, 4)), cg.TokenGrid(prefix=1), cg.TokenGrid(grid=(4, 4)),
                    _vit_tokens_to_maps):
        got = cg.GradCAM(model, layer=layer, reshape=reshape).attribute(x, target=1, upsample=False)
        torch.testing.assert_close(got, auto, rtol=0, atol=0)
    # Swin: channels-last detected, equal to the explicit spec, and not the old (N, K=h, w, C) reading
    swin, xs = _model("swin_t"), _x(128)
    cl = cg.GradCAM(swin, layer="features.7").attribute(xs, target=1, upsample=False)
    explicit = cg.GradCAM(swin, layer="features.7", reshape="channels_last").attribute(xs, target=1, upsample=False)
    torch.testing.assert_close(cl, explicit, rtol=0, atol=0)
    assert cl.shape == (1, 1, 4, 4)
    naive = cg.GradCAM(swin, layer="features.7", reshape=None).attribute(xs, target=1, upsample=False)
    assert naive.shape == (1, 1, 4, 768)  # what reading channels-last as channels-first gives


def test_wrong_explicit_reshape_names_the_counts() -> None:
    model, x = _model("vit_b_16"), _x(64)
    layer = "encoder.layers.encoder_layer_11.ln_1"
    with pytest.raises(cg.LayerError, match=r"17 tokens.*2 prefix \+ 4x4 = 18 tokens"):
        cg.GradCAM(model, layer=layer, reshape=cg.TokenGrid(prefix=2, grid=(4, 4))).attribute(x, target=0)
    with pytest.raises(cg.LayerError, match=r"17 - 3 prefix = 14 tokens do not form a grid"):
        cg.GradCAM(model, layer=layer, reshape=cg.TokenGrid(prefix=3)).attribute(x, target=0)
    with pytest.raises(cg.LayerError, match=r"\(N, D, h, w\)"):
        cg.GradCAM(model, layer=layer, reshape=lambda t: t[:, 1:]).attribute(x, target=0)
    with pytest.raises(cg.ConfigError, match="reshape must be"):
        cg.GradCAM(model, layer=layer, reshape="sideways").attribute(x, target=0)


def test_layer_auto_on_transformers() -> None:
    cases = {
        "vit_b_16": (64, "encoder.layers.encoder_layer_11.ln_1"),  # pytorch-grad-cam's blocks[-1].norm1
        "timm_vit": (32, "blocks.1.norm1"),
        "timm_deit": (32, "blocks.1.norm1"),
        "timm_swin": (64, "norm"),
        "swin_t": (128, "permute"),  # the final norm, (N, C, h, w)
    }
    for name, (size, want) in cases.items():
        model = _model(name)
        got = layer_name(model, auto_layer(model, _x(size)))
        assert got == want, name
    vit = _model("vit_b_16")
    (module,) = cg.GradCAM(vit).resolve_layers(_x(64))
    assert module is not vit.conv_proj
    # the map of the auto layer is not zero (the last block's output would be: its patch
    # tokens no longer reach the class token)
    assert cg.GradCAM(vit).attribute(_x(64), target=0).abs().max() > 0
    last = cg.GradCAM(vit, layer="encoder.ln").attribute(_x(64), target=0, relu=False)
    assert last.abs().max() == 0


def test_every_cam_runs_on_token_layers() -> None:
    model, x = _model("vit_small_tv"), _x(32, n=2)
    fast = {"n_samples": 2, "n_steps": 2}
    for method in cg.methods("cam"):
        if method in ("cam", "fullgrad"):
            continue  # CAM needs a GAP-linear head; FullGrad uses every bias layer (its map is at input size)
        inst, opts = make_method(model, method)
        opts = {k: v for k, v in fast.items() if k in _accepted(inst)}
        out = inst.attribute(x, target=[1, 2], upsample=False, **opts)
        assert out.shape == (2, 1, 4, 4), method
        assert torch.isfinite(out).all(), method
    # Ablation-CAM on tokens: the fx split and the full passes agree
    full = cg.AblationCAM(model, layer="encoder.layers.encoder_layer_1.ln_1").attribute(x, target=[1, 2], path="full")
    split = cg.AblationCAM(model, layer="encoder.layers.encoder_layer_1.ln_1").attribute(x, target=[1, 2], path="fx")
    torch.testing.assert_close(split, full, rtol=1e-4, atol=1e-6)
    # Expected Grad-CAM: its expected layer gradient has the reshaped layer's shape
    g = cg.ExpectedGradCAM(model).layer_gradient(x, target=[1, 2], n_samples=2)
    assert g.shape == (2, 24, 4, 4)


def _accepted(inst: object) -> set[str]:
    from cleargrad.evaluation.explainers import _declared

    return _declared(inst)


# --- attention methods --------------------------------------------------------------


def _tiny_vit(seed: int = 0) -> nn.Module:
    """Two blocks, two heads, 16x16 input with 8x8 patches: 1 + 2x2 tokens."""
    torch.manual_seed(seed)
    m = torchvision.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3
    )
    with torch.no_grad():
        m.heads.head.weight.normal_(0, 0.5)
        m.class_token.normal_(0, 0.5)
    return m.eval()


def _tiny_vit_by_hand(m: nn.Module, x: torch.Tensor, probs: list[torch.Tensor] | None = None):
    """The tiny torchvision ViT written out by hand; the attention probabilities are
    explicit tensors (``probs`` collects them)."""
    n = x.shape[0]
    t = F.conv2d(x, m.conv_proj.weight, m.conv_proj.bias, stride=8).flatten(2).transpose(1, 2)
    t = torch.cat([m.class_token.expand(n, -1, -1), t], dim=1) + m.encoder.pos_embedding
    for blk in m.encoder.layers:
        att = blk.self_attention
        h = F.layer_norm(t, (8,), blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
        q, k, v = (h @ att.in_proj_weight.T + att.in_proj_bias).split(8, dim=-1)
        heads = lambda z: z.reshape(n, -1, 2, 4).transpose(1, 2)  # noqa: E731
        a = torch.softmax(heads(q) @ heads(k).transpose(-2, -1) / 2.0, dim=-1)  # sqrt(d_head) = 2
        if probs is not None:
            probs.append(a)
        o = (a @ heads(v)).transpose(1, 2).reshape(n, -1, 8)
        t = t + (o @ att.out_proj.weight.T + att.out_proj.bias)
        h = F.layer_norm(t, (8,), blk.ln_2.weight, blk.ln_2.bias, blk.ln_2.eps)
        t = t + blk.mlp[3](F.gelu(blk.mlp[0](h)))
    t = F.layer_norm(t, (8,), m.encoder.ln.weight, m.encoder.ln.bias, m.encoder.ln.eps)
    return m.heads.head(t[:, 0])


def test_captured_attention_equals_the_hand_computation() -> None:
    m, x = _tiny_vit(), _x(16, n=2)
    hand: list[torch.Tensor] = []
    with torch.no_grad():
        logits = _tiny_vit_by_hand(m, x, hand)
        torch.testing.assert_close(logits, m(x), rtol=1e-5, atol=1e-5)
        with attention_probabilities(m) as maps:
            m(x)
    assert maps.names == [f"encoder.layers.encoder_layer_{i}.self_attention" for i in range(2)]
    for got, want in zip(maps.probs, hand):
        assert got.shape == (2, 2, 5, 5)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_rollout_equals_hand_computation() -> None:
    m, x = _tiny_vit(), _x(16, n=2)
    hand: list[torch.Tensor] = []
    with torch.no_grad():
        _tiny_vit_by_hand(m, x, hand)
    for i in range(2):
        r = np.eye(5)
        for a in hand:  # Abnar & Zuidema: 0.5 * mean-over-heads attention + 0.5 * I, rows renormalised
            ai = 0.5 * a[i].mean(0).double().numpy() + 0.5 * np.eye(5)
            ai = ai / ai.sum(axis=1, keepdims=True)
            r = ai @ r
        want = r[0, 1:].reshape(2, 2)
        got = cg.AttentionRollout(m).attribute(x, upsample=False)[i, 0].double().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        assert np.ptp(want) > 1e-3  # not a constant map
    # the same by registry name, and upsampled to the input
    assert cg.explain(m, x, "rollout").shape == (2, 1, 16, 16)


def test_attention_relevance_equals_the_papers_formula() -> None:
    m, x = _tiny_vit(), _x(16, n=2)
    targets = [2, 0]
    hand: list[torch.Tensor] = []
    logits = _tiny_vit_by_hand(m, x, hand)
    score = logits[torch.arange(2), torch.tensor(targets)].sum()
    grads = torch.autograd.grad(score, hand)
    want = []
    for i in range(2):
        r = torch.eye(5, dtype=torch.float64)
        for a, g in zip(hand, grads):  # Chefer et al. 2021: R += E_h[(grad * A)^+] R
            abar = (g[i] * a[i]).clamp(min=0).mean(0).double()
            r = r + abar @ r
        want.append(r[0, 1:].reshape(2, 2))
    got = cg.AttentionRelevance(m).attribute(x, target=targets, upsample=False)[:, 0].double()
    torch.testing.assert_close(got, torch.stack(want).detach(), rtol=1e-5, atol=1e-8)
    assert float(torch.stack(want).detach().std()) > 1e-5
    # class-specific: another target gives another map
    other = cg.AttentionRelevance(m).attribute(x, target=[0, 1], upsample=False)
    assert not torch.allclose(other, got.float())


def test_timm_attention_fused_and_explicit_paths_agree() -> None:
    """timm blocks compute attention with F.scaled_dot_product_attention (fused) or by hand;
    both paths are read, and give the same maps."""
    for name in ("timm_vit", "timm_deit"):
        m, x = _model(name), _x(32)
        fused = [b.attn.fused_attn for b in m.blocks]
        assert all(fused)
        maps = {}
        try:
            for flag in (True, False):
                for b in m.blocks:
                    b.attn.fused_attn = flag
                maps[flag] = (
                    cg.AttentionRollout(m).attribute(x, upsample=False),
                    cg.AttentionRelevance(m).attribute(x, target=4, upsample=False),
                )
        finally:
            for b, f in zip(m.blocks, fused):
                b.attn.fused_attn = f
        for a, b in zip(maps[True], maps[False]):
            assert a.shape == (1, 1, 4, 4)  # DeiT's 2 prefix tokens (class, distillation) dropped
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
        assert maps[True][1].abs().max() > 0


def test_attention_methods_reject_models_without_global_attention() -> None:
    with pytest.raises(cg.LayerError, match="no self-attention module"):
        cg.AttentionRollout(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()).eval()).attribute(_x(8))
    with pytest.raises(cg.LayerError, match="windowed"):
        cg.AttentionRelevance(_model("timm_swin")).attribute(_x(64), target=0)


# --- model left untouched -----------------------------------------------------------

UNTOUCHED_MODELS = {
    "tv_vit": ("vit_small_tv", 32),
    "tv_swin": ("swin_small_tv", 64),
    "timm_vit": ("timm_vit", 32),
    "timm_deit": ("timm_deit", 32),
    "timm_swin": ("timm_swin", 64),
}
FAST = {"n_samples": 2, "n_steps": 2}


def _methods_for(model_name: str) -> list[str]:
    out = [m for m in cg.methods("cam") if m != "cam"]
    if "swin" not in model_name:
        out += cg.methods("attention")
    return out


CASES = [(k, meth) for k in UNTOUCHED_MODELS for meth in _methods_for(k)]


@pytest.mark.parametrize("model_key,method", CASES)
def test_transformer_left_untouched(model_key: str, method: str) -> None:
    name, size = UNTOUCHED_MODELS[model_key]
    model = _model(name)
    for i, p in enumerate(model.parameters()):
        p.grad = torch.randn_like(p) if i % 3 == 0 else None
    x = _x(size, n=2)
    snap = ModelSnapshot.take(model)
    inst, _ = make_method(model, method)
    opts = {k: v for k, v in FAST.items() if k in _accepted(inst)}
    assert torch.isfinite(inst.attribute(x, target=[0, 1], **opts)).all()
    snap.assert_same(model)
    with pytest.raises(cg.TargetError):
        inst.attribute(x, target=[0, 99], **opts)
    snap.assert_same(model)

    # an error raised inside the forward pass (a hook of the test, in the snapshot)
    last = [m for m in model.modules() if isinstance(m, nn.LayerNorm)][-1]
    assert_untouched_when_forward_raises(model, last, lambda: inst.attribute(x, target=[0, 1], **opts))
    snap.assert_same(model)
    for p in model.parameters():
        p.grad = None


@pytest.mark.parametrize("method", ["attention_rollout", "attention_relevance", "gradcam"])
def test_ambient_inference_mode_gives_the_same_map_on_a_vit(method: str) -> None:
    model, x = _model("timm_vit"), _x(32, n=2)
    ref = cg.explain(model, x, method, target=[0, 1])
    snap = ModelSnapshot.take(model)
    for ambient in (torch.inference_mode, torch.no_grad):
        with ambient():
            out = cg.explain(model, x.clone(), method, target=[0, 1])
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-7)
        snap.assert_same(model)
    assert float(ref.abs().amax()) > 0


# --- command line -------------------------------------------------------------------

VIT_SOURCE = """
import torch
import torchvision


def factory():
    torch.manual_seed(3)
    m = torchvision.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3
    )
    with torch.no_grad():
        m.heads.head.weight.normal_(0, 0.5)
    return m
"""


def test_cli_explains_a_vit_with_layer_reshape_and_attention_methods(tmp_path) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from cleargrad.cli import app
    from cleargrad.evaluation.images import default_preprocess
    from cleargrad.evaluation.modelspec import load_model

    (tmp_path / "vit.py").write_text(VIT_SOURCE)
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    arr = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(images / "a.png")
    spec = f"{tmp_path / 'vit.py'}:factory"
    runner = CliRunner()
    layer = "encoder.layers.encoder_layer_1.ln_1"
    out = tmp_path / "out"
    common = ["explain", "--model", spec, "--images", str(images), "--size", "16", "--target", "1", "-q"]
    r = runner.invoke(app, [*common, "--method", "gradcam,rollout,chefer", "--layer", layer,
                            "--reshape", "tokens:1:2x2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    saved = {p.name: np.load(p) for p in out.glob("*.npy")}
    assert len(saved) == 3
    # the saved Grad-CAM equals the library's with the same layer and an explicit token grid
    model = load_model(spec)
    prep = default_preprocess(model, size=16)
    pixels = torch.from_numpy(np.asarray(Image.open(images / "a.png"), dtype=np.float32) / 255.0)
    x = prep.normalize(pixels.permute(2, 0, 1))[None]
    want = cg.GradCAM(model, layer=layer, reshape=cg.TokenGrid(1, (2, 2))).attribute(x, target=1)
    (grad_file,) = [v for k, v in saved.items() if "gradcam" in k]
    np.testing.assert_allclose(grad_file.reshape(-1), want.numpy().reshape(-1), rtol=1e-5, atol=1e-6)
    # a wrong grid is a one-line error naming the counts
    r = runner.invoke(app, [*common, "--method", "gradcam", "--layer", layer, "--reshape", "tokens:1:3x3",
                            "--out", str(tmp_path / "bad")])
    assert r.exit_code != 0
    assert "5 tokens" in r.output and "1 prefix + 3x3 = 10 tokens" in r.output


# --- GAD with a CAM base and the metrics, on a ViT ------------------------------------


def test_gad_with_a_cam_base_and_metrics_on_a_vit() -> None:
    model, x = _model("vit_small_tv"), _x(32, n=12, seed=5)
    with torch.no_grad():
        y = model(x).argmax(1)
    two = y[:2].tolist() if y[0] != y[1] else [int(y[0]), (int(y[0]) + 1) % 10]
    snap = ModelSnapshot.take(model)
    layer = "encoder.layers.encoder_layer_1.ln_1"
    gad = cg.GAD(
        model, base="gradcam", classes=two, n_support=2, epochs=1, lr=1e-3, batch_size=4, progress=False,
        base_options={"layer": layer, "reshape": cg.TokenGrid(prefix=1, grid=(4, 4))},
    ).fit((x, torch.tensor([two[i % 2] for i in range(12)])))
    m = gad.attribute(x[:2], target=two)
    assert m.shape[0] == 2 and m.shape[-2:] == (32, 32) and torch.isfinite(m).all()
    snap.assert_same(model)
    cam = cg.GradCAM(model, layer=layer).attribute(x[:2], target=two)
    for metric in (cg.metrics.deletion, cg.metrics.insertion):
        v = metric(model, x[:2], cam, target=two, step=64)
        assert v.shape == (2,) and torch.isfinite(v).all()
    snap.assert_same(model)
