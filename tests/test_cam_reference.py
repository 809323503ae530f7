"""CAM methods equal pytorch-grad-cam 1.5.7 on the same model, input and targets.

pytorch-grad-cam returns numpy maps that are rectified, min–max normalised (eps 1e-7),
resized with cv2 (bilinear, half-pixel centres = ``align_corners=False``) and normalised
again; we compare with ``normalize=True`` (eps 1e-8), max abs diff <= 1e-4.

Where grad-cam deviates from the papers, the comparison uses the option that selects
grad-cam's convention and the paper's form is tested elsewhere (tests/test_cam_invariants.py):
Score-CAM in grad-cam takes a softmax over channels of the target logits, masks the
normalised tensor, and upsamples its masks with ``align_corners=True``
(``UpsamplingBilinear2d``); the paper/official code use the target probability and
``align_corners=False``. Ablation-CAM in grad-cam ablates with 0 only when the layer's
minimum is 0 (true for the post-ReLU layers used here), else with ``min - 1e7``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam import AblationCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import cleargrad as cg
from cleargrad.models import SmallCNN

GRADCAM_SCORE_OPTS = {"mask_space": "normalized", "weights": "softmax_over_channels", "mask_align_corners": True}


def _resnet() -> torch.nn.Module:
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


def _vgg() -> torch.nn.Module:
    torch.manual_seed(2)
    return torchvision.models.vgg11_bn(weights=None, num_classes=10).eval()


def _small() -> torch.nn.Module:
    torch.manual_seed(3)
    return SmallCNN(width=8).eval()


# model factory, input shape, auto layer (checked), a 64-channel layer for the
# many-pass methods (keeps grad-cam's one-pass-per-channel reference fast)
MODELS = {
    "resnet18": (_resnet, (2, 3, 64, 64), "layer4", "layer1"),
    "vgg11_bn": (_vgg, (2, 3, 32, 32), "features.27", "features.2"),
    "small_cnn": (_small, (2, 1, 28, 28), "features", "features"),
}
GRADIENT = [
    (GradCAM, cg.GradCAM),
    (GradCAMPlusPlus, cg.GradCAMPlusPlus),
    (XGradCAM, cg.XGradCAM),
    (LayerCAM, cg.LayerCAM),
    (HiResCAM, cg.HiResCAM),
]
TARGETS = [3, 7]

_cache: dict[str, tuple[torch.nn.Module, torch.Tensor]] = {}


def _model_and_input(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    if name not in _cache:
        make, shape, _, _ = MODELS[name]
        g = torch.Generator().manual_seed(4)
        _cache[name] = (make(), torch.randn(*shape, generator=g))
    return _cache[name]


def _reference(
    cls: type, model: torch.nn.Module, module: torch.nn.Module, x: torch.Tensor, targets: list[int]
) -> np.ndarray:
    with cls(model, [module]) as cam:
        if hasattr(cam, "batch_size"):
            cam.batch_size = 64
        return cam(x.clone(), targets=[ClassifierOutputTarget(t) for t in targets])


def _many_pass_input(x: torch.Tensor) -> torch.Tensor:
    """One image of at most 32x32: the many-pass references run one pass per channel."""
    return x[:1, :, :32, :32].contiguous()


@pytest.mark.parametrize("model_name", list(MODELS))
def test_auto_layer_is_last_conv_block(model_name: str) -> None:
    model, x = _model_and_input(model_name)
    (module,) = cg.GradCAM(model).resolve_layers(x)
    assert module is dict(model.named_modules())[MODELS[model_name][2]]


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("ref_cls,our_cls", GRADIENT, ids=[c.__name__ for _, c in GRADIENT])
def test_gradient_cams_equal_pytorch_grad_cam(model_name: str, ref_cls: type, our_cls: type) -> None:
    model, x = _model_and_input(model_name)
    module = dict(model.named_modules())[MODELS[model_name][2]]
    ref = _reference(ref_cls, model, module, x, TARGETS)
    ours = our_cls(model, layer="auto").attribute(x, target=TARGETS, normalize=True)
    assert ours.shape == (x.shape[0], 1, *x.shape[-2:])
    assert ref.max() > 0.5  # a non-degenerate map, so the comparison means something
    np.testing.assert_allclose(ours[:, 0].numpy(), ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_score_cam_equals_pytorch_grad_cam_with_its_conventions(model_name: str) -> None:
    model, x = _model_and_input(model_name)
    x = _many_pass_input(x)
    name = MODELS[model_name][3]
    ref = _reference(ScoreCAM, model, dict(model.named_modules())[name], x, TARGETS[1:])
    ours = cg.ScoreCAM(model, layer=name).attribute(x, target=TARGETS[1:], normalize=True, **GRADCAM_SCORE_OPTS)
    assert ref.max() > 0.5
    np.testing.assert_allclose(ours[:, 0].numpy(), ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("path", ["fx", "full"])
def test_ablation_cam_equals_pytorch_grad_cam(model_name: str, path: str) -> None:
    model, x = _model_and_input(model_name)
    x = _many_pass_input(x)
    name = MODELS[model_name][3]
    ref = _reference(AblationCAM, model, dict(model.named_modules())[name], x, TARGETS[1:])
    ours = cg.AblationCAM(model, layer=name).attribute(x, target=TARGETS[1:], normalize=True, path=path)
    assert ref.max() > 0.5
    np.testing.assert_allclose(ours[:, 0].numpy(), ref, rtol=0, atol=1e-4)
