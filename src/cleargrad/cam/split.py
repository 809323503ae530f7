"""Split a model at a layer with torch.fx, to re-run only the part after the layer.

:func:`split_at_layer` traces the model symbolically with the target layer as a leaf,
and builds a *tail* ``GraphModule`` computing the model's output from the layer's output
(plus, when the network branches around the layer, the few values from before the layer
that the tail also reads: its *frontier*, computed by a *head* module). The tail shares
the model's submodules and parameters (nothing is copied). Models that cannot be traced
(data-dependent control flow, unsupported calls) give ``None``: callers fall back to
full forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

__all__ = ["LayerSplit", "split_at_layer"]


@dataclass
class LayerSplit:
    """A model cut at one layer: ``tail(A, *frontier)`` equals the model's forward output.

    Attributes:
        tail: computes the model's output from the layer output and the frontier values.
        head: computes the frontier values from the model's input (None when the tail
            needs nothing but the layer output, the common case).
    """

    tail: fx.GraphModule
    head: fx.GraphModule | None

    def frontier(self, x: torch.Tensor) -> tuple[Any, ...]:
        """The values from before the layer that the tail reads (empty for most models)."""
        if self.head is None:
            return ()
        out = self.head(x)
        return tuple(out)


class _LeafTracer(fx.Tracer):
    def __init__(self, leaf: nn.Module) -> None:
        super().__init__()
        self.leaf = leaf

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m is self.leaf or super().is_leaf_module(m, module_qualified_name)


def split_at_layer(model: nn.Module, layer: nn.Module, name: str) -> LayerSplit | None:
    """Cut ``model`` after ``layer`` (dotted name ``name``); None if it cannot be traced
    or the layer is not called exactly once in the traced graph."""
    try:
        graph = _LeafTracer(layer).trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure means: use full passes
        return None
    cut = [n for n in graph.nodes if n.op == "call_module" and n.target == name]
    if len(cut) != 1:
        return None
    cut_node = cut[0]
    after: set[fx.Node] = set()
    for n in graph.nodes:
        if n.op != "output" and any(a is cut_node or a in after for a in n.all_input_nodes):
            after.add(n)
    output = next(n for n in graph.nodes if n.op == "output")
    if not any(a is cut_node or a in after for a in output.all_input_nodes):
        return None  # the output does not depend on the layer
    consumers = after | {output}
    frontier: list[fx.Node] = []
    constants: set[fx.Node] = set()
    for n in graph.nodes:
        if n in after or n is cut_node or n.op == "output":
            continue
        if any(u in consumers for u in n.users):
            if n.op == "get_attr":
                constants.add(n)
            else:
                frontier.append(n)
    # tail: (layer output, *frontier) -> model output
    tail_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {cut_node: tail_graph.placeholder("activation")}
    for f in frontier:
        env[f] = tail_graph.placeholder(f"frontier_{f.name}")
    for n in graph.nodes:
        if n in after or n in constants:
            env[n] = tail_graph.node_copy(n, lambda a: env[a])
    tail_graph.output(fx.map_arg(output.args[0], lambda a: env[a]))
    gm = fx.GraphModule(model, graph)
    tail = fx.GraphModule(gm, tail_graph)
    head = None
    if frontier:
        head_graph = fx.Graph()
        henv: dict[fx.Node, fx.Node] = {}
        for n in graph.nodes:
            if n in after or n.op == "output":
                continue
            henv[n] = head_graph.node_copy(n, lambda a: henv[a])
        head_graph.output(tuple(henv[f] for f in frontier))
        head = fx.GraphModule(gm, head_graph)
        head.graph.eliminate_dead_code()
        head.recompile()
    return LayerSplit(tail=tail, head=head)
