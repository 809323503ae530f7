"""Which score each image is explained for, per method (``--target``), and which part of
the model's output is scored (``--output``).

``--target`` forms (:func:`parse_target`):

==========================  ============================================================
``auto`` (or ``pred``)      the prediction (among the classes a GAD was fitted for)
``label``                   the image's class (its sub-folder); the prediction where none
``K`` / ``class:K``         the logit of class ``K`` (``class:auto``, ``class:label`` too)
``softmax:K``               the softmax probability of class ``K`` (``softmax`` alone, or
                            ``softmax:auto`` / ``softmax:label``: of that image's class)
``binary`` / ``binary:C``   a binary classifier's single output, ``C`` = 1 (default,
                            positive) or 0 (negative); ``binary:C:I`` picks output column ``I``
``labels:A,B,...``          the sum of the logits of classes ``A``, ``B``, ... (multi-label)
``seg:K``                   a segmentation model's class-``K`` scores summed over the pixels
                            it predicts as ``K`` on the image (``(N, K, H, W)`` output)
``box:I``                   a detector's detection ``I`` on the image (torchvision order: by
                            score), matched by IoU on every pass (IoU + score)
``regression`` / ``regression:I``  a regression output (column ``I``, default 0)
==========================  ============================================================

The first three forms parse to what they always did (``"auto"``, ``"label"``, an int), so
runs with them keep their settings hash; ``class:K`` is ``K``. The other forms parse to a
:class:`TargetSpec`, turned into one target object per image
(:mod:`cleargrad.core.target_objects`) from the batch's clean output by :func:`targets_for`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError, InputError

__all__ = [
    "ImageTargets",
    "OutputKey",
    "TARGET_FORMS",
    "TargetSpec",
    "parse_output",
    "parse_target",
    "target_classes",
    "target_key",
    "target_rule",
    "targets_for",
]

#: the valid ``--target`` forms, as error messages list them
TARGET_FORMS = (
    "auto, label, a class index K, class:K, softmax:K, binary, binary:0, labels:A,B, seg:K, box:I, regression:I"
)

_RULES = ("auto", "label")


@dataclass(frozen=True)
class TargetSpec:
    """A parsed ``--target`` beyond a class rule.

    ``kind``: ``softmax``, ``binary``, ``labels``, ``seg``, ``box`` or ``regression``;
    ``rule``: the class rule of ``softmax`` (``"auto"``, ``"label"`` or a class index);
    ``values``: the integers of the others (``labels``: the classes; ``seg``: the class;
    ``box``: the detection index; ``binary``: category and optional column;
    ``regression``: the column). ``str(spec)`` is its canonical spelling (recorded in the
    manifest and the settings hash)."""

    kind: str
    rule: str | int | None = None
    values: tuple[int, ...] = ()

    def __str__(self) -> str:
        if self.kind == "softmax":
            return f"softmax:{self.rule}"
        return f"{self.kind}:{','.join(map(str, self.values))}" if self.values else self.kind


class ImageTargets(list[Any]):
    """One target object per image, with the class each stands for (``classes``: None where
    it explains no single class) and ``key``: equal for equal targets of one batch (what
    the engine caches explanations and groups metrics by)."""

    def __init__(self, items: Sequence[Any], classes: Sequence[int | None], key: tuple[Any, ...]) -> None:
        super().__init__(items)
        self.classes = list(classes)
        self.key = key


def _int(text: str, spec: str, what: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise ConfigError(
            f"--target {spec}: {what} must be an integer, got {text!r}; valid forms: {TARGET_FORMS}"
        ) from None
    if not 0 <= k < 2**63:
        raise ConfigError(
            f"--target {spec}: {what} must be 0 or more (and below 2^63), got {k}; valid forms: {TARGET_FORMS}"
        )
    return k


def _class_rule(text: str, spec: str, allow_label: bool) -> str | int:
    t = text.strip().lower()
    if t in ("auto", "pred", "prediction"):
        return "auto"
    if t == "label":
        if not allow_label:
            raise ConfigError(f"--target {spec}: 'label' needs labelled images; valid forms: {TARGET_FORMS}")
        return "label"
    return _int(t, spec, "the class")


def parse_target(text: str | int | TargetSpec, allow_label: bool) -> str | int | TargetSpec:
    """``--target`` as ``"auto"``, ``"label"`` (when ``allow_label``), a class index, or a
    :class:`TargetSpec` (see the module docstring for the forms).

    Raises:
        ConfigError: an unknown form or a bad number, naming the valid forms.
    """
    if isinstance(text, TargetSpec):
        return text
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    spec = str(text).strip()
    t = spec.lower()
    if t in ("auto", "pred", "prediction") or (allow_label and t == "label"):
        return "auto" if t != "label" else "label"
    kind, sep, arg = t.partition(":")
    kind, arg = kind.strip(), arg.strip()
    if not sep:
        if kind in ("softmax", "binary", "regression"):
            arg = ""
        else:
            try:
                k = int(t)
            except ValueError:
                raise ConfigError(f"--target must be one of: {TARGET_FORMS}; got {spec!r}") from None
            if not -(2**63) <= k < 2**63:
                raise ConfigError(
                    f"--target {spec} is not a class index (far beyond any number of classes); give one of: "
                    f"{TARGET_FORMS}"
                )
            return k
    if sep and not arg:
        raise ConfigError(f"--target {spec}: nothing after ':'; valid forms: {TARGET_FORMS}")
    if kind == "class":
        return _class_rule(arg, spec, allow_label)
    if kind == "softmax":
        return TargetSpec("softmax", rule=_class_rule(arg or "auto", spec, allow_label))
    if kind == "binary":
        parts = arg.split(":") if arg else ["1"]
        if len(parts) > 2:
            raise ConfigError(
                f"--target {spec}: binary takes binary:C or binary:C:INDEX; valid forms: {TARGET_FORMS}"
            )
        cat = _int(parts[0], spec, "the binary category")
        if cat not in (0, 1):
            raise ConfigError(f"--target {spec}: the binary category must be 0 or 1; valid forms: {TARGET_FORMS}")
        column = (_int(parts[1], spec, "the output column"),) if len(parts) == 2 else ()
        return TargetSpec("binary", values=(cat, *column))
    if kind == "labels":
        classes = [p for p in arg.split(",") if p.strip()]
        if not classes:
            raise ConfigError(f"--target {spec}: give the classes, e.g. labels:3,7; valid forms: {TARGET_FORMS}")
        return TargetSpec("labels", values=tuple(_int(p.strip(), spec, "a class") for p in classes))
    if kind in ("seg", "segmentation"):
        return TargetSpec("seg", values=(_int(arg, spec, "the class"),))
    if kind in ("box", "detection"):
        return TargetSpec("box", values=(_int(arg, spec, "the detection index"),))
    if kind == "regression":
        return TargetSpec("regression", values=(_int(arg, spec, "the output column"),) if arg else ())
    raise ConfigError(f"--target {spec}: unknown kind {kind!r}; valid forms: {TARGET_FORMS}")


@dataclass(frozen=True)
class OutputKey:
    """``--output``: the part of the model's output that is scored, by dict key, tuple
    index or attribute (a callable output selector, see
    :func:`cleargrad.core.targets.pick_output`); ``str()`` is the text given."""

    key: str | int

    def __call__(self, out: Any) -> Any:
        k = self.key
        if isinstance(out, Mapping):
            if k in out:
                return out[k]
            if isinstance(k, int) and -len(out) <= k < len(out):  # a Hugging Face ModelOutput's index
                return list(out.values())[k]
            raise InputError(f"--output {k}: not a key of the model's output; its keys: {', '.join(map(str, out))}")
        if isinstance(out, (tuple, list)) and isinstance(k, int):
            if -len(out) <= k < len(out):
                return out[k]
            raise InputError(f"--output {k}: the model returns {len(out)} outputs (index 0 .. {len(out) - 1})")
        if isinstance(k, str) and not isinstance(out, torch.Tensor) and hasattr(out, k):
            return getattr(out, k)
        kind = "a single tensor" if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"--output {k}: the model returned {kind}, which has no key, index or attribute {k!r}")

    def __str__(self) -> str:
        return str(self.key)


def parse_output(text: str | None) -> OutputKey | None:
    """``--output KEY|INDEX|ATTR`` as an :class:`OutputKey` (None: the output as it is)."""
    if text is None:
        return None
    t = str(text).strip()
    if not t:
        raise ConfigError("--output is empty; give a key (out, logits), an index (0) or an attribute name")
    try:
        return OutputKey(int(t))
    except ValueError:
        return OutputKey(t)


def _class_scores(out: Any, rule: Any) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"--target {rule} explains a class score and needs the model's (N, C) class scores, but the (selected) "
            f"output is {shape}: pick the scores with --output KEY|INDEX|ATTR, or give a target of this task "
            f"(seg:K, box:I, regression:I, binary); valid forms: {TARGET_FORMS}"
        )
    return out


def _rule_classes(
    explainer: Any, rule: str | int, out: Any, labels: Sequence[int | None]
) -> torch.Tensor:
    logits = _class_scores(out, rule)
    pred = logits.argmax(1)
    if explainer.classes is not None:
        cols = torch.tensor(explainer.classes, device=logits.device)
        restricted = cols[logits[:, cols].argmax(1)]
    else:
        restricted = pred
    if rule == "auto":
        return restricted
    if rule == "label":
        return torch.tensor(
            [int(p) if lab is None else int(lab) for lab, p in zip(labels, restricted.tolist())],
            dtype=torch.long, device=logits.device,
        )
    return torch.full_like(pred, int(rule))


def targets_for(
    explainer: Any, rule: str | int | TargetSpec, out: Any, labels: Sequence[int | None]
) -> torch.Tensor | ImageTargets:
    """What each image of a batch is explained for, by ``rule``, from the batch's clean
    (selected) output ``out``: for ``"auto"`` (the prediction, among ``explainer.classes``
    when it is restricted), ``"label"`` (the image's class; the prediction where it has
    none) or a class index, a ``(N,)`` class tensor; for a :class:`TargetSpec`, an
    :class:`ImageTargets` (one target object per image)."""
    from ..core import target_objects as T

    if not isinstance(rule, TargetSpec):
        return _rule_classes(explainer, rule, out, labels)
    n = len(labels)
    key_base = (str(rule),)
    if rule.kind == "softmax":
        assert rule.rule is not None
        classes = _rule_classes(explainer, rule.rule, out, labels).tolist()
        _check_range(out, classes, rule)
        return ImageTargets([T.SoftmaxTarget(int(c)) for c in classes], classes, (*key_base, tuple(classes)))
    if rule.kind == "labels":
        _check_range(_class_scores(out, rule), list(rule.values), rule)
        return ImageTargets([T.MultiLabelTarget(rule.values)] * n, [None] * n, key_base)
    if rule.kind == "binary":
        index = rule.values[1] if len(rule.values) > 1 else None
        return ImageTargets([T.BinaryTarget(rule.values[0], index)] * n, [None] * n, key_base)
    if rule.kind == "regression":
        return ImageTargets([T.RegressionTarget(rule.values[0] if rule.values else 0)] * n, [None] * n, key_base)
    if rule.kind == "seg":
        k = rule.values[0]
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(
                f"--target {rule} needs a segmentation output (N, K, H, W), but the (selected) output is {shape}; "
                "for a model returning a dict pass --output KEY (torchvision: --output out)"
            )
        if k >= out.shape[1]:
            raise ConfigError(f"--target {rule}: class {k} is out of range for {out.shape[1]} segmentation classes")
        masks = (out.detach().argmax(dim=1) == k).to(out.dtype)
        return ImageTargets([T.SegmentationTarget(k, m) for m in masks], [k] * n, key_base)
    if rule.kind == "box":
        i = rule.values[0]
        if not isinstance(out, (list, tuple)) or not all(isinstance(d, Mapping) and "boxes" in d for d in out):
            raise ConfigError(
                f"--target {rule} needs a detector's output (a list of dicts with boxes, labels, scores: torchvision "
                f"detection models in eval mode), got {type(out).__name__}"
            )
        items, classes = [], []
        for j, det in enumerate(out):
            if len(det["boxes"]) <= i:
                raise ConfigError(
                    f"--target {rule}: image {j + 1} of the batch has {len(det['boxes'])} detection(s), so no "
                    f"detection {i}; lower the index or the detector's score threshold"
                )
            label = int(det["labels"][i])
            items.append(T.BoxScoreTarget([label], det["boxes"][i].detach()))
            classes.append(label)
        return ImageTargets(items, classes, (*key_base, tuple(classes)))
    raise ConfigError(f"unknown target kind {rule.kind!r}; valid forms: {TARGET_FORMS}")


def _check_range(out: Any, classes: Sequence[int], rule: TargetSpec) -> None:
    c = _class_scores(out, rule).shape[1]
    bad = [k for k in classes if not 0 <= int(k) < c]
    if bad:
        raise ConfigError(f"--target {rule}: class {bad[0]} is out of range for {c} classes (0 .. {c - 1})")


def target_key(t: torch.Tensor | ImageTargets) -> tuple[Any, ...]:
    """Equal for equal targets of one batch (class tensors by value, target objects by spec
    and class)."""
    if isinstance(t, ImageTargets):
        return ("objects", *t.key)
    return ("classes", tuple(t.tolist()))


def target_classes(t: torch.Tensor | ImageTargets) -> list[int | None]:
    """The class each image is explained for (None where a target explains no single class)."""
    if isinstance(t, ImageTargets):
        return [None if c is None else int(c) for c in t.classes]
    return [int(v) for v in t.tolist()]


def target_rule(explainer: Any, rule: str | int | TargetSpec) -> str:
    """``rule`` in words, for the manifest."""
    among = f" among classes {','.join(map(str, explainer.classes))}" if explainer.classes is not None else ""
    if isinstance(rule, TargetSpec):
        if rule.kind == "softmax":
            inner = target_rule(explainer, rule.rule if rule.rule is not None else "auto")
            return f"softmax probability of the {inner}" if rule.rule in _RULES else f"softmax probability of {inner}"
        if rule.kind == "labels":
            return f"sum of the logits of classes {','.join(map(str, rule.values))}"
        if rule.kind == "binary":
            col = f" (column {rule.values[1]})" if len(rule.values) > 1 else ""
            return f"binary output{col}, {'positive' if rule.values[0] == 1 else 'negative'} class"
        if rule.kind == "regression":
            return f"regression output {rule.values[0] if rule.values else 0}"
        if rule.kind == "seg":
            return f"segmentation class {rule.values[0]} over the pixels predicted as {rule.values[0]}"
        if rule.kind == "box":
            return f"detection {rule.values[0]} (IoU-matched box score)"
        raise ConfigError(f"unknown target kind {rule.kind!r}")
    if rule == "auto":
        return f"prediction{among}"
    if rule == "label":
        return f"label (prediction{among} where none)"
    return f"class {int(rule)}"
