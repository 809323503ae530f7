"""One forward and one backward pass from any per-image objective of the scores.

The CAMs of :mod:`cleargrad.cam.gradient` differentiate the target score; some methods
differentiate something else (FinerCAM: a weighted difference of scores) or need the
graph of the gradient itself (ShapleyCAM: a Hessian-vector product). This pass captures
the layers' raw outputs as graph nodes, evaluates ``objective(scores) -> (N,)`` and
returns the gradients of its sum, optionally with their graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from ..core import capture_activations, forward_hooks, model_input, select_output
from ..core.targets import OutputSelector
from ..core.tokens import Layout
from .capture import ReshapeArg, check_layer_outputs

__all__ = ["ObjectivePass", "objective_pass"]


@dataclass
class ObjectivePass:
    """Raw layer outputs (graph nodes), their gradients, layouts and the scores."""

    raws: list[torch.Tensor]
    grads: list[torch.Tensor]
    layouts: list[Layout]
    scores: torch.Tensor

    def activations(self) -> list[torch.Tensor]:
        """The detached ``(N, K, h, w)`` activations."""
        return [lay.apply(a.detach()) for lay, a in zip(self.layouts, self.raws)]

    def gradients(self) -> list[torch.Tensor]:
        """The detached ``(N, K, h, w)`` gradients."""
        return [lay.apply(g.detach()) for lay, g in zip(self.layouts, self.grads)]


def objective_pass(
    model: nn.Module,
    x: torch.Tensor,
    modules: Sequence[nn.Module],
    objective: Callable[[torch.Tensor], torch.Tensor],
    output: OutputSelector = None,
    reshape: ReshapeArg = "auto",
    *,
    create_graph: bool = False,
) -> ObjectivePass:
    """Forward ``x``, then ``d sum_n objective(scores)_n / d A_i`` for each layer ``i``.

    ``objective`` receives the ``(N, C)`` scores (with graph) and returns one value per
    image; it may read the detached scores to choose classes. With ``create_graph`` the
    gradients keep their graph (for second derivatives w.r.t. the same outputs).
    """
    x = x.detach()
    with torch.enable_grad(), capture_activations(modules, requires_grad=True) as cap:
        calls = [0] * len(modules)
        index = {id(m): i for i, m in enumerate(modules)}

        def count(module: nn.Module, _inp: Any, _out: Any) -> None:
            calls[index[id(module)]] += 1

        with forward_hooks(modules, count):
            scores = select_output(model(model_input(model, x)), output)
    layouts = check_layer_outputs(model, modules, cap.activations, calls, size=x.shape[2:], reshape=reshape)
    acts = cast(list[torch.Tensor], cap.activations)  # check_layer_outputs refused None and non-tensors
    with torch.enable_grad():
        value = objective(scores)
        need = [a for a in acts if a.requires_grad]
        got: Sequence[torch.Tensor | None] = ()
        if need and value.requires_grad:
            got = torch.autograd.grad(value.sum(), need, allow_unused=True, create_graph=create_graph)
    it = iter(got)
    grads = []
    for a in acts:
        g = next(it, None) if (a.requires_grad and value.requires_grad) else None
        grads.append(torch.zeros_like(a) if g is None else g)
    return ObjectivePass(list(acts), grads, layouts, scores.detach())
