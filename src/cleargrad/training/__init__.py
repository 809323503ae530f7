"""Interpretable-gradient training (spec § 4): the loss, its error functions and a training loop.

>>> import cleargrad as cg
>>> from cleargrad.training import fit
>>> loss_fn = cg.InterpretableGradientLoss(error="cosine", lam=7.5e-3)
>>> result = fit(model, train_set, test_set, epochs=30, loss_fn=loss_fn, checkpoint_dir="runs/cos")  # doctest: +SKIP
"""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .gradient_errors import ERRORS, gradient_error
from .loop import PRESETS, SCHEDULES, FitResult, evaluate, fit, iterate_batches, lr_factor, resolve_milestones
from .loss import SCORES, ClassificationLoss, InterpretableGradientLoss, LossParts
from .passes import frozen_running_stats, same_randomness
from .recipe import Recipe

__all__ = [
    "ERRORS",
    "PRESETS",
    "SCHEDULES",
    "SCORES",
    "Checkpoint",
    "ClassificationLoss",
    "FitResult",
    "InterpretableGradientLoss",
    "LossParts",
    "Recipe",
    "evaluate",
    "fit",
    "frozen_running_stats",
    "gradient_error",
    "iterate_batches",
    "load_checkpoint",
    "lr_factor",
    "resolve_milestones",
    "same_randomness",
    "save_checkpoint",
]
