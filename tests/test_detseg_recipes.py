"""The detection and segmentation recipes of docs/guides/detection-segmentation.md on real
torchvision models (random init, batch norms calibrated: tests/detseg_zoo.py): Grad-CAM and
a pixel method through each model's target give finite, non-constant maps; a batch equals
each image explained alone; the model is left as found, also when the target raises
mid-call."""

from __future__ import annotations

import pytest
import torch
from detseg_zoo import DET_SIZE, DETECTORS, SEG_SIZE, SEGMENTERS, detector, segmenter
from helpers import ModelSnapshot

import cleargrad as cg

pytest.importorskip("torchvision")


def _informative(maps: torch.Tensor) -> None:
    """Finite, and every image's map varies (not constant, not numerically zero)."""
    assert torch.isfinite(maps).all()
    for m in maps:
        spread = float(m.max() - m.min())
        assert spread > 1e-6 * max(float(m.abs().max()), 1e-30) and float(m.abs().max()) > 1e-8, spread


class _RaisesAfterScoring(cg.Target):
    """Scores like ``inner`` (the forward has run, the hooks are in place, the graph is
    built), then raises: an error in the middle of a method's call."""

    def __init__(self, inner: cg.Target) -> None:
        self.inner = inner

    def score(self, output):
        self.inner.score(output)
        raise RuntimeError("target failed mid-call")


def _raising_leaves_model(model: torch.nn.Module, snap: ModelSnapshot, make, x, target) -> None:
    for method in make:
        with pytest.raises(RuntimeError, match="mid-call"):
            method.attribute(x, target=_RaisesAfterScoring(target), **({"n_steps": 3} if isinstance(
                method, cg.IntegratedGradients) else {}))
        snap.assert_same(model)


@pytest.mark.parametrize("name", list(DETECTORS))
def test_detector_recipe(name: str) -> None:
    model = detector(name)
    layer = DETECTORS[name]
    x = torch.rand(2, 3, DET_SIZE, DET_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        det = model(x)
    # IoU + score of each image's two best detections (pytorch-grad-cam's box target)
    targets = cg.BoxScoreTarget.from_detections(det, top=2)
    assert all(float(t([d])) > 1.0 for t, d in zip(targets, det))  # each matched its own detections
    snap = ModelSnapshot.take(model)

    cam = cg.GradCAM(model, layer=layer).attribute(x, target=targets, relu=False)
    snap.assert_same(model)
    _informative(cam)
    sal = cg.Saliency(model).attribute(x, target=targets)
    snap.assert_same(model)
    _informative(sal)

    # batch = each image alone. The IoU term has a kink where a detection matches its own
    # box (IoU 1): the scores alone (iou=False) are smooth, so both runs differentiate the
    # same function
    scores_only = cg.BoxScoreTarget.from_detections(det, top=2, iou=False)
    batch = cg.GradCAM(model, layer=layer).attribute(x, target=scores_only, relu=False)
    for i in range(2):
        alone = cg.GradCAM(model, layer=layer).attribute(x[i : i + 1], target=scores_only[i], relu=False)
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=2e-3, atol=2e-3 * float(alone.abs().max()))
    snap.assert_same(model)

    if name.startswith("maskrcnn"):
        masks = cg.MaskScoreTarget.from_detections(det, top=1)
        mcam = cg.GradCAM(model, layer=layer).attribute(x, target=masks, relu=False)
        _informative(mcam)
        # the target's value by hand: the mask probabilities of the detection it matched
        assert torch.allclose(masks[0]([det[0]]), det[0]["masks"][0].sum())
        snap.assert_same(model)

    _raising_leaves_model(model, snap, [cg.GradCAM(model, layer=layer), cg.Saliency(model)], x, targets[0])


def test_box_target_matches_by_label_and_empty_detections_raise() -> None:
    """A class-agnostic box regressor (RetinaNet, FCOS, SSD) gives one detection per class on
    the same box: the target matches the detection of its own label, not the first of the
    tie. No detection at all is a TargetError that says how to get some."""
    box = torch.tensor([[10.0, 10.0, 40.0, 40.0]])
    det = {"boxes": box.repeat(2, 1), "labels": torch.tensor([3, 1]), "scores": torch.tensor([0.9, 0.2])}
    t = cg.BoxScoreTarget([1], box)
    torch.testing.assert_close(t([det]), torch.tensor([1.0 + 0.2]))
    assert float(cg.BoxScoreTarget([1], box, iou=False)([det])) == pytest.approx(0.2)
    assert float(cg.BoxScoreTarget([2], box)([det])) == 0.0
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}
    with pytest.raises(cg.TargetError, match="box_score_thresh=0.0"):
        cg.BoxScoreTarget.from_detections([det, empty])
    with pytest.raises(cg.TargetError, match="nothing to explain"):
        cg.BoxScoreTarget([], torch.zeros(0, 4))
    assert float(t([empty])) == 0.0
    top = cg.BoxScoreTarget.from_detections(det, top=1)
    assert top.labels == (3,) and float(top([det])) == pytest.approx(1.9)
    with pytest.raises(cg.TargetError, match="'masks'"):
        cg.MaskScoreTarget([1], box)([det])


def test_a_detector_without_detections_raises_a_target_error() -> None:
    model = detector("ssdlite320_mobilenet_v3_large")
    model.score_thresh = 1.1  # nothing can pass
    x = torch.rand(1, 3, DET_SIZE, DET_SIZE)
    with torch.no_grad():
        det = model(x)
    with pytest.raises(cg.TargetError, match="score_thresh=0.0"):
        cg.BoxScoreTarget.from_detections(det)


def _seg_targets(model: torch.nn.Module, x: torch.Tensor) -> list[cg.SegmentationTarget]:
    """Each image's most frequent predicted class, over the pixels predicted as it."""
    with torch.no_grad():
        pred = model(x)["out"].argmax(dim=1)
    out = []
    for p in pred:
        c = int(p.flatten().mode().values)
        out.append(cg.SegmentationTarget(c, (p == c).float()))
    return out


@pytest.mark.parametrize("name", list(SEGMENTERS))
def test_segmentation_recipe(name: str) -> None:
    # float64: these deep random-init nets are ill-conditioned, and in float32 a batch and its
    # images alone differ by up to 1 % of the map from kernel choice alone (the layout, the
    # batch size), so a float32 comparison would test rounding, not the target binding
    model = segmenter(name, n=2).double()
    layer = SEGMENTERS[name]
    x = torch.rand(2, 3, SEG_SIZE, SEG_SIZE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    targets = _seg_targets(model, x)
    snap = ModelSnapshot.take(model)

    cam = cg.GradCAM(model, layer=layer, output="out").attribute(x, target=targets, relu=False)
    snap.assert_same(model)
    _informative(cam)
    ig = cg.IntegratedGradients(model, output="out").attribute(x, target=targets, n_steps=3)
    snap.assert_same(model)
    _informative(ig)
    for i in range(2):
        alone = cg.GradCAM(model, layer=layer, output="out").attribute(x[i : i + 1], target=targets[i], relu=False)
        torch.testing.assert_close(cam[i : i + 1], alone, rtol=1e-4, atol=1e-4 * float(alone.abs().max()))
        ig_alone = cg.IntegratedGradients(model, output="out").attribute(x[i : i + 1], target=targets[i], n_steps=3)
        torch.testing.assert_close(ig[i : i + 1], ig_alone, rtol=1e-4, atol=1e-4 * float(ig_alone.abs().max()))
    snap.assert_same(model)
    _raising_leaves_model(
        model, snap, [cg.GradCAM(model, layer=layer, output="out"), cg.IntegratedGradients(model, output="out")],
        x, targets[0],
    )


def test_ultralytics_yolo_recipe(tmp_path_factory, monkeypatch) -> None:
    """YOLOv8n from its YAML (offline): EigenCAM on the backbone's SPPF equals
    pytorch-grad-cam's; Grad-CAM and Saliency through a YOLOScoreTarget on the raw
    (N, 4 + C, A) output give real maps; the model is left as found."""
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("yolo")))  # its settings file
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    from PIL import Image

    # importing ultralytics replaces PIL.Image.open process-wide: put Pillow's back afterwards
    monkeypatch.setattr(Image, "open", Image.open)
    pytest.importorskip("ultralytics")
    from detseg_zoo import YOLO_LAYER, YOLO_SIZE, yolo
    from pytorch_grad_cam import EigenCAM as PGEigenCAM
    from torchvision.ops import box_convert

    model = yolo()
    x = torch.rand(2, 3, YOLO_SIZE, YOLO_SIZE, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        pred = model(x)[0]
    assert pred.shape[:2] == (2, 4 + 5)
    snap = ModelSnapshot.take(model)

    eigen = cg.EigenCAM(model, layer=YOLO_LAYER, output=0).attribute(x, normalize=True)
    snap.assert_same(model)
    with PGEigenCAM(model, target_layers=[dict(model.named_modules())[YOLO_LAYER]]) as cam:
        ref = cam(x.clone(), targets=[lambda o: o.sum()] * 2)  # targets unused: EigenCAM is gradient-free
    assert float(torch.as_tensor(ref).std()) > 0.05
    assert float((eigen[:, 0] - torch.as_tensor(ref)).abs().max()) <= 1e-4

    # each image: the class-2 score of the anchors around its own best class-2 box
    targets = []
    for p in pred:
        j = int(p[4 + 2].argmax())
        targets.append(cg.YOLOScoreTarget(2, box_convert(p[:4, j][None], "cxcywh", "xyxy")[0]))
    assert all(float(t(pred[i : i + 1])) > 0 for i, t in enumerate(targets))
    cam = cg.GradCAM(model, layer=YOLO_LAYER, output=0).attribute(x, target=targets, relu=False)
    _informative(cam)
    sal = cg.Saliency(model, output=0).attribute(x, target=targets)
    _informative(sal)
    for i in range(2):
        alone = cg.GradCAM(model, layer=YOLO_LAYER, output=0).attribute(x[i : i + 1], target=targets[i], relu=False)
        torch.testing.assert_close(cam[i : i + 1], alone, rtol=1e-3, atol=1e-3 * float(alone.abs().max()))
    snap.assert_same(model)
    _raising_leaves_model(
        model, snap, [cg.GradCAM(model, layer=YOLO_LAYER, output=0), cg.Saliency(model, output=0)], x, targets[0]
    )
    with pytest.raises(cg.TargetError, match=r"\(N, 4 \+ C, A\)"):
        cg.Saliency(model, output=1).attribute(x, target=targets[0])
