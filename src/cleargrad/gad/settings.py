"""GAD's settings in three groups: distancing, support-model training, fusion.

``GAD(model, base, classes, n_support, distancing=Distancing(...), training=TrainSettings(...),
fusion=Fusion(...))`` gives each group as one object; the flat keywords of the common case
(``GAD(model, classes=(3, 5), epochs=10, tau="paper")``) are the groups' fields and keep
working, with the groups' defaults. A group given both ways is an error naming the object
form. The field lists here are the one place these settings and their defaults are declared.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .distancing import AlphaRule
from .fusion import Threshold
from .support import TrainSettings

__all__ = ["GROUPS", "Distancing", "Fusion", "flat_parameters", "split_settings"]


@dataclass(frozen=True)
class Distancing:
    """How the support models' targets are pushed apart (see :class:`cleargrad.GAD`).

    Attributes:
        strategy: ``"pairwise"`` (default), ``"one_vs_all"`` or ``"split"`` (spec § 3.6).
        groups: for ``"split"``, the two groups of classes; None: 2-means of the class-mean logits.
        alphas: ``"std"`` (default), ``"margin"`` or an explicit list of ``S`` entries.
        alpha_scale: multiplies the rule's step (not an explicit list).
    """

    strategy: str = "pairwise"
    groups: Sequence[Sequence[int]] | None = None
    alphas: AlphaRule = "std"
    alpha_scale: float = 1.0


@dataclass(frozen=True)
class Fusion:
    """How the ``S + 1`` maps become one (see :class:`cleargrad.GAD`).

    Attributes:
        tau: importance threshold (default 0.3; ``"paper"``, a quantile ``"q90"``, ``"positive"``).
        combine: ``"mask"`` (default) or ``"min"``.
        reduction: how a multi-channel map becomes 2-D (default ``"abs_sum"``).
        batch_models: explain the ``S + 1`` models in one call of the base method
            (True, False or ``"auto"``).
    """

    tau: Threshold = 0.3
    combine: str = "mask"
    reduction: str = "abs_sum"
    batch_models: bool | str = "auto"


#: ``(keyword of GAD, settings class, its fields that are flat keywords of GAD)``
GROUPS: tuple[tuple[str, type, tuple[str, ...]], ...] = (
    ("distancing", Distancing, tuple(f.name for f in dataclasses.fields(Distancing))),
    ("training", TrainSettings,
     tuple(f.name for f in dataclasses.fields(TrainSettings) if f.name != "eval_batch_size")),
    ("fusion", Fusion, tuple(f.name for f in dataclasses.fields(Fusion))),
)


def split_settings(flat: Mapping[str, Any], groups: Mapping[str, Any]) -> dict[str, Any]:
    """``{group keyword: settings object}`` from the objects given in ``groups`` (None: not
    given) and the flat keywords ``flat``; an unknown flat keyword is a ``TypeError`` (as
    Python's own), a group given both ways a :class:`~cleargrad.errors.ConfigError`."""
    owner = {name: key for key, _, names in GROUPS for name in names}
    unknown = sorted(set(flat) - set(owner))
    if unknown:
        raise TypeError(
            f"GAD() got unexpected keyword argument(s) {', '.join(unknown)}; valid settings: {', '.join(owner)}"
        )
    out: dict[str, Any] = {}
    for key, cls, _ in GROUPS:
        mine = {k: v for k, v in flat.items() if owner[k] == key}
        given = groups.get(key)
        if given is not None and mine:
            raise ConfigError(
                f"GAD: give the {key} settings either as {key}={cls.__name__}(...) or as keywords "
                f"({', '.join(sorted(mine))}), not both"
            )
        if given is not None and not isinstance(given, cls):
            raise ConfigError(f"GAD: {key}= must be a {cls.__name__}, got {type(given).__name__}")
        out[key] = given if given is not None else cls(**mine)
    return out


def flat_parameters() -> list[inspect.Parameter]:
    """The flat keywords of :class:`cleargrad.GAD` as keyword-only parameters with the groups' defaults."""
    params = []
    for _, cls, names in GROUPS:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in names:
            f = fields[name]
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=f.default))
    return params
