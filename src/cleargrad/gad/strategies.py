"""Multi-class strategies of GAD (spec § 3.6): which groups of classes are pushed apart.

Each strategy yields a list of *tasks* ``(grouping, explained classes)``; one set of
``S`` support models is trained per task, and a target class is explained with the
support models of the task that lists it.

- ``"pairwise"`` (default): exactly two classes ``(k, l)``, one task (§ 3.2).
- ``"one_vs_all"``: one task per class ``c``: ``G1 = {c}``, ``G2`` = the other classes
  concerned; explains ``c`` only.
- ``"split"``: one task whose two groups partition the classes, given by the user or
  found by clustering the class-mean logit vectors into two groups (2-means with a
  deterministic farthest-pair start) [spec PROPOSAL].

With two classes every strategy reduces to the pairwise one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ConfigError
from .distancing import Grouping

__all__ = ["STRATEGIES", "Task", "make_tasks", "two_means"]

STRATEGIES = ("pairwise", "one_vs_all", "split")
Task = tuple[Grouping, tuple[int, ...]]


def two_means(vectors: torch.Tensor, n_iter: int = 100) -> torch.Tensor:
    """Split the rows of ``vectors`` (k, d) into two clusters; returns a bool (k,) mask.

    Lloyd iterations from the two rows farthest apart (deterministic, no seed needed).
    Row 0's cluster is marked ``True``, so the result does not depend on label order.
    """
    v = vectors.double()
    if v.shape[0] < 2:
        raise ConfigError("clustering into two groups needs at least two classes")
    d = torch.cdist(v, v)
    i, j = divmod(int(d.argmax()), v.shape[0])
    centers = torch.stack([v[i], v[j]])
    assign = torch.cdist(v, centers).argmin(1)
    for _ in range(n_iter):
        if bool((assign == 0).all()) or bool((assign == 1).all()):
            break
        centers = torch.stack([v[assign == 0].mean(0), v[assign == 1].mean(0)])
        new = torch.cdist(v, centers).argmin(1)
        if bool((new == 0).all()) or bool((new == 1).all()) or torch.equal(new, assign):
            break
        assign = new
    return assign == assign[0]


def make_tasks(
    strategy: str,
    classes: Sequence[int],
    logits: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    groups: Sequence[Sequence[int]] | None = None,
) -> list[Task]:
    """The tasks of a strategy for the classes concerned.

    ``logits`` / ``labels`` (the original model's outputs on the training images) are
    needed only by ``"split"`` without ``groups``.
    """
    classes = tuple(int(c) for c in classes)
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ConfigError(f"GAD needs at least two distinct classes, got {classes}")
    if strategy == "pairwise":
        if len(classes) != 2:
            raise ConfigError(
                f"strategy='pairwise' takes exactly two classes, got {len(classes)}; use "
                "strategy='one_vs_all' or 'split' for more"
            )
        return [(Grouping((classes[0],), (classes[1],)), classes)]
    if strategy == "one_vs_all":
        return [(Grouping((c,), tuple(o for o in classes if o != c)), (c,)) for c in classes]
    if groups is not None:
        if len(groups) != 2:
            raise ConfigError(f"groups must be two sequences of classes, got {groups!r}")
        g1, g2 = (tuple(int(c) for c in g) for g in groups)
        if sorted(g1 + g2) != sorted(classes):
            raise ConfigError(f"groups {g1} and {g2} must partition the classes {classes}")
        return [(Grouping(g1, g2), classes)]
    if logits is None or labels is None:
        raise ConfigError("strategy='split' without groups needs the training logits to cluster the classes")
    cols = list(classes)
    means = torch.stack([logits[labels == c][:, cols].double().mean(0) for c in classes])
    side = two_means(means).tolist()
    g1 = tuple(c for c, s in zip(classes, side) if s)
    g2 = tuple(c for c, s in zip(classes, side) if not s)
    return [(Grouping(g1, g2), classes)]
