"""``layer="auto"`` on real backbones: never a silently constant or all-zero CAM.

Random-init torchvision and timm models at 64x64 (their last block is 2x2 there); the
CAM is Grad-CAM of the argmax. Before the 1x1 / reaches-the-score rule, torchvision's
ConvNeXt resolved to ``classifier.0`` and timm's to ``head.norm`` (1x1 maps: one constant
per image), timm's MobileNetV3 to ``act2`` (1x1), a segmentation model with an auxiliary
head to ``aux_classifier`` (does not feed ``out``).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision.models as tvm
import torchvision.models.segmentation as seg

import cleargrad as cg
from cleargrad.cam.blank import BlankMapWarning, blank_images
from cleargrad.core import find_layer, layer_name

timm = pytest.importorskip("timm")

CLASSIFIERS = {
    "tv_convnext_tiny": (lambda: tvm.convnext_tiny(num_classes=10), "features"),
    "tv_mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(num_classes=10), "features"),
    "tv_efficientnet_b0": (lambda: tvm.efficientnet_b0(num_classes=10), "features"),
    "tv_regnet_y_400mf": (lambda: tvm.regnet_y_400mf(num_classes=10), "trunk_output"),
    "tv_densenet121": (lambda: tvm.densenet121(num_classes=10), "features"),
    "tv_vgg11": (lambda: tvm.vgg11(num_classes=10), "features.19"),
    "tv_resnet18": (lambda: tvm.resnet18(num_classes=10), "layer4"),
    "timm_convnext_atto": (lambda: timm.create_model("convnext_atto", num_classes=10), "norm_pre"),
    "timm_mobilenetv3_small_050": (lambda: timm.create_model("mobilenetv3_small_050", num_classes=10), "blocks"),
    "timm_efficientnet_b0": (lambda: timm.create_model("efficientnet_b0", num_classes=10), "bn2"),
    "timm_vit_tiny": (
        lambda: timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=10), "blocks.11.norm1"),
    "timm_deit_tiny": (
        lambda: timm.create_model("deit_tiny_patch16_224", img_size=64, num_classes=10), "blocks.11.norm1"),
    "timm_swin_tiny": (
        lambda: timm.create_model("swin_tiny_patch4_window7_224", img_size=64, window_size=2, num_classes=10),
        "norm"),
}


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_auto_layer_gives_a_map_that_explains_something(name: str) -> None:
    build, expected = CLASSIFIERS[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    cam = cg.GradCAM(model, layer="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # timm / torchvision construction notes
        warnings.simplefilter("error", BlankMapWarning)
        layers = cam.attribute_layers(x, upsample=False, relu=False)
    assert layers.layers == (expected,)
    low = layers.maps[0]
    assert low.shape[-2] * low.shape[-1] > 1
    assert not bool(blank_images(low).all()), f"{name}: the signed map at {expected} is constant"


SEGMENTERS = {
    "fcn_resnet50_aux": (lambda: seg.fcn_resnet50(weights=None, weights_backbone=None, aux_loss=True, num_classes=5),
                         "classifier.3"),
    "deeplabv3_mobilenet_v3_large": (
        lambda: seg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5), "classifier.3"),
    "lraspp_mobilenet_v3_large": (
        lambda: seg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5), "classifier.cbr"),
}


@pytest.mark.parametrize("name", list(SEGMENTERS))
def test_auto_layer_on_segmentation_skips_aux_and_logit_heads(name: str) -> None:
    build, expected = SEGMENTERS[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    layer = find_layer(model, "auto", example=x, output="out")
    assert layer_name(model, layer) == expected
    # the chosen layer explains a class's pixel sum through the same model (today's output= callable)
    cam = cg.GradCAM(model, layer=layer, output=lambda o: o["out"].sum(dim=(2, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BlankMapWarning)
        m = cam.attribute(x, target=1, upsample=False, relu=False)
    assert not bool(blank_images(m).all())


def test_only_1x1_maps_is_a_layer_error() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 4, stride=4), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4, 2)
    ).eval()
    with pytest.raises(cg.LayerError, match="only 1x1 feature maps"):
        find_layer(model, "auto", example=torch.rand(1, 3, 4, 4))


def test_a_user_chosen_1x1_layer_warns_that_the_map_is_blank() -> None:
    torch.manual_seed(0)
    model = tvm.convnext_tiny(num_classes=10).eval()
    with pytest.warns(BlankMapWarning, match="'classifier.0'"):
        cg.GradCAM(model, layer="classifier.0").attribute(torch.rand(2, 3, 64, 64))
