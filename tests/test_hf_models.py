"""HuggingFace ``transformers`` image classifiers: every method without ``output=``,
``layer="auto"`` on ViT/DeiT/Swin/ConvNeXt, Grad-CAM against pytorch-grad-cam, attention
rollout and relevance against a hand computation from ``output_attentions``, the model
left untouched (its config included) and the command line on a config-built model.

Tiny configs at random init (nothing is downloaded), 32x32 inputs.
"""

from __future__ import annotations

import copy
import json
import math
from collections import namedtuple

import numpy as np
import pytest
import torch
import transformers
from helpers import ModelSnapshot, assert_untouched_when_forward_raises
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import cleargrad as cg
from cleargrad.api import make_method
from cleargrad.core import layer_name
from cleargrad.evaluation.explainers import _declared
from cleargrad.models.hf import hf_model

VIT = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
           intermediate_size=64, num_labels=5)
CONFIGS = {
    "vit": lambda: transformers.ViTConfig(**VIT),
    "deit": lambda: transformers.DeiTConfig(**VIT),  # DeiTForImageClassificationWithTeacher: 2 prefix tokens
    "swin": lambda: transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                                            num_heads=[1, 2], window_size=4, num_labels=5),
    "convnext": lambda: transformers.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=5),
}
CLASSES = {
    "vit": transformers.ViTForImageClassification,
    "deit": transformers.DeiTForImageClassificationWithTeacher,
    "swin": transformers.SwinForImageClassification,
    "convnext": transformers.ConvNextForImageClassification,
}
# the layer layer="auto" resolves to, and pytorch-grad-cam's reshape_transform for it
AUTO_LAYERS = {
    "vit": "vit.layers.1.layernorm_before",  # the input of the last attention: its patch tokens reach CLS
    "deit": "deit.layers.1.layernorm_before",
    "swin": "swin.layernorm",  # (N, L, C) tokens, no class token, average-pooled
    "convnext": "convnext.encoder.stages.1",  # (N, C, h, w), the last stage before the pooled norm
}
_cache: dict[str, nn.Module] = {}


def _model(name: str) -> nn.Module:
    if name not in _cache:
        torch.manual_seed(7)
        m = CLASSES[name](CONFIGS[name]())
        with torch.no_grad():  # a head of the usual scale, so the maps are far from float noise
            for p in m.named_parameters():
                if p[0].startswith(("classifier", "distillation_classifier", "cls_classifier")) and p[1].dim() == 2:
                    p[1].normal_(0, 0.5)
        _cache[name] = m.eval()
    return _cache[name]


def _x(n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _logits(o: object) -> torch.Tensor:
    return o.logits  # type: ignore[attr-defined]


class Logits(nn.Module):
    """The HF model with its logits as output (for pytorch-grad-cam)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.training = model.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def _options(inst: object, x: torch.Tensor) -> dict:
    declared = _declared(inst)
    opts = {"n_samples": 3, "n_steps": 3, "internal_batch_size": 64}
    opts = {k: v for k, v in opts.items() if k in declared}
    if "references" in declared:
        opts["references"] = torch.zeros(2, *x.shape[1:])
    if "baselines" in declared and type(inst).__name__ == "DeepLiftShap":
        opts["baselines"] = torch.zeros(2, *x.shape[1:])
    if type(inst).__name__ in ("KernelShap", "Lime"):
        opts["n_samples"] = 16
    return opts


def _run(model: nn.Module, method: str, x: torch.Tensor, **kw: object) -> torch.Tensor:
    inst, _ = make_method(model, method, **kw)
    opts = _options(inst, x)
    if "generator" in _declared(inst):
        opts["generator"] = torch.Generator().manual_seed(0)
    return inst.attribute(x, target=[1, 3], **opts)


# --- every method, no output= -----------------------------------------------------------


@pytest.mark.parametrize("method", cg.methods())
def test_every_method_on_hf_vit_equals_the_explicit_logits_selector(method: str) -> None:
    model, x = _model("vit"), _x()
    ours = _run(model, method, x)
    want = _run(model, method, x, output=_logits)
    assert torch.isfinite(ours).all()
    assert torch.equal(ours, want), method


@pytest.mark.parametrize("name", ["deit", "swin", "convnext"])
@pytest.mark.parametrize("method", ["gradcam", "scorecam", "layercam", "saliency", "integrated_gradients"])
def test_methods_on_other_hf_models_equal_the_explicit_selector(name: str, method: str) -> None:
    model, x = _model(name), _x()
    ours = _run(model, method, x)
    assert torch.equal(ours, _run(model, method, x, output=_logits))
    assert float(ours.flatten(1).std(dim=1).min()) > 0  # a map, not a constant


def test_default_output_rule() -> None:
    """output=None takes `.logits` of an object that has them; a plain dict stays as it is."""
    base = _model("convnext")
    x = _x()
    want = cg.Saliency(base, output=_logits).attribute(x, target=[1, 3])

    class NamedOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = base

        def forward(self, x: torch.Tensor):  # noqa: ANN201
            return namedtuple("Out", "loss logits")(None, self.m(x).logits)

    class DictOut(NamedOut):
        def forward(self, x: torch.Tensor):  # noqa: ANN201
            return {"logits": self.m(x).logits}

    torch.testing.assert_close(cg.Saliency(NamedOut().eval()).attribute(x, target=[1, 3]), want)
    with pytest.raises(cg.InputError, match="output="):
        cg.Saliency(DictOut().eval()).attribute(x, target=[1, 3])
    # target objects score the logits too
    got = cg.GradCAM(base).attribute(x, target=[cg.SoftmaxTarget(1), cg.SoftmaxTarget(3)])
    torch.testing.assert_close(got, cg.GradCAM(Logits(base)).attribute(x, target=[cg.SoftmaxTarget(1),
                                                                                  cg.SoftmaxTarget(3)]))


# --- layer="auto" and pytorch-grad-cam ----------------------------------------------------


def _tokens_to_maps(prefix: int):  # noqa: ANN202
    def rt(t: torch.Tensor) -> torch.Tensor:  # pytorch-grad-cam's reshape_transform, written for this test
        side = math.isqrt(t.shape[1] - prefix)
        return t[:, prefix:].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)

    return rt


RESHAPES = {"vit": _tokens_to_maps(1), "deit": _tokens_to_maps(2), "swin": _tokens_to_maps(0), "convnext": None}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_layer_auto_on_hf_models(name: str) -> None:
    model, x = _model(name), _x()
    cam = cg.GradCAM(model)
    (module,) = cam.resolve_layers(x)
    assert layer_name(model, module) == AUTO_LAYERS[name]
    m = cam.attribute(x, target=[1, 3], upsample=False)
    assert m.shape == (2, 1, 4, 4)
    assert float(m.flatten(1).std(dim=1).min()) > 0


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("ref_cls,our_cls", [(GradCAM, cg.GradCAM), (GradCAMPlusPlus, cg.GradCAMPlusPlus)],
                         ids=["gradcam", "gradcam_pp"])
def test_gradient_cams_on_hf_models_equal_pytorch_grad_cam(name: str, ref_cls: type, our_cls: type) -> None:
    model, x = _model(name), _x(n=1)
    module = dict(model.named_modules())[AUTO_LAYERS[name]]
    with ref_cls(model=Logits(model), target_layers=[module], reshape_transform=RESHAPES[name]) as cam:
        ref = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(3)])
    ours = our_cls(model).attribute(x, target=3, normalize=True)  # layer and reshape: auto
    assert ref.max() > 0.5 and ref.std() > 0.05
    np.testing.assert_allclose(ours[:, 0].numpy(), ref, rtol=0, atol=1e-4)


# --- attention methods ------------------------------------------------------------------


def _eager(model: nn.Module) -> nn.Module:
    c = copy.deepcopy(model)
    c.set_attn_implementation("eager")
    return c.eval()


@pytest.mark.parametrize("name", ["vit", "deit"])
def test_attention_rollout_equals_the_hand_computation_from_output_attentions(name: str) -> None:
    model, x = _model(name), _x()
    assert model.config._attn_implementation == "sdpa"
    eager = _eager(model)
    with torch.no_grad():
        atts = eager(x, output_attentions=True).attentions
    assert len(atts) == 2
    prefix = 1 if name == "vit" else 2
    t = atts[0].shape[-1]
    for model_read in (model, eager):  # the sdpa path (computed by definition) and the eager one
        got = cg.AttentionRollout(model_read).attribute(x, upsample=False)[:, 0].double().numpy()
        for i in range(2):
            r = np.eye(t)
            for a in atts:  # Abnar & Zuidema: 0.5 * mean-over-heads + 0.5 * I, rows renormalised
                ai = 0.5 * a[i].mean(0).double().numpy() + 0.5 * np.eye(t)
                ai = ai / ai.sum(axis=1, keepdims=True)
                r = ai @ r
            want = r[0, prefix:].reshape(4, 4)
            np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-7)
            assert np.ptp(want) > 1e-4


def test_attention_relevance_equals_the_papers_formula_from_output_attentions() -> None:
    model, x = _model("vit"), _x()
    eager = _eager(model)
    targets = [1, 3]
    out = eager(x.clone().requires_grad_(True), output_attentions=True)
    atts = out.attentions
    grads = torch.autograd.grad(out.logits[torch.arange(2), torch.tensor(targets)].sum(), atts)
    want = []
    for i in range(2):
        r = torch.eye(17, dtype=torch.float64)
        for a, g in zip(atts, grads):  # Chefer et al. 2021: R += E_h[(grad * A)^+] R
            r = r + (g[i] * a[i]).clamp(min=0).mean(0).double() @ r
        want.append(r[0, 1:].reshape(4, 4))
    want_t = torch.stack(want).detach()
    assert float(want_t.std()) > 1e-6
    for m in (model, eager):
        got = cg.AttentionRelevance(m).attribute(x, target=targets, upsample=False)[:, 0].double()
        torch.testing.assert_close(got, want_t, rtol=1e-4, atol=1e-9)


def test_attention_methods_refuse_what_they_cannot_read() -> None:
    x = _x()
    with pytest.raises(cg.LayerError, match="no self-attention module"):
        cg.AttentionRollout(_model("swin")).attribute(x)  # windowed attention
    flex = copy.deepcopy(_model("vit"))
    flex.config._attn_implementation = "flex_attention"
    with pytest.raises(cg.LayerError, match="attn_implementation='sdpa' or 'eager'"):
        cg.AttentionRelevance(flex).attribute(x, target=1)


# --- the model left untouched -------------------------------------------------------------

UNTOUCHED = ["gradcam", "scorecam", "ablationcam", "saliency", "integrated_gradients", "guided_backprop",
             "attention_rollout", "attention_relevance"]


def _config_state(model: nn.Module) -> dict:
    c = model.config
    return {"attn": c._attn_implementation, "output_attentions": c.output_attentions,
            "output_hidden_states": c.output_hidden_states, "return_dict": c.return_dict,
            "json": c.to_json_string()}


@pytest.mark.parametrize("method", UNTOUCHED)
def test_hf_model_left_untouched(method: str) -> None:
    model, x = _model("vit"), _x()
    for i, p in enumerate(model.parameters()):
        p.grad = torch.randn_like(p) if i % 3 == 0 else None
    snap, config = ModelSnapshot.take(model), _config_state(model)
    inst, _ = make_method(model, method)
    opts = _options(inst, x)
    assert torch.isfinite(inst.attribute(x, target=[0, 1], **opts)).all()
    snap.assert_same(model)
    with pytest.raises(cg.TargetError):
        inst.attribute(x, target=[0, 99], **opts)

    assert_untouched_when_forward_raises(model, model.vit.layernorm, lambda: inst.attribute(x, target=[0, 1], **opts))
    snap.assert_same(model)
    assert _config_state(model) == config
    for p in model.parameters():
        p.grad = None


# --- building from a config, and the command line ---------------------------------------------


def test_hf_model_builds_from_a_config_file_or_folder(tmp_path) -> None:  # noqa: ANN001
    cfg = CONFIGS["vit"]()
    cfg.save_pretrained(tmp_path / "vit")
    torch.manual_seed(3)
    a = hf_model(tmp_path / "vit")
    torch.manual_seed(3)
    b = hf_model(tmp_path / "vit" / "config.json")
    assert type(a) is transformers.ViTForImageClassification and not a.training
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    a.save_pretrained(tmp_path / "saved")  # a folder with weights: loaded, not drawn at random
    torch.manual_seed(99)
    c = hf_model(tmp_path / "saved")
    for k, v in a.state_dict().items():
        assert torch.equal(v, c.state_dict()[k]), k
    assert cfg._attn_implementation_internal is None  # the caller's config untouched
    # the command line's preprocessing: the config's image size, the image processor's mean/std
    from cleargrad.evaluation.images import default_preprocess
    from cleargrad.models.hf import hf_normalization

    assert hf_normalization(c) is None and default_preprocess(c).mean == (0.485, 0.456, 0.406)
    transformers.ViTImageProcessor(image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.3, 0.4]).save_pretrained(
        tmp_path / "saved"
    )
    prep = default_preprocess(hf_model(tmp_path / "saved"))
    assert (prep.size, prep.mean, prep.std) == (32, (0.5, 0.4, 0.3), (0.2, 0.3, 0.4))
    assert default_preprocess(hf_model(tmp_path / "saved"), mean=(0.1, 0.1, 0.1)).mean == (0.1, 0.1, 0.1)
    with pytest.raises(cg.DataError, match="config.json"):
        hf_model(tmp_path / "missing")
    with pytest.raises(cg.ConfigError, match="image classifier"):
        hf_model(transformers.BertConfig(num_hidden_layers=1, hidden_size=8, num_attention_heads=2,
                                         intermediate_size=8))


def test_cli_explains_and_evaluates_a_config_built_hf_model(tmp_path) -> None:  # noqa: ANN001
    from PIL import Image
    from typer.testing import CliRunner

    from cleargrad.cli import app
    from cleargrad.evaluation.images import default_preprocess
    from cleargrad.evaluation.modelspec import load_model

    CONFIGS["vit"]().save_pretrained(tmp_path / "vit")
    images = tmp_path / "images"
    images.mkdir()
    arr = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(images / "a.png")
    spec = f"hf:{tmp_path / 'vit'}"
    runner = CliRunner()
    out = tmp_path / "out"
    r = runner.invoke(app, ["explain", "--model", spec, "--images", str(images), "--target", "1", "-q",
                            "--method", "gradcam,rollout,chefer,saliency", "--out", str(out)])
    assert r.exit_code == 0, r.output
    saved = {p.name: np.load(p) for p in out.glob("*.npy")}
    assert len(saved) == 4
    model = load_model(spec)  # the same seed: the same random weights
    prep = default_preprocess(model)
    assert prep.size == 32  # the config's image_size, not 224
    pixels = torch.from_numpy(np.asarray(Image.open(images / "a.png"), dtype=np.float32) / 255.0)
    x = prep.normalize(pixels.permute(2, 0, 1))[None]
    for method, key in (("gradcam", "gradcam"), ("attention_relevance", "attention_relevance")):
        want = cg.explain(model, x, method, target=1)
        (got,) = [v for k, v in saved.items() if k.endswith(f"__{key}.npy")]
        np.testing.assert_allclose(got.reshape(-1), want.numpy().reshape(-1), rtol=1e-5, atol=1e-6)
    rows = json.loads((out / "manifest.json").read_text())["rows"]
    assert {row["class_index"] for row in rows} == {1}
    store = tmp_path / "s.db"
    r = runner.invoke(app, ["evaluate", "--model", spec, "-d", str(images), "--methods", "gradcam,rollout",
                            "--metrics", "deletion,average_drop", "-s", str(store)])
    assert r.exit_code == 0, r.output
    assert "4 new row(s)" in r.output and "random weights" in r.output
    r = runner.invoke(app, ["explain", "--model", f"hf:{tmp_path / 'nope'}", "--images", str(images),
                            "--method", "gradcam", "--out", str(tmp_path / "o2")])
    assert r.exit_code != 0 and "config.json" in r.output
    r = runner.invoke(app, ["explain", "--model", spec, "--images", str(images), "--size", "48",
                            "--method", "gradcam", "--out", str(tmp_path / "o3")])
    assert r.exit_code != 0 and "--size" in r.output


def test_the_guides_hf_example_runs() -> None:
    """docs/guides/transformers.md, section "HuggingFace models": its Python snippet as written."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "transformers.md").read_text(encoding="utf-8")
    section = page.split("## HuggingFace models", 1)[1]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    ns: dict = {}
    exec(compile(code, "transformers.md", "exec"), ns)
    assert ns["m"].shape == (2, 1, 32, 32) and ns["r"].shape == (2, 1, 32, 32) and ns["s"].shape == (2,)
