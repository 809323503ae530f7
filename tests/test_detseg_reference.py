"""Reference equality on real torchvision segmentation and detection models (random init,
batch norms calibrated: tests/detseg_zoo.py).

* Grad-CAM, Grad-CAM++ and Score-CAM with per-image :class:`SegmentationTarget`s equal
  pytorch-grad-cam with ``SemanticSegmentationTarget`` on FCN-ResNet50 and DeepLabV3
  (MobileNetV3; ResNet50 for Grad-CAM++, see SEG_CASES) (min–max normalised maps, max abs diff <= 1e-4; grad-cam's
  conventions as in tests/test_cam_reference.py).
* Grad-CAM and Grad-CAM++ with :class:`BoxScoreTarget` equal pytorch-grad-cam with
  ``FasterRCNNBoxScoreTarget`` on Faster R-CNN (MobileNetV3-320-FPN) at map level. Without
  the calibration this comparison is vacuous: the maps are of order 1e-13 and grad-cam's
  min–max of numerical noise is noise.
* Saliency, Integrated Gradients and Input×Gradient with a callable target equal Captum
  with the same forward function on DeepLabV3.

The segmentation comparisons run in float64. A deep random-init network whose batch norms
normalise every layer has exploding input and layer gradients: in float32 the same model
gives gradients that differ by 3e-4 to 3e-3 (relative to their maximum) between a batch and
its images alone, so two correct implementations that order their sums differently differ
by that much (measured: Grad-CAM++ maps 6.5e-4 apart on DeepLabV3, IG 0.6%). In float64 the
same comparisons agree to the 1e-4 of the issue with orders of magnitude to spare.
"""

from __future__ import annotations

import pytest
import torch
from detseg_zoo import DET_SIZE, SEG_SIZE, SEGMENTERS, OutTensor, detector, segmenter
from helpers import ModelSnapshot

import cleargrad as cg

pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam import GradCAM as PGGradCAM  # noqa: E402
from pytorch_grad_cam import GradCAMPlusPlus as PGGradCAMPP  # noqa: E402
from pytorch_grad_cam import ScoreCAM as PGScoreCAM  # noqa: E402
from pytorch_grad_cam.utils import model_targets as mt  # noqa: E402

GRADCAM_SCORE_OPTS = {"mask_space": "normalized", "weights": "softmax_over_channels", "mask_align_corners": True}


def _max_diff(ours: torch.Tensor, theirs) -> float:
    return float((ours[:, 0].double() - torch.as_tensor(theirs, dtype=torch.float64)).abs().max())


def _masks(model: torch.nn.Module, x: torch.Tensor, classes: list[int]) -> list[torch.Tensor]:
    with torch.no_grad():
        pred = model(x)["out"].argmax(dim=1)
    masks = [(p == c).to(x.dtype) for p, c in zip(pred, classes)]
    assert all(m.sum() > 0 for m in masks)
    return masks


#: (model, method pair, layer): Score-CAM runs one forward per channel, so it explains an
#: early 40-channel block of DeepLabV3-MobileNetV3 (FCN-ResNet50's smallest block has 256)
SEG_CASES = [
    ("fcn_resnet50", cg.GradCAM, PGGradCAM, SEGMENTERS["fcn_resnet50"]),
    ("fcn_resnet50", cg.GradCAMPlusPlus, PGGradCAMPP, SEGMENTERS["fcn_resnet50"]),
    ("deeplabv3_mobilenet_v3_large", cg.GradCAM, PGGradCAM, SEGMENTERS["deeplabv3_mobilenet_v3_large"]),
    # Grad-CAM++ on a Hardswish layer (MobileNetV3) is ill-conditioned: a channel whose
    # activation sum S is negative has alpha = G^2 / (2 G^2 + S G^3 + eps) near a pole at
    # G = -2/S, so float32 noise of 1e-6 in the gradient moves the normalised map by 1e-3.
    # After a ReLU (ResNet) S >= 0 and the pole is on the side ReLU(G) discards.
    ("deeplabv3_resnet50", cg.GradCAMPlusPlus, PGGradCAMPP, SEGMENTERS["deeplabv3_resnet50"]),
    ("deeplabv3_mobilenet_v3_large", cg.GradCAMPlusPlus, PGGradCAMPP, SEGMENTERS["deeplabv3_mobilenet_v3_large"]),
    ("deeplabv3_mobilenet_v3_large", cg.ScoreCAM, PGScoreCAM, "backbone.4"),
]


@pytest.mark.parametrize("name,ours,theirs,layer", SEG_CASES, ids=[f"{c[0]}-{c[1].__name__}" for c in SEG_CASES])
def test_segmentation_cams_equal_pytorch_grad_cam(name, ours, theirs, layer) -> None:
    model = segmenter(name).double()
    x = torch.rand(2, 3, SEG_SIZE, SEG_SIZE, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        classes = [int(p.flatten().mode().values) for p in model(x)["out"].argmax(dim=1)]
    masks = _masks(model, x, classes)
    opts = GRADCAM_SCORE_OPTS if ours is cg.ScoreCAM else {}
    snap = ModelSnapshot.take(model)
    m = ours(model, layer=layer, output="out").attribute(
        x, target=[cg.SegmentationTarget(c, k) for c, k in zip(classes, masks)], normalize=True, **opts
    )
    snap.assert_same(model)
    module = dict(model.named_modules())[layer]
    with theirs(model=OutTensor(model), target_layers=[module]) as cam:
        if hasattr(cam, "batch_size"):
            cam.batch_size = 64
        ref = cam(x.clone(), targets=[mt.SemanticSegmentationTarget(c, k.numpy()) for c, k in zip(classes, masks)])
    assert float(torch.as_tensor(ref).std()) > 0.05  # a real map, not a blank one both agree on
    assert _max_diff(m, ref) <= 1e-4


@pytest.mark.parametrize("ours,theirs", [(cg.GradCAM, PGGradCAM), (cg.GradCAMPlusPlus, PGGradCAMPP)],
                         ids=["GradCAM", "GradCAMPlusPlus"])
def test_faster_rcnn_box_target_maps_equal_pytorch_grad_cam(ours, theirs) -> None:
    model = detector("fasterrcnn_mobilenet_v3_large_320_fpn")
    x = torch.rand(2, 3, DET_SIZE, DET_SIZE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        det = model(x)
    targets = cg.BoxScoreTarget.from_detections(det, top=3)
    theirs_t = [mt.FasterRCNNBoxScoreTarget(list(t.labels), t.boxes.numpy()) for t in targets]
    for t, r, d in zip(targets, theirs_t, det):
        torch.testing.assert_close(t([d]), r(d).reshape(1).to(t([d]).dtype))
    layer = "backbone.body.16"
    raw = ours(model, layer=layer).attribute_layers(x, target=targets, upsample=False).maps[0]
    assert float(raw.abs().max()) > 1e-6  # not the numerically-zero map of an uncalibrated random init
    m = ours(model, layer=layer).attribute(x, target=targets, normalize=True)
    with theirs(model=model, target_layers=[dict(model.named_modules())[layer]]) as cam:
        ref = cam(x.clone(), targets=theirs_t)
    assert float(torch.as_tensor(ref).std()) > 0.05
    assert _max_diff(m, ref) <= 1e-4


def _close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal to float32 noise: the input gradients of a region's summed scores reach 1e5
    on this model, and a batch and its images alone differ by 1e-5 of that already."""
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def test_pixel_methods_with_a_callable_target_equal_captum_on_deeplabv3() -> None:
    captum_attr = pytest.importorskip("captum.attr")
    model = segmenter("deeplabv3_mobilenet_v3_large").double()
    x = torch.rand(2, 3, SEG_SIZE, SEG_SIZE, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    mask = torch.zeros(SEG_SIZE, SEG_SIZE, dtype=torch.float64)
    mask[16:40, 8:48] = 1

    def f(out: torch.Tensor) -> torch.Tensor:  # class 2's scores over a region, minus class 0's
        return (out[:, 2] * mask).sum(dim=(1, 2)) - 0.5 * (out[:, 0] * mask).sum(dim=(1, 2))

    def fwd(inp: torch.Tensor) -> torch.Tensor:
        return f(model(inp)["out"])

    ours = cg.Saliency(model, output="out").attribute(x, target=f)
    _close(ours, captum_attr.Saliency(fwd).attribute(x, abs=True))
    ours = cg.IntegratedGradients(model, output="out").attribute(x, target=f, n_steps=8, baselines=0.0)
    ref = captum_attr.IntegratedGradients(fwd).attribute(x, baselines=0.0, n_steps=8, method="gausslegendre")
    _close(ours, ref)
    ours = cg.InputXGradient(model, output="out").attribute(x, target=f)
    _close(ours, captum_attr.InputXGradient(fwd).attribute(x))
    # a SegmentationTarget over the same mask is the same score as the callable's first term
    seg = cg.Saliency(model, output="out").attribute(x, target=cg.SegmentationTarget(2, mask))
    ref = captum_attr.Saliency(lambda inp: (model(inp)["out"][:, 2] * mask).sum(dim=(1, 2))).attribute(x, abs=True)
    _close(seg, ref)
