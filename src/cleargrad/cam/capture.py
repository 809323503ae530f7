"""Target-layer activations (and their gradients) from forward passes of the model.

Two kinds of pass serve every CAM method:

* :func:`layer_activations` captures the layers' outputs without any gradient; with
  ``stop=True`` it aborts the forward pass as soon as the last of them has been
  computed, so a pass "up to the layer" costs only the part of the network before it;
* :func:`activations_and_gradients` runs one forward pass and one backward pass from the
  target scores to the captured outputs (no parameter gradients, no input gradient: the
  captured output is a leaf of the graph when nothing before it requires grad).

Both check that each layer was called exactly once and returned a tensor that its reshape
spec (:mod:`cleargrad.core.tokens`: ``"auto"`` by default) turns into ``(N, K, h, w)``
(token sequences and channels-last maps of transformers included), and raise
:class:`~cleargrad.LayerError` with a clear message otherwise. Activations and gradients
are returned in that ``(N, K, h, w)`` form: the gradient goes through the same reshape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Union, cast

import torch
from torch import nn

from ..core import (
    capture_activations,
    forward_hooks,
    gather_scores,
    layer_name,
    model_input,
    resolve_targets,
    select_output,
)
from ..core.targets import OutputSelector, TargetLike
from ..core.tokens import Layout, ReshapeSpec, resolve_layout
from ..errors import ConfigError, LayerError

__all__ = [
    "layer_activations",
    "activations_and_gradients",
    "check_layer_outputs",
    "forward_with_activations",
    "forward_with_layers",
    "reshape_specs",
]

ReshapeArg = Union[ReshapeSpec, Sequence[ReshapeSpec]]


def reshape_specs(reshape: ReshapeArg, n: int) -> list[ReshapeSpec]:
    """One reshape spec per layer: a list of ``n`` specs, or one spec for every layer."""
    if isinstance(reshape, (list, tuple)):
        if len(reshape) != n:
            raise ConfigError(f"reshape= has {len(reshape)} entries but there are {n} layers; give one per layer")
        return list(reshape)
    return [cast(ReshapeSpec, reshape)] * n


class _StopForward(Exception):
    """Raised from a forward hook to end a pass once every wanted layer has run."""


class _Recorder:
    """Forward hook recording each module's output and how often it ran.

    Later layers may work in place, so they continue on a copy and the recorded output
    stays intact. With ``stop=True`` the pass ends once every module has run.
    """

    def __init__(self, modules: Sequence[nn.Module], stop: bool = False) -> None:
        self.outs: list[Any] = [None] * len(modules)
        self.calls = [0] * len(modules)
        self.index = {id(m): i for i, m in enumerate(modules)}
        self.stop = stop

    def __call__(self, module: nn.Module, _inp: Any, out: Any) -> Any:
        i = self.index[id(module)]
        self.calls[i] += 1
        self.outs[i] = out
        if self.stop and all(self.calls):
            raise _StopForward
        return out.clone() if isinstance(out, torch.Tensor) else None


def check_layer_outputs(
    model: nn.Module,
    modules: Sequence[nn.Module],
    outputs: Sequence[Any],
    calls: Sequence[int] | None = None,
    *,
    size: Sequence[int] | None = None,
    reshape: ReshapeArg = "auto",
) -> list[Layout]:
    """Validate captured layer outputs (each layer ran, once) and find how each becomes an
    ``(N, K, h, w)`` activation for an input of spatial ``size`` (see
    :func:`~cleargrad.core.tokens.resolve_layout`)."""
    specs = reshape_specs(reshape, len(modules))
    layouts = []
    for i, (m, out) in enumerate(zip(modules, outputs)):
        name = layer_name(model, m) or type(model).__name__
        if out is None:
            raise LayerError(
                f"layer {name!r} ({type(m).__name__}) was not called during the forward pass, so it "
                "has no activation to explain; pick a layer the model's forward actually uses"
            )
        if calls is not None and calls[i] > 1:
            raise LayerError(
                f"layer {name!r} ({type(m).__name__}) is called {calls[i]} times in one forward pass; "
                "CAM methods need a layer used once (pick one of its call sites' modules instead)"
            )
        layouts.append(resolve_layout(specs[i], out, size, name))
    return layouts


def layer_activations(
    model: nn.Module,
    x: torch.Tensor,
    modules: Sequence[nn.Module],
    *,
    stop: bool = True,
    reshape: ReshapeArg = "auto",
) -> list[torch.Tensor]:
    """Outputs of ``modules`` for input ``x`` as ``(N, K, h, w)``, without gradient.

    Runs under ``torch.inference_mode()``. With ``stop=True`` the forward pass ends right
    after the last of the modules has produced its output (nothing after it runs).
    """
    rec = _Recorder(modules, stop=stop)
    with torch.inference_mode(), forward_hooks(modules, rec), contextlib.suppress(_StopForward):
        model(model_input(model, x))
    layouts = check_layer_outputs(
        model, modules, rec.outs, None if stop else rec.calls, size=x.shape[2:], reshape=reshape
    )
    # ordinary tensors, usable outside inference mode
    return [lay.apply(a).clone() for lay, a in zip(layouts, rec.outs)]


def forward_with_layers(
    model: nn.Module,
    x: torch.Tensor,
    modules: Sequence[nn.Module],
    output: OutputSelector = None,
    reshape: ReshapeArg = "auto",
) -> tuple[list[torch.Tensor], list[Layout], torch.Tensor]:
    """One full forward pass: the layers' raw outputs, their layouts and the scores."""
    rec = _Recorder(modules)
    with forward_hooks(modules, rec):
        scores = select_output(model(model_input(model, x)), output)
    layouts = check_layer_outputs(model, modules, rec.outs, rec.calls, size=x.shape[2:], reshape=reshape)
    return [a.detach() for a in rec.outs], layouts, scores.detach()


def forward_with_activations(
    model: nn.Module,
    x: torch.Tensor,
    modules: Sequence[nn.Module],
    output: OutputSelector = None,
    reshape: ReshapeArg = "auto",
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One full forward pass (in the caller's grad mode; nothing requires grad): the layers'
    ``(N, K, h, w)`` activations and the ``(N, C)`` scores."""
    raws, layouts, scores = forward_with_layers(model, x, modules, output, reshape)
    return [lay.apply(a) for lay, a in zip(layouts, raws)], scores


def activations_and_gradients(
    model: nn.Module,
    x: torch.Tensor,
    modules: Sequence[nn.Module],
    target: TargetLike,
    output: OutputSelector = None,
    reshape: ReshapeArg = "auto",
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """One forward and one backward pass: ``(activations, gradients, scores, targets)``.

    ``gradients[i]`` is ``d sum_n y_{c_n}(x_n) / d A_i``, which is each image's own score
    gradient because images do not interact in eval mode. The backward pass stops at the
    captured outputs (they are graph leaves when nothing before them requires grad, which
    :func:`~cleargrad.core.preserved_state` ensures by freezing the parameters). When
    ``target`` is None the targets are the argmax of this very pass. A token layer's
    activation and gradient both go through the layer's reshape (prefix tokens dropped).
    """
    x = x.detach()
    with torch.enable_grad():
        with capture_activations(modules, requires_grad=True) as cap:
            calls = [0] * len(modules)
            index = {id(m): i for i, m in enumerate(modules)}

            def count(module: nn.Module, _inp: Any, _out: Any) -> None:
                calls[index[id(module)]] += 1

            with forward_hooks(modules, count):
                scores = select_output(model(model_input(model, x)), output)
        layouts = check_layer_outputs(model, modules, cap.activations, calls, size=x.shape[2:], reshape=reshape)
        acts = cast(list[torch.Tensor], cap.activations)  # every layer ran (checked above)
        t = resolve_targets(target, x.shape[0], scores=scores)
        need = [a for a in acts if a.requires_grad]
        grads_needed: Sequence[torch.Tensor | None] = ()
        if need and scores.requires_grad:
            grads_needed = torch.autograd.grad(gather_scores(scores, t).sum(), need, allow_unused=True)
    it = iter(grads_needed)
    grads = []
    for a, lay in zip(acts, layouts):
        g = next(it, None) if (a.requires_grad and scores.requires_grad) else None
        grads.append(lay.apply(torch.zeros_like(a) if g is None else g.detach()))
    return [lay.apply(a.detach()) for lay, a in zip(layouts, acts)], grads, scores.detach(), t
