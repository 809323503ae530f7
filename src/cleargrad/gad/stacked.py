"""Run the original and the support models as one model, so that a base method explains
all ``S + 1`` of them in a single call.

The input batch is the ``S + 1`` copies of the images, model after model (``k`` blocks
of ``N`` rows). Base methods that expand the batch (Integrated Gradients' steps) do so in
whole repetitions of that block, so row ``r`` belongs to model ``(r mod kN) // N``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..core import select_output
from ..core.targets import OutputSelector

__all__ = ["StackedModels"]

# which base methods stack is stated on their classes: ``Method.stackable`` (the model is
# called only on whole repetitions of the stacked batch) and ``Method.stack_by_default``
# (what ``batch_models="auto"`` stacks)

class StackedModels(nn.Module):
    """``k`` models with one output each, evaluated on ``k`` consecutive blocks of ``block`` rows."""

    def __init__(self, models: Sequence[nn.Module], block: int, output: OutputSelector = None) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        self.block = block
        self.output = output
        # only the wrapper's own flags: the wrapped models keep theirs
        self.training = False
        self.models.training = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b = len(self.models), self.block
        if x.shape[0] % (k * b):
            raise RuntimeError(
                f"stacked batch of {x.shape[0]} rows is not a multiple of {k} models x {b} images; "
                "run GAD with batch_models=False for this base method"
            )
        xs = x.reshape(-1, k, b, *x.shape[1:])
        outs = [select_output(m(xs[:, j].reshape(-1, *x.shape[1:])), self.output) for j, m in enumerate(self.models)]
        c = outs[0].shape[1]
        return torch.stack([o.reshape(-1, b, c) for o in outs], 1).reshape(-1, c)
