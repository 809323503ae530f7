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


class BoxScoreTarget(Target):
    """A detector's score for reference boxes (pytorch-grad-cam's
    ``FasterRCNNBoxScoreTarget``): for each reference box and label, the detection of
    highest IoU with it counts ``IoU + its score`` if the IoU exceeds ``iou_threshold`` and
    its label matches; the target is the sum (0 when nothing matches).

    The output is torchvision's detection output, a list of dicts with ``boxes``,
    ``labels`` and ``scores`` (one per row), in eval mode.
    """

    def __init__(self, labels: Sequence[int], boxes: torch.Tensor | np.ndarray, iou_threshold: float = 0.5) -> None:
        b = torch.as_tensor(np.asarray(boxes) if not isinstance(boxes, torch.Tensor) else boxes, dtype=torch.float32)
        if b.dim() == 1:
            b = b[None]
        if b.dim() != 2 or b.shape[1] != 4:
            raise TargetError(f"BoxScoreTarget boxes must be (B, 4) as x1, y1, x2, y2, got {tuple(b.shape)}")
        labs = [_class_index(v, "label") for v in labels]
        if len(labs) != b.shape[0]:
            raise TargetError(f"BoxScoreTarget got {len(labs)} labels for {b.shape[0]} boxes")
        self.labels = tuple(labs)
        self.boxes = b
        self.iou_threshold = float(iou_threshold)

    def score(self, output: Any) -> torch.Tensor:
        from torchvision.ops import box_iou

        if not isinstance(output, (list, tuple)) or not all(isinstance(o, dict) and "boxes" in o for o in output):
            raise TargetError(
                "BoxScoreTarget needs a detector's output: a list of dicts with 'boxes', 'labels' and 'scores' "
                "(torchvision detection models in eval mode)"
            )
        rows = []
        for det in output:
            boxes, scores = det["boxes"], det["scores"]
            total = scores.new_zeros(()) if scores.numel() else boxes.new_zeros(())
            if len(boxes):
                ious = box_iou(self.boxes.to(device=boxes.device, dtype=boxes.dtype), boxes)  # (B, D)
                best = ious.argmax(dim=1)
                for k, label in enumerate(self.labels):
                    j = int(best[k])
                    if float(ious[k, j].detach()) > self.iou_threshold and int(det["labels"][j]) == label:
                        total = total + ious[k, j] + scores[j]
            rows.append(total)
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
