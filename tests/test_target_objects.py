"""Target objects on every method: bound to their image through every expansion, equal to
class indices where they mean the same, and equal to pytorch-grad-cam / Captum targets."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import ModelSnapshot, tiny_cnn
from test_model_untouched import CNN_METHODS, _opts
from torch import nn

import cleargrad as cg
from cleargrad.api import make_method
from cleargrad.core.target_objects import (
    BinaryTarget,
    ClassTarget,
    MultiLabelTarget,
    RegressionTarget,
    SegmentationTarget,
    SimilarityTarget,
    SoftmaxTarget,
    Target,
)


def _run(model: nn.Module, method: str, x: torch.Tensor, target, seed: int = 0) -> torch.Tensor:
    inst, opts = make_method(model, method, **_opts(method))
    if "generator" in inst.option_names():
        opts["generator"] = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return inst.attribute(x, target=target, **opts)


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> None:
    scale = b.abs().max().clamp_min(1e-12)
    assert float((a - b).abs().max() / scale) <= rtol


@pytest.mark.parametrize("method", CNN_METHODS)
def test_per_image_class_targets_equal_class_indices(method: str) -> None:
    """Each image keeps its own target through IG steps, noise samples, masks and chunks:
    a wrong row binding would score image 1's rows with image 0's class."""
    model = tiny_cnn(seed=3)
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    ref = _run(model, method, x, [0, 3])
    got = _run(model, method, x, [ClassTarget(0), ClassTarget(3)])
    _close(got, ref)
    one = _run(model, method, x, ClassTarget(2))
    _close(one, _run(model, method, x, 2))


class TinySegNet(nn.Module):
    """(N, 1, 12, 12) -> (N, 3, 12, 12) per-pixel class scores."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Conv2d(6, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


#: methods that explain a class through its classifier weights or its rivals refuse other targets
SEG_SKIP = {m for m in CNN_METHODS if cg.core.get_method(m).cls.class_targets_only}


def _draws_randomly(method: str) -> bool:
    """Whether the method samples (a batch and one image then draw differently; the
    per-image binding of those methods is covered by the class-target test above)."""
    inst, _ = make_method(TinySegNet().eval(), method)
    return "generator" in inst.option_names()


@pytest.mark.parametrize(
    "method", [m for m in CNN_METHODS if m not in SEG_SKIP and not _draws_randomly(m)]
)
def test_segmentation_targets_per_image_equal_each_image_alone(method: str) -> None:
    model = TinySegNet().eval()
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(6))
    masks = [torch.zeros(12, 12), torch.zeros(12, 12)]
    masks[0][2:6, 2:6] = 1
    masks[1][6:11, 5:12] = 1
    targets = [SegmentationTarget(1, masks[0]), SegmentationTarget(2, masks[1])]
    kw = {"layer": "features"} if cg.core.get_method(method).family == "cam" else {}
    inst, opts = make_method(model, method, **kw, **_opts(method))
    if "references" in opts:
        opts["references"] = opts["references"][:1]
    if method == "scorecam":
        opts["weights"] = "logit"  # the alone reference softmaxes over its 3 classes otherwise
    snap = ModelSnapshot.take(model)
    batch = inst.attribute(x, target=targets, **opts)
    snap.assert_same(model)
    for i in range(2):
        # the same score written by hand as an output selector, image alone
        alone_inst, _ = make_method(
            model, method, output=lambda o, m=masks[i]: (o * m).sum(dim=(2, 3)), **kw, **_opts(method)
        )
        alone = alone_inst.attribute(x[i : i + 1], target=[1, 2][i], **opts)
        _close(batch[i : i + 1], alone, rtol=2e-5)


def test_bad_target_objects_get_target_errors_and_leave_the_model_as_found() -> None:
    model = tiny_cnn(seed=3)
    snap = ModelSnapshot.take(model)
    x = torch.randn(3, 1, 12, 12)
    with pytest.raises(cg.TargetError, match="3 images"):
        cg.Saliency(model).attribute(x, target=[ClassTarget(0), ClassTarget(1)])
    with pytest.raises(cg.TargetError, match="out of range"):
        cg.GradCAM(model).attribute(x, target=ClassTarget(9))
    with pytest.raises(cg.TargetError, match="one score per row"):
        cg.Saliency(model).attribute(x, target=lambda out: out.sum())
    with pytest.raises(cg.TargetError, match=r"\(N, C, H, W\)"):
        cg.IntegratedGradients(model).attribute(x, target=SegmentationTarget(1), n_steps=3)

    with pytest.raises(cg.TargetError, match="class indices"):
        cg.CAM(model).attribute(x, target=SoftmaxTarget(1))
    torch.testing.assert_close(
        cg.CAM(model).attribute(x, target=[ClassTarget(1), ClassTarget(2), ClassTarget(0)]),
        cg.CAM(model).attribute(x, target=[1, 2, 0]),
    )

    class Raising(Target):
        def score(self, output):
            raise RuntimeError("target failed mid-call")

    for method in ("saliency", "gradcam", "scorecam", "integrated_gradients", "smoothgrad"):
        inst, opts = make_method(model, method, **_opts(method))
        before = {k: v for k, v in vars(inst).items() if k != "_auto"}
        with pytest.raises(RuntimeError, match="mid-call"):
            inst.attribute(x, target=Raising(), **opts)
        snap.assert_same(model)
        assert {k: v for k, v in vars(inst).items() if k != "_auto"} == before  # selector and class count restored


def test_target_object_scores_by_hand() -> None:
    out = torch.tensor([[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]])
    assert torch.equal(ClassTarget(1)(out), torch.tensor([2.0, -0.5]))
    torch.testing.assert_close(SoftmaxTarget(2)(out), out.softmax(1)[:, 2])
    torch.testing.assert_close(MultiLabelTarget([0, 2])(out), torch.tensor([0.0, 3.5]))
    torch.testing.assert_close(MultiLabelTarget([0, 2], sigmoid=True)(out), out[:, [0, 2]].sigmoid().sum(1))
    assert torch.equal(BinaryTarget(0)(out[:, :1]), torch.tensor([-1.0, -0.5]))
    assert torch.equal(BinaryTarget(1, index=2)(out), torch.tensor([-1.0, 3.0]))
    assert torch.equal(RegressionTarget(sign=-1)(out[:, 0]), torch.tensor([-1.0, -0.5]))
    e = torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(SimilarityTarget(e)(out), out[:, 0] / out.norm(dim=1))
    seg = torch.arange(2 * 2 * 2 * 2, dtype=torch.float32).view(2, 2, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert torch.equal(SegmentationTarget(1, mask)(seg), torch.tensor([4.0 + 7.0, 12.0 + 15.0]))


# ---------------------------------------------------------------- reference libraries
gradcam_lib = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam import GradCAM as PGGradCAM  # noqa: E402
from pytorch_grad_cam import GradCAMPlusPlus as PGGradCAMPP  # noqa: E402
from pytorch_grad_cam import ScoreCAM as PGScoreCAM  # noqa: E402
from pytorch_grad_cam.utils import model_targets as mt  # noqa: E402


def _max_diff(ours: torch.Tensor, theirs) -> float:
    """Max abs difference of min-max normalised maps (pytorch-grad-cam returns them so; see
    tests/test_cam_reference.py for its resizing and eps)."""
    return float((ours[:, 0] - torch.as_tensor(theirs, dtype=torch.float32)).abs().max())


GRADCAM_SCORE_OPTS = {"mask_space": "normalized", "weights": "softmax_over_channels", "mask_align_corners": True}
PAIRS = [(cg.GradCAM, PGGradCAM), (cg.GradCAMPlusPlus, PGGradCAMPP), (cg.ScoreCAM, PGScoreCAM)]


class SegAsDictNet(nn.Module):
    """A segmentation model returning {'out': (N, C, H, W)} like torchvision's."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinySegNet()

    def forward(self, x: torch.Tensor) -> dict:
        return {"out": self.net(x)}


class _Unwrap(nn.Module):  # pytorch-grad-cam needs a tensor output (its segmentation tutorial wraps the model so)
    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)["out"]


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_segmentation_target_equals_pytorch_grad_cam(ours, theirs) -> None:
    model = SegAsDictNet().eval()
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(8))
    masks = [(torch.rand(12, 12, generator=torch.Generator().manual_seed(9 + i)) > 0.5).float() for i in range(2)]
    opts = GRADCAM_SCORE_OPTS if ours is cg.ScoreCAM else {}
    m = ours(model, layer="net.features", output="out").attribute(
        x, target=[SegmentationTarget(1, masks[0]), SegmentationTarget(2, masks[1])], normalize=True, **opts
    )
    wrapped = _Unwrap(model)
    with theirs(model=wrapped, target_layers=[model.net.features]) as cam:
        ref = cam(x, targets=[mt.SemanticSegmentationTarget(1, masks[0].numpy()),
                              mt.SemanticSegmentationTarget(2, masks[1].numpy())])
    assert _max_diff(m, ref) <= 1e-4


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=[p[0].__name__ for p in PAIRS])
@pytest.mark.parametrize(
    "kind", ["softmax", "binary", "similarity"],
)
def test_classifier_targets_equal_pytorch_grad_cam(ours, theirs, kind: str) -> None:
    model = tiny_cnn(seed=10)
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(11))
    if kind == "softmax":
        mine, ref_t = [SoftmaxTarget(1), SoftmaxTarget(4)], [mt.ClassifierOutputSoftmaxTarget(1),
                                                             mt.ClassifierOutputSoftmaxTarget(4)]
        net = model
    elif kind == "binary":
        net = nn.Sequential(model, nn.Linear(5, 1)).eval()
        torch.manual_seed(12)
        mine, ref_t = [BinaryTarget(1), BinaryTarget(0)], [mt.BinaryClassifierOutputTarget(1),
                                                          mt.BinaryClassifierOutputTarget(0)]
    else:
        net = model
        concept = torch.randn(5, generator=torch.Generator().manual_seed(13))
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: F401

        class Sim:  # pytorch-grad-cam's SimilarityToConceptTarget, on one image's output
            def __init__(self, f):
                self.f = f

            def __call__(self, o):
                return torch.nn.functional.cosine_similarity(o, self.f, dim=0)

        mine, ref_t = SimilarityTarget(concept), [Sim(concept), Sim(concept)]
    layer = "features" if kind != "binary" else "0.features"
    opts = GRADCAM_SCORE_OPTS if ours is cg.ScoreCAM else {}
    m = ours(net, layer=layer).attribute(x, target=mine, normalize=True, **opts)
    target_layer = dict(net.named_modules())[layer]
    with theirs(model=net, target_layers=[target_layer]) as cam:
        ref = cam(x, targets=ref_t)
    assert _max_diff(m, ref) <= 1e-4


def test_callable_target_pixel_methods_equal_captum() -> None:
    captum_attr = pytest.importorskip("captum.attr")
    model = tiny_cnn(seed=14)
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(15))

    def f(out: torch.Tensor) -> torch.Tensor:
        return out[:, 1] - 0.5 * out[:, 3]

    def fwd(inp: torch.Tensor) -> torch.Tensor:
        return f(model(inp))

    ours = cg.Saliency(model).attribute(x, target=f)
    ref = captum_attr.Saliency(fwd).attribute(x, abs=True)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    ours = cg.IntegratedGradients(model).attribute(x, target=f, n_steps=16, baselines=0.0)
    ref = captum_attr.IntegratedGradients(fwd).attribute(x, baselines=0.0, n_steps=16, method="gausslegendre")
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)
    ours = cg.InputXGradient(model).attribute(x, target=f)
    ref = captum_attr.InputXGradient(fwd).attribute(x)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)


def test_box_score_target_on_a_torchvision_detector_equals_pytorch_grad_cams_target() -> None:
    """Faster R-CNN (random init, tiny input): the target's value equals pytorch-grad-cam's
    FasterRCNNBoxScoreTarget on the same detections, and Grad-CAM through it equals the
    Grad-CAM written by hand (activations and autograd gradient of the same score)."""
    tv_detection = pytest.importorskip("torchvision.models.detection")
    from cleargrad.core.target_objects import BoxScoreTarget

    torch.manual_seed(0)
    model = tv_detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0
    ).eval()
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        det = model(x)
    boxes, labels = det[0]["boxes"][:2], det[0]["labels"][:2].tolist()
    target = BoxScoreTarget(labels, boxes)
    ref = mt.FasterRCNNBoxScoreTarget(labels, boxes.numpy())(det[0])
    torch.testing.assert_close(target(det), ref.reshape(1))
    assert float(target(det)) > 1.0  # both boxes matched themselves (IoU 1 + a score)
    snap = ModelSnapshot.take(model)
    layer = model.backbone.body._modules["16"]
    raw = cg.GradCAM(model, layer=layer).attribute_layers(x, target=target, upsample=False, relu=False).maps[0]
    snap.assert_same(model)
    acts: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda mod, i, o: acts.__setitem__("a", o))
    try:
        out = model(x.clone().requires_grad_(True))
        (g,) = torch.autograd.grad(target(out).sum(), acts["a"])
    finally:
        handle.remove()
    by_hand = (g.mean(dim=(2, 3), keepdim=True) * acts["a"]).sum(dim=1, keepdim=True)
    torch.testing.assert_close(raw, by_hand.detach(), rtol=1e-4, atol=1e-15)


# ---------------------------------------------------------------- metrics
@pytest.mark.parametrize("name", ["insertion", "deletion", "infidelity", "region_sensitivity"])
def test_metrics_score_through_per_image_target_objects(name: str) -> None:
    """A per-image SoftmaxTarget scored as it is equals the class probability: every
    perturbed row (curve steps, noise draws, occlusions) keeps its own image's target."""
    from cleargrad import metrics

    model = tiny_cnn(seed=17)
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(18))
    maps = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(19))
    fn = getattr(metrics, name)
    kw: dict = {"step": 16} if name in ("insertion", "deletion") else {}
    if name == "infidelity":
        kw = {"n_perturb": 6}
    third = maps if name != "region_sensitivity" else (maps > 0.5)
    snap = ModelSnapshot.take(model)

    def call(target, score):
        extra = {"generator": torch.Generator().manual_seed(20)} if name == "infidelity" else {}
        out = fn(model, x, third, target=target, score=score, **kw, **extra)
        return out.drop if name == "region_sensitivity" else out

    ref = call([0, 3], "prob")
    got = call([SoftmaxTarget(0), SoftmaxTarget(3)], "logit")
    snap.assert_same(model)
    torch.testing.assert_close(torch.as_tensor(got), torch.as_tensor(ref), rtol=1e-5, atol=1e-7)
    # and a target that differs from any class index: not the same numbers as either class
    other = call([SoftmaxTarget(3), SoftmaxTarget(0)], "logit")
    assert not torch.allclose(torch.as_tensor(other), torch.as_tensor(ref))


def test_rise_probability_scores_of_target_objects_are_the_targets_own() -> None:
    """RISE weights its masks by the target's probability: with per-image SoftmaxTargets the
    target's own score is that probability (no second softmax over the targets)."""
    model = tiny_cnn(seed=21)
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(22))
    opts = {"n_masks": 8, "generator": None}

    def run(target):
        return cg.RISE(model).attribute(x, target=target, **{**opts, "generator": torch.Generator().manual_seed(23)})

    torch.testing.assert_close(run([SoftmaxTarget(0), SoftmaxTarget(3)]), run([0, 3]), rtol=1e-5, atol=1e-7)
