"""Which class each image is explained for, per method (``--target``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ConfigError
from .explainers import Explainer

__all__ = ["parse_target", "target_rule", "targets_for"]


def targets_for(
    explainer: Explainer, rule: str | int, logits: torch.Tensor, labels: Sequence[int | None]
) -> torch.Tensor:
    """The class each image is explained for, by ``rule``: ``"auto"`` (the prediction, among
    ``explainer.classes`` when it is restricted), ``"label"`` (the image's class; the
    prediction where it has none) or a class index."""
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


def target_rule(explainer: Explainer, rule: str | int) -> str:
    """``rule`` in words, for the manifest."""
    among = f" among classes {','.join(map(str, explainer.classes))}" if explainer.classes is not None else ""
    if rule == "auto":
        return f"prediction{among}"
    if rule == "label":
        return f"label (prediction{among} where none)"
    return f"class {int(rule)}"


def parse_target(text: str | int, allow_label: bool) -> str | int:
    """``--target``: ``"auto"``, ``"label"`` (when ``allow_label``) or a class index."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    t = str(text).strip().lower()
    if t == "auto" or (allow_label and t == "label"):
        return t
    valid = "auto, label or a class index" if allow_label else "auto or a class index"
    try:
        k = int(t)
    except ValueError:
        raise ConfigError(f"--target must be {valid}, got {text!r}") from None
    if not -(2**63) <= k < 2**63:
        raise ConfigError(f"--target {text} is not a class index (far beyond any number of classes); give {valid}")
    return k
