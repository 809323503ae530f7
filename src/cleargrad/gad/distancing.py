"""Algorithm 1 of GAD: artificial distancing of pre-softmax outputs (spec § 3.2, § 3.6).

Two disjoint groups of classes ``G1``, ``G2`` are pushed apart: for an image whose
label is in ``G1`` a constant ``α_1`` is subtracted from every logit of ``G2``, and
for an image of ``G2`` a constant ``α_2`` from every logit of ``G1``. The pairwise
case of the paper is ``G1 = {k}``, ``G2 = {l}``. One constant per group and per column
keeps the order of the images of one class in every column, and raises each image's
margin by exactly its group's ``α``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import torch

from ..errors import ConfigError

__all__ = [
    "AlphaRule",
    "ALPHA_RULES",
    "Grouping",
    "alpha_schedule",
    "check_alphas",
    "distance_targets",
    "group_margin",
]

ALPHA_RULES = ("std", "margin")
AlphaRule = Union[str, Sequence[Union[float, Sequence[float]]]]


@dataclass(frozen=True)
class Grouping:
    """Two disjoint, non-empty groups of class indices to push apart.

    Attributes:
        first: the classes of ``G1`` (for the pairwise case, ``(k,)``).
        second: the classes of ``G2`` (for the pairwise case, ``(l,)``).
    """

    first: tuple[int, ...]
    second: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.first or not self.second:
            raise ConfigError(f"both groups must be non-empty, got {self.first} and {self.second}")
        if set(self.first) & set(self.second):
            raise ConfigError(f"the two groups share classes: {sorted(set(self.first) & set(self.second))}")

    @property
    def classes(self) -> tuple[int, ...]:
        """All classes concerned, ``G1`` then ``G2``."""
        return self.first + self.second

    def in_first(self, labels: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the labels that belong to ``G1``."""
        return torch.isin(labels, torch.tensor(self.first, device=labels.device))

    def in_second(self, labels: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the labels that belong to ``G2``."""
        return torch.isin(labels, torch.tensor(self.second, device=labels.device))

    def to_dict(self) -> dict[str, list[int]]:
        """JSON-friendly form."""
        return {"first": list(self.first), "second": list(self.second)}


def group_margin(outputs: torch.Tensor, labels: torch.Tensor, grouping: Grouping) -> torch.Tensor:
    """Per image, how far its own group leads: ``max_{own} z - max_{other} z``.

    For the pair ``(k, l)`` this is ``z_k - z_l`` for class-``k`` images and
    ``z_l - z_k`` for class-``l`` images. Images of neither group get NaN.
    """
    first = outputs[:, list(grouping.first)].amax(1)
    second = outputs[:, list(grouping.second)].amax(1)
    m = torch.full_like(first, math.nan)
    a, b = grouping.in_first(labels), grouping.in_second(labels)
    m[a] = (first - second)[a]
    m[b] = (second - first)[b]
    return m


def check_alphas(alphas: Sequence[float | Sequence[float]], n_support: int) -> torch.Tensor:
    """Validate an explicit schedule and return it as a float64 ``(S, 2)`` tensor.

    ``alphas`` has one entry per support model: a pair ``(α_1, α_2)`` (for ``G1``
    and ``G2`` images) or one number used for both. Every value must be finite and
    ``>= 0``, and each column non-decreasing in the step.
    """
    try:
        rows = [(float(a), float(a)) if isinstance(a, (int, float)) else tuple(float(v) for v in a) for a in alphas]
    except TypeError as e:
        raise ConfigError(f"alphas must be a sequence of numbers or of (alpha_1, alpha_2) pairs, got {alphas!r}") from e
    if any(len(r) != 2 for r in rows):
        raise ConfigError(f"each alpha entry must be one number or a pair (alpha_1, alpha_2), got {alphas!r}")
    if len(rows) != n_support:
        raise ConfigError(f"alphas has {len(rows)} entries but n_support={n_support}; give one entry per support model")
    t = torch.tensor(rows, dtype=torch.float64).reshape(n_support, 2)
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ConfigError(f"alphas must be finite and >= 0, got {rows}")
    if n_support > 1 and bool((t[1:] < t[:-1]).any()):
        raise ConfigError(f"alphas must be non-decreasing from one support model to the next, got {rows}")
    return t


def alpha_schedule(
    logits: torch.Tensor,
    labels: torch.Tensor,
    grouping: Grouping,
    n_support: int,
    rule: AlphaRule = "std",
    scale: float = 1.0,
) -> torch.Tensor:
    """The distancing constants ``α^(s)``, ``s = 1..S``, as a float64 ``(S, 2)`` tensor.

    Args:
        logits: the original model's outputs ``(n, C)`` on the training images.
        labels: their labels ``(n,)``.
        grouping: the two groups.
        n_support: ``S``.
        rule: ``"std"`` [spec PROPOSAL, default]: ``α_g^(s) = s · scale · Δ_g`` with
            ``Δ_g`` the standard deviation (population) over the images of group ``g``
            of the other group's logits (averaged over the other group's columns);
            ``"margin"``: ``Δ_g`` = mean margin of the images of group ``g``
            (:func:`group_margin`); or an explicit sequence (see :func:`check_alphas`).
        scale: multiplies ``Δ`` (ignored for an explicit sequence).
    """
    if n_support < 0:
        raise ConfigError(f"n_support must be >= 0, got {n_support}")
    if not isinstance(rule, str):
        return check_alphas(rule, n_support)
    if rule not in ALPHA_RULES:
        raise ConfigError(f"unknown alpha rule {rule!r}; valid: {', '.join(ALPHA_RULES)} or an explicit list")
    if not (math.isfinite(scale) and scale >= 0):
        raise ConfigError(f"alpha_scale must be finite and >= 0, got {scale}")
    z = logits.detach().double()
    deltas = []
    for own, other in ((grouping.first, grouping.second), (grouping.second, grouping.first)):
        rows = torch.isin(labels, torch.tensor(own, device=labels.device))
        if not bool(rows.any()):
            raise ConfigError(f"no training image of the classes {own}: cannot compute the alpha schedule")
        if rule == "std":
            d = z[rows][:, list(other)].std(0, correction=0).mean()
        else:
            d = group_margin(z, labels, grouping)[rows].mean()
            if d < 0:
                raise ConfigError(
                    f"the mean margin of the classes {own} is negative ({float(d):.3g}): the model "
                    "mostly misclassifies them; use alphas='std' or an explicit list"
                )
        deltas.append(float(d))
    steps = torch.arange(1, n_support + 1, dtype=torch.float64).unsqueeze(1)
    return steps * scale * torch.tensor(deltas, dtype=torch.float64)


def distance_targets(
    logits: torch.Tensor, labels: torch.Tensor, grouping: Grouping, alpha: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """Regression targets of one support model (Algorithm 1, one step).

    Images of ``G1`` get ``alpha[0]`` subtracted from every ``G2`` logit, images of
    ``G2`` get ``alpha[1]`` subtracted from every ``G1`` logit; everything else is the
    original logit. Returns a new tensor shaped like ``logits``.
    """
    a1, a2 = (float(v) for v in alpha)
    t = logits.detach().clone()
    first, second = grouping.in_first(labels), grouping.in_second(labels)
    cols1 = torch.tensor(grouping.first, device=t.device)
    cols2 = torch.tensor(grouping.second, device=t.device)
    t[first.nonzero().squeeze(1).unsqueeze(1), cols2] -= a1
    t[second.nonzero().squeeze(1).unsqueeze(1), cols1] -= a2
    return t
