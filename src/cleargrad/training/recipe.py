"""How :func:`cleargrad.training.fit` optimises, as one object: a preset and its overrides.

``fit(model, data, recipe=Recipe.paper(epochs=30, schedule="cosine"))``; the flat keywords of
the common case (``fit(model, data, epochs=30, lr=0.05)``) are this object's fields and keep
working. A recipe given both ways is an error naming the object form.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["Recipe"]


@dataclass(frozen=True)
class Recipe:
    """A training recipe: a preset of :data:`cleargrad.training.loop.PRESETS` and the
    settings that override it (None: the preset's value).

    Attributes:
        epochs: number of epochs.
        preset: ``"paper"`` (spec § 4.4: SGD lr 0.1, momentum 0.9, weight decay 5e-4, LR
            x0.2 at 30/60/80 % of the epochs, batch 128) or None (plain SGD lr 0.1, no momentum).
        optimizer: ``"sgd"`` or ``"adam"`` (default: the preset's; Adam defaults to lr 1e-3
            and no weight decay).
        lr, momentum, weight_decay, gamma, batch_size: override the preset.
        milestones: epochs (ints) or fractions of ``epochs`` (floats in (0, 1)) at which the
            LR is multiplied by ``gamma`` (``schedule="step"``).
        schedule: ``"step"`` (default) or ``"cosine"`` (see :func:`cleargrad.training.lr_factor`).
        warmup_epochs: linear warm-up over this many epochs (0 = none).
        min_lr: the cosine schedule's final LR (default 0).
    """

    epochs: int = 10
    preset: str | None = "paper"
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    milestones: Sequence[float] | None = None
    gamma: float | None = None
    schedule: str | None = None
    warmup_epochs: int | None = None
    min_lr: float | None = None
    batch_size: int | None = None

    @classmethod
    def paper(cls, **overrides: Any) -> Recipe:
        """The paper's recipe (spec § 4.4) with ``overrides``."""
        return cls(preset="paper", **overrides)

    @classmethod
    def plain(cls, **overrides: Any) -> Recipe:
        """Plain SGD (lr 0.1, no momentum, no weight decay, constant LR) with ``overrides``."""
        return cls(preset=None, **overrides)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The recipe's fields (also flat keywords of :func:`~cleargrad.training.fit`)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def overrides(self) -> dict[str, Any]:
        """The settings that override the preset (None: keep the preset's)."""
        skip = {"epochs", "preset", "optimizer"}
        return {k: getattr(self, k) for k in self.names() if k not in skip}

    @classmethod
    def of_call(cls, recipe: Recipe | None, flat: Mapping[str, Any]) -> Recipe:
        """``recipe``, or the recipe of a flat keyword call; unknown keywords are a TypeError
        (as Python's own), a recipe given both ways a :class:`~cleargrad.errors.ConfigError`."""
        unknown = sorted(set(flat) - set(cls.names()))
        if unknown:
            raise TypeError(
                f"fit() got unexpected keyword argument(s) {', '.join(unknown)}; recipe settings: "
                f"{', '.join(cls.names())}"
            )
        if recipe is None:
            return cls(**flat)
        if flat:
            raise ConfigError(
                f"fit: give the recipe either as recipe=Recipe(...) or as keywords ({', '.join(sorted(flat))}), "
                "not both"
            )
        if not isinstance(recipe, cls):
            raise ConfigError(f"fit: recipe= must be a Recipe, got {type(recipe).__name__}")
        return recipe

    @classmethod
    def parameters(cls) -> list[inspect.Parameter]:
        """The recipe's fields as keyword-only parameters with their defaults."""
        return [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
            for f in dataclasses.fields(cls)
        ]
