"""Target objects: what score of the model's output an explanation explains.

Besides class indices, ``target=`` takes

* a :class:`Target` (or any callable ``output -> (R,)``): the same target for every image;
* a list of targets, one per image (``[SegmentationTarget(15, mask_0), ...]``).

A target scores *every row* of the model's (selected) output: ``target.score(output)``
returns ``(R,)`` for ``R`` rows. Methods expand and chunk their batch (integrated-gradient
steps, noise samples, Score-CAM masks, metric perturbations) and each row must keep the
target of the image it came from. :func:`bind_targets` does this without any method
knowing about target objects: it turns the targets into an output selector that gives
an ``(R, K)`` "score matrix" whose column ``j`` is image ``j``'s target applied to every
row, and the integer target of image ``j`` into column ``j``. Every method already carries
integer targets along its expansions, so each row's score is its own image's target.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from ..errors import TargetError
from .targets import OutputSelector, pick_output

__all__ = [
    "Target",
    "ClassTarget",
    "SoftmaxTarget",
    "BinaryTarget",
    "MultiLabelTarget",
    "RegressionTarget",
    "SegmentationTarget",
    "BoxScoreTarget",
    "MaskScoreTarget",
    "YOLOScoreTarget",
    "SimilarityTarget",
    "as_class_indices",
    "class_probabilities",
    "is_target_object",
    "scores_are_targets",
    "target_selector",
    "bind_targets",
]


class Target:
    """Base of target objects. Subclasses implement :meth:`score`."""

    def score(self, output: Any) -> torch.Tensor:
        """This target's score for every row of ``output`` (the model's selected output):
        a ``(R,)`` tensor that gradients can flow through."""
        raise NotImplementedError

    def __call__(self, output: Any) -> torch.Tensor:
        return self.score(output)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not isinstance(v, torch.Tensor))
        return f"{type(self).__name__}({fields})"


def _scores_2d(output: Any, owner: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.dim() < 1:
        raise TargetError(f"{owner} needs a tensor output (N, C), got {type(output).__name__}")
    return output.reshape(output.shape[0], -1) if output.dim() != 2 else output


def _class_index(c: object, name: str = "category") -> int:
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
        raise TargetError(f"{name} must be an int, got {c!r}")
    return int(c)


class ClassTarget(Target):
    """The logit of class ``category`` (the same as ``target=category``)."""

    def __init__(self, category: int) -> None:
        self.category = _class_index(category)

    def score(self, output: Any) -> torch.Tensor:
        s = _scores_2d(output, "ClassTarget")
        if not 0 <= self.category < s.shape[1]:
            raise TargetError(f"ClassTarget({self.category}) is out of range for {s.shape[1]} classes")
        return s[:, self.category]


class SoftmaxTarget(Target):
    """The softmax probability of class ``category``."""

    def __init__(self, category: int) -> None:
        self.category = _class_index(category)

    def score(self, output: Any) -> torch.Tensor:
        s = _scores_2d(output, "SoftmaxTarget")
        if not 0 <= self.category < s.shape[1]:
            raise TargetError(f"SoftmaxTarget({self.category}) is out of range for {s.shape[1]} classes")
        return s.softmax(dim=1)[:, self.category]


class BinaryTarget(Target):
    """A binary classifier's single output (logit or sigmoid): ``+output`` for the positive
    class (``category=1``), ``-output`` for the negative one (pytorch-grad-cam's
    ``BinaryClassifierOutputTarget``). ``index`` picks the output column of a model with
    several binary heads (default: the only one)."""

    def __init__(self, category: int = 1, index: int | None = None) -> None:
        if category not in (0, 1):
            raise TargetError(f"BinaryTarget category must be 0 or 1, got {category!r}")
        self.category = category
        self.index = None if index is None else _class_index(index, "index")

    def score(self, output: Any) -> torch.Tensor:
        s = _scores_2d(output, "BinaryTarget")
        if self.index is None:
            if s.shape[1] != 1:
                raise TargetError(
                    f"BinaryTarget: the output has {s.shape[1]} columns; give index= to pick the binary head"
                )
            col = s[:, 0]
        else:
            col = s[:, self.index]
        return col if self.category == 1 else -col


class MultiLabelTarget(Target):
    """The sum of the logits (or, with ``sigmoid=True``, the sigmoid probabilities) of a
    set of classes: one map explaining all of them together."""

    def __init__(self, categories: Sequence[int], *, sigmoid: bool = False) -> None:
        cats = [_class_index(c) for c in categories]
        if not cats:
            raise TargetError("MultiLabelTarget needs at least one class")
        self.categories = tuple(cats)
        self.sigmoid = sigmoid

    def score(self, output: Any) -> torch.Tensor:
        s = _scores_2d(output, "MultiLabelTarget")
        if max(self.categories) >= s.shape[1] or min(self.categories) < 0:
            raise TargetError(f"MultiLabelTarget{self.categories} is out of range for {s.shape[1]} classes")
        picked = s[:, list(self.categories)]
        return (picked.sigmoid() if self.sigmoid else picked).sum(dim=1)


class RegressionTarget(Target):
    """A regression model's output ``index`` (its only output by default), optionally
    negated (``sign=-1``: explain what lowers it)."""

    def __init__(self, index: int = 0, *, sign: float = 1.0) -> None:
        self.index = _class_index(index, "index")
        if sign not in (1, -1, 1.0, -1.0):
            raise TargetError(f"sign must be 1 or -1, got {sign!r}")
        self.sign = float(sign)

    def score(self, output: Any) -> torch.Tensor:
        if isinstance(output, torch.Tensor) and output.dim() == 1:
            if self.index:
                raise TargetError("RegressionTarget: the model has one output per image; index must be 0")
            return self.sign * output
        s = _scores_2d(output, "RegressionTarget")
        return self.sign * s[:, self.index]


class SegmentationTarget(Target):
    """The sum of class ``category``'s scores over the pixels of ``mask`` (``(H, W)``, bool
    or float weights), for a segmentation model whose output is ``(N, C, H, W)``; with
    ``mask=None``, over the pixels the row itself predicts as ``category`` (its argmax;
    pytorch-grad-cam's tutorial mask)."""

    def __init__(self, category: int, mask: torch.Tensor | np.ndarray | None = None) -> None:
        self.category = _class_index(category)
        if mask is not None:
            m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
            if m.dim() != 2:
                raise TargetError(f"SegmentationTarget mask must be (H, W), got shape {tuple(m.shape)}")
            mask = m
        self.mask = mask

    def score(self, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise TargetError(
                "SegmentationTarget needs the model's (N, C, H, W) output (for torchvision models: output='out'), "
                f"got {type(output).__name__}{tuple(output.shape) if isinstance(output, torch.Tensor) else ''}"
            )
        if not 0 <= self.category < output.shape[1]:
            raise TargetError(f"SegmentationTarget({self.category}) is out of range for {output.shape[1]} classes")
        cls = output[:, self.category]
        if self.mask is None:
            weight = (output.detach().argmax(dim=1) == self.category).to(cls.dtype)
        else:
            if tuple(self.mask.shape) != tuple(cls.shape[-2:]):
                raise TargetError(
                    f"SegmentationTarget mask is {tuple(self.mask.shape)} but the output maps are "
                    f"{tuple(cls.shape[-2:])}"
                )
            weight = self.mask.to(device=cls.device, dtype=cls.dtype)
        return (cls * weight).sum(dim=(-2, -1))


def _as_float_tensor(v: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v.detach(), dtype=torch.float32)


def _detection_output(output: Any, owner: str, keys: tuple[str, ...]) -> list[dict]:
    if not isinstance(output, (list, tuple)) or not all(
        isinstance(o, dict) and all(k in o for k in keys) for o in output
    ):
        raise TargetError(
            f"{owner} needs a detector's output: a list of dicts with {', '.join(repr(k) for k in keys)} "
            "(torchvision detection models in eval mode)"
        )
    return list(output)


def _no_detections(owner: str, i: int | None = None) -> TargetError:
    where = "the detections" if i is None else f"image {i}'s detections"
    return TargetError(
        f"{owner}: {where} are empty, so there is nothing to explain. Lower the detector's score "
        "threshold (torchvision: box_score_thresh=0.0 for Faster/Mask R-CNN, score_thresh=0.0 for "
        "RetinaNet, FCOS and SSD) or give reference boxes and labels by hand"
    )


def _matches(
    ref_boxes: torch.Tensor, ref_labels: Sequence[int], det: dict, iou_threshold: float
) -> list[tuple[int, int, torch.Tensor]]:
    """``(reference k, detection j, IoU)`` for every reference box whose best-overlapping
    detection *of the same label* overlaps it by more than ``iou_threshold``."""
    from torchvision.ops import box_iou

    boxes, labels = det["boxes"], det["labels"]
    if not len(boxes):
        return []
    ious = box_iou(ref_boxes.to(device=boxes.device, dtype=boxes.dtype), boxes)  # (B, D)
    found = []
    for k, label in enumerate(ref_labels):
        same = (labels == label).nonzero().flatten()
        if not len(same):
            continue
        j = int(same[ious[k, same].detach().argmax()])
        if float(ious[k, j].detach()) > iou_threshold:
            found.append((k, j, ious[k, j]))
    return found


class BoxScoreTarget(Target):
    """A detector's score for reference boxes (pytorch-grad-cam's
    ``FasterRCNNBoxScoreTarget``): for each reference box and label, the detection *of that
    label* with the highest IoU counts ``IoU + its score`` if the IoU exceeds
    ``iou_threshold`` (``iou=False``: its score alone); the target is the sum over the
    reference boxes, 0 for a row where nothing matches (a perturbed copy of the image,
    an integrated-gradients step near the baseline).

    The output is torchvision's detection output in eval mode (Faster R-CNN, Mask R-CNN,
    RetinaNet, FCOS, SSD, SSDlite): a list of dicts with ``boxes`` ``(D, 4)`` as x1, y1,
    x2, y2 in input pixels, ``labels`` and ``scores``, one dict per row. The scores and
    boxes of those models are differentiable functions of the input (the score threshold,
    top-k and non-maximum suppression only choose which detections are kept).

    :meth:`from_detections` builds the targets from a first forward's detections.

    Raises:
        TargetError: boxes not ``(B, 4)``, as many labels as boxes, or no box at all.
    """

    def __init__(
        self,
        labels: Sequence[int],
        boxes: torch.Tensor | np.ndarray,
        iou_threshold: float = 0.5,
        *,
        iou: bool = True,
    ) -> None:
        b = _as_float_tensor(boxes)
        if b.dim() == 1:
            b = b[None]
        if b.dim() != 2 or b.shape[1] != 4:
            raise TargetError(f"BoxScoreTarget boxes must be (B, 4) as x1, y1, x2, y2, got {tuple(b.shape)}")
        labs = [_class_index(v, "label") for v in labels]
        if len(labs) != b.shape[0]:
            raise TargetError(f"BoxScoreTarget got {len(labs)} labels for {b.shape[0]} boxes")
        if not labs:
            raise _no_detections(type(self).__name__)
        self.labels = tuple(labs)
        self.boxes = b
        self.iou_threshold = float(iou_threshold)
        self.iou = bool(iou)

    @classmethod
    def from_detections(
        cls, detections: dict | Sequence[dict], top: int | None = None, min_score: float = 0.0, **kwargs: Any
    ) -> Any:
        """Targets for the detections of a plain forward (``model(x)`` under
        ``torch.no_grad()``): one target per image for a list of dicts (a single target for
        one dict), each holding that image's ``top`` highest-scoring detections (all by
        default) whose score is at least ``min_score``; boxes of zero area (an IoU of 0/0,
        which nothing matches: random-init FCOS gives them) are left out. ``kwargs`` go to the constructor
        (``iou_threshold``, ``iou``; :class:`MaskScoreTarget` also takes them).

        Raises:
            TargetError: an image with no detection left: the message says how to get some.
        """
        one = isinstance(detections, dict)
        dets = [detections] if one else list(detections)
        out = []
        for i, det in enumerate(_detection_output(dets, cls.__name__, ("boxes", "labels", "scores"))):
            b = det["boxes"].detach()
            area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
            keep = ((det["scores"].detach() >= min_score) & (area > 0)).nonzero().flatten()
            keep = keep[det["scores"].detach()[keep].argsort(descending=True, stable=True)][:top]
            if not len(keep):
                raise _no_detections(cls.__name__, None if one else i)
            out.append(cls(det["labels"][keep].tolist(), det["boxes"][keep].detach(), **kwargs))
        return out[0] if one else out

    def _row(self, det: dict) -> torch.Tensor:
        total = det["scores"].sum() * 0  # 0 that stays on the graph: a zero gradient, not an autograd error
        for _k, j, iou in _matches(self.boxes, self.labels, det, self.iou_threshold):
            total = total + (iou + det["scores"][j] if self.iou else det["scores"][j])
        return total

    def score(self, output: Any) -> torch.Tensor:
        dets = _detection_output(output, type(self).__name__, ("boxes", "labels", "scores"))
        return torch.stack([self._row(det) for det in dets])


class MaskScoreTarget(BoxScoreTarget):
    """Mask R-CNN's instance masks for reference boxes: for each reference box and label,
    the matching detection (as in :class:`BoxScoreTarget`) counts the sum of its mask
    probabilities (``masks`` ``(D, 1, H, W)`` of the output), weighted by the reference
    mask of that box when ``masks=`` gives them (``(B, H, W)``; all pixels otherwise).
    The target explains which input pixels make the detector draw those masks.

    Raises:
        TargetError: as :class:`BoxScoreTarget`; reference masks that are not ``(B, H, W)``;
            an output without ``masks`` (not Mask R-CNN).
    """

    def __init__(
        self,
        labels: Sequence[int],
        boxes: torch.Tensor | np.ndarray,
        iou_threshold: float = 0.5,
        *,
        masks: torch.Tensor | np.ndarray | None = None,
        iou: bool = True,
    ) -> None:
        super().__init__(labels, boxes, iou_threshold, iou=iou)
        if masks is not None:
            m = _as_float_tensor(masks)
            if m.dim() == 4 and m.shape[1] == 1:
                m = m[:, 0]
            if m.dim() != 3 or m.shape[0] != len(self.labels):
                raise TargetError(
                    f"MaskScoreTarget masks must be (B, H, W), one per box ({len(self.labels)}), got {tuple(m.shape)}"
                )
            masks = m
        self.masks = masks

    def _row(self, det: dict) -> torch.Tensor:
        total = det["scores"].sum() * 0  # 0 that stays on the graph: a zero gradient, not an autograd error
        for k, j, _ in _matches(self.boxes, self.labels, det, self.iou_threshold):
            prob = det["masks"][j, 0]
            if self.masks is not None:
                if tuple(self.masks.shape[-2:]) != tuple(prob.shape):
                    raise TargetError(
                        f"MaskScoreTarget reference masks are {tuple(self.masks.shape[-2:])}, the detector's "
                        f"{tuple(prob.shape)}"
                    )
                prob = prob * self.masks[k].to(device=prob.device, dtype=prob.dtype)
            total = total + prob.sum()
        return total

    def score(self, output: Any) -> torch.Tensor:
        dets = _detection_output(output, type(self).__name__, ("boxes", "labels", "scores", "masks"))
        return torch.stack([self._row(det) for det in dets])


class YOLOScoreTarget(Target):
    """A YOLO-style dense detector's class score, on its raw eval output ``(N, 4 + C, A)``
    (ultralytics' ``DetectionModel``: per anchor point, a box as centre x, centre y, width,
    height in input pixels, then ``C`` class probabilities; before non-maximum
    suppression). With ``box=None`` the score is the highest probability of class
    ``category`` over all anchors; with a reference box ``(x1, y1, x2, y2)``, the sum of
    that class's probabilities over the anchors whose box overlaps it by more than
    ``iou_threshold`` (0 when none does).

    Raises:
        TargetError: an output that is not ``(N, 4 + C, A)`` or a class out of range.
    """

    def __init__(
        self, category: int, box: torch.Tensor | np.ndarray | Sequence[float] | None = None, iou_threshold: float = 0.5
    ) -> None:
        self.category = _class_index(category)
        if box is not None:
            b = _as_float_tensor(box).reshape(-1)
            if b.shape[0] != 4:
                raise TargetError(f"YOLOScoreTarget box must be (x1, y1, x2, y2), got {tuple(b.shape)}")
            box = b
        self.box = box
        self.iou_threshold = float(iou_threshold)

    def score(self, output: Any) -> torch.Tensor:
        if isinstance(output, (list, tuple)) and output and isinstance(output[0], torch.Tensor):
            output = output[0]  # ultralytics' eval forward returns (decoded, raw)
        if not isinstance(output, torch.Tensor) or output.dim() != 3 or output.shape[1] < 5:
            raise TargetError(
                "YOLOScoreTarget needs the detector's (N, 4 + C, A) output (ultralytics: the first element of the "
                f"eval forward's tuple), got {type(output).__name__}"
                f"{tuple(output.shape) if isinstance(output, torch.Tensor) else ''}"
            )
        n_cls = output.shape[1] - 4
        if not 0 <= self.category < n_cls:
            raise TargetError(f"YOLOScoreTarget({self.category}) is out of range for {n_cls} classes")
        cls = output[:, 4 + self.category]  # (N, A)
        if self.box is None:
            return cls.max(dim=1).values
        from torchvision.ops import box_convert, box_iou

        ref = self.box.to(device=output.device, dtype=output.dtype)[None]
        rows = []
        for r in range(output.shape[0]):
            boxes = box_convert(output[r, :4].detach().T, "cxcywh", "xyxy")
            near = (box_iou(ref, boxes)[0] > self.iou_threshold).to(cls.dtype)
            rows.append((cls[r] * near).sum())
        return torch.stack(rows)


class SimilarityTarget(Target):
    """Cosine similarity of the output (an embedding ``(N, D)``) with a concept
    embedding ``(D,)``."""

    def __init__(self, embedding: torch.Tensor | np.ndarray) -> None:
        e = torch.as_tensor(np.asarray(embedding) if not isinstance(embedding, torch.Tensor) else embedding)
        if e.dim() != 1:
            raise TargetError(f"SimilarityTarget embedding must be 1-D (D,), got {tuple(e.shape)}")
        self.embedding = e.float()

    def score(self, output: Any) -> torch.Tensor:
        s = _scores_2d(output, "SimilarityTarget")
        if s.shape[1] != self.embedding.shape[0]:
            raise TargetError(
                f"SimilarityTarget embedding has {self.embedding.shape[0]} values, the output {s.shape[1]}"
            )
        e = self.embedding.to(device=s.device, dtype=s.dtype)
        return torch.nn.functional.cosine_similarity(s, e[None], dim=1)


def is_target_object(target: object) -> bool:
    """Whether ``target`` is a target object, a callable, or a list of them (not a class index form)."""
    if isinstance(target, (torch.Tensor, np.ndarray, str, bytes)) or target is None:
        return False
    if isinstance(target, Target) or callable(target):
        return True
    return bool(
        isinstance(target, Sequence) and len(target) and all(isinstance(t, Target) or callable(t) for t in target)
    )


def _row_scores(fn: Callable[[Any], Any], out: Any, rows: int | None) -> torch.Tensor:
    s = fn(out)
    if not isinstance(s, torch.Tensor):
        raise TargetError(f"a target must return a tensor of scores (one per row), got {type(s).__name__}")
    if s.dim() == 0:
        s = s.reshape(1)
    if s.dim() != 1 or (rows is not None and s.shape[0] != rows):
        raise TargetError(
            f"a target must return one score per row of the model's output ({rows} rows), got shape "
            f"{tuple(s.shape)}"
        )
    return s


def _rows(out: Any) -> int | None:
    if isinstance(out, torch.Tensor):
        return out.shape[0] if out.dim() else None
    if isinstance(out, (list, tuple)):
        return len(out)
    return None


def target_selector(target: Any, n: int, output: OutputSelector) -> tuple[Callable[[Any], torch.Tensor], int, Any]:
    """For a target object (or list of them) and a batch of ``n`` images: an output
    selector giving the ``(R, K)`` score matrix, ``K``, and the integer target that picks
    each image's column (see the module docstring).

    Raises:
        TargetError: a list whose length is not ``n``.
    """
    targets = list(target) if isinstance(target, Sequence) else [target]
    if len(targets) not in (1, n):
        raise TargetError(
            f"got {len(targets)} targets for a batch of {n} images; give one target per image or a single one for all"
        )

    def select(out: Any) -> torch.Tensor:
        raw = pick_output(out, output)
        rows = _rows(raw)
        return torch.stack([_row_scores(t, raw, rows) for t in targets], dim=1)

    select.target_matrix = True  # type: ignore[attr-defined]  # a function attribute, read by the metrics
    index: Any = 0 if len(targets) == 1 else torch.arange(n)
    return select, len(targets), index


def scores_are_targets(output: OutputSelector) -> bool:
    """Whether ``output`` is a bound target selector (its columns are target scores, not
    classes: a softmax over them means nothing, so methods use them as they are)."""
    return bool(getattr(output, "target_matrix", False))


def class_probabilities(scores: torch.Tensor, output: OutputSelector) -> torch.Tensor:
    """The softmax over the classes of ``scores`` ``(N, C)``, except when they are the
    columns of a bound target selector (:func:`scores_are_targets`): a target's own score
    is then used as it is (:class:`SoftmaxTarget` gives a probability)."""
    return scores if scores_are_targets(output) else scores.softmax(dim=1)


def as_class_indices(target: Any) -> Any:
    """``ClassTarget`` objects as the class indices they stand for (exact and cheaper)."""
    if isinstance(target, ClassTarget):
        return target.category
    if isinstance(target, Sequence) and target and all(isinstance(t, ClassTarget) for t in target):
        return [t.category for t in target]
    return target


def _bound_objects(method: Any) -> list[Any]:
    """``method`` and the methods it wraps (attributes holding another method of the same
    model, e.g. NoiseTunnel's ``method``), each once."""
    found: list[Any] = []
    todo = [method]
    while todo:
        m = todo.pop()
        if any(m is f for f in found):
            continue
        found.append(m)
        for v in vars(m).values():
            if v is not m and hasattr(v, "output") and hasattr(v, "attribute") and getattr(v, "model", None) is getattr(
                method, "model", None
            ):
                todo.append(v)
    return found


@contextmanager
def bind_targets(method: Any, x: torch.Tensor, target: Any) -> Iterator[Any]:
    """For the duration of a call of ``method`` (anything with ``output`` and the cached
    ``_num_classes``, and the methods it wraps) on ``x``: with a target object, the output
    selector becomes the score matrix of :func:`target_selector` and the yielded target its
    integer index; any other target is yielded unchanged. Restored on exit, also after an
    error."""
    target = as_class_indices(target)
    if not is_target_object(target):
        yield target
        return
    if getattr(method, "class_targets_only", False):  # Method.class_targets_only
        raise TargetError(
            f"{type(method).__name__} explains a class through its classifier weights: give class indices "
            "(or ClassTarget), not other target objects; GradCAM equals CAM on GAP-linear models and takes any target"
        )
    n = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() else 1
    objects = _bound_objects(method)
    missing = object()
    saved = [(m, m.output, vars(m).get("_num_classes", missing)) for m in objects]
    try:
        for m in objects:
            select, k, index = target_selector(target, n, m.output)
            m.output, m._num_classes = select, k
        yield index
    finally:
        for m, output, num in saved:
            m.output = output
            if num is missing:
                vars(m).pop("_num_classes", None)
            else:
                m._num_classes = num
