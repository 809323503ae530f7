"""Ablation-CAM (Desai & Ramaswamy 2020): the score drop when one channel is removed."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ..core import (
    chunk_slices,
    forward_hooks,
    gather_scores,
    layer_name,
    model_input,
    register,
    resolve_targets,
    select_output,
)
from ..core.targets import TargetLike
from ..errors import ConfigError
from .base import BaseCAM, LayersSpec, weighted_sum
from .sampling import default_batch
from .split import LayerSplit, split_at_layer

__all__ = ["AblationCAM"]

_PATHS = ("auto", "fx", "full")


@register("ablationcam", family="cam", aliases=("ablation_cam",))
class AblationCAM(BaseCAM):
    """Ablation-CAM: ``w_k = (y_c - y_c^(-k)) / y_c``, ``y_c^(-k)`` the target logit with
    channel ``k`` of the layer output set to ``ablation_value`` (0, the paper).

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True, batch_size=None,
    ablation_value=0.0, path="auto")``

    The ``N·K`` ablated passes run in chunks of ``batch_size`` under
    ``torch.inference_mode()``. With ``path="auto"`` (default) they re-run only the part of
    the network after the layer: the model is split at the layer with ``torch.fx`` (once
    per instance and layer) and the split is checked to reproduce the model's scores on
    the clean input. When the model cannot be traced (or the check fails) the method
    falls back to full forward passes in which a forward hook replaces the layer's output
    by its ablated copy; both paths give the same numbers. ``path="fx"`` insists on the
    split (error if impossible), ``path="full"`` always uses full passes. A channel that
    already equals ``ablation_value`` everywhere gets weight 0 without a pass (exact).
    ``y_c = 0`` gives weights 0.

    Note: pytorch-grad-cam ablates with ``min(A) - 1e7`` instead of 0 when the layer's
    minimum is not 0 (layers that can be negative); pass ``ablation_value`` to choose.
    """

    def __init__(self, model: nn.Module, layer: LayersSpec = "auto", **kwargs: Any) -> None:
        """``kwargs``: those of :class:`~cleargrad.cam.base.BaseCAM`."""
        super().__init__(model, layer, **kwargs)
        self._splits: dict[int, LayerSplit | None] = {}

    def _split(self, module: nn.Module) -> LayerSplit | None:
        key = id(module)
        if key not in self._splits:
            self._splits[key] = split_at_layer(self.model, module, layer_name(self.model, module))
        return self._splits[key]

    def _raw_maps(
        self,
        x: torch.Tensor,
        target: TargetLike,
        modules: list[nn.Module],
        batch_size: int | None = None,
        ablation_value: float = 0.0,
        path: str = "auto",
    ) -> list[torch.Tensor]:
        if path not in _PATHS:
            raise ConfigError(f"path must be one of {_PATHS}, got {path!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ConfigError(f"batch_size must be a positive int or None, got {batch_size!r}")
        raws, layouts, scores = self.raw_forward_pass(x, modules)
        t = resolve_targets(target, x.shape[0], scores=scores)
        y = gather_scores(scores, t)
        maps = []
        for module, raw, layout in zip(modules, raws, layouts):
            a = layout.apply(raw)
            # token layers: where each (channel, i, j) of the activation sits in the raw output
            index = None if layout.identity else layout.source_index(raw.shape, raw.device)
            with torch.inference_mode():
                split = self._usable_split(module, x, raw, scores, path)
                ablated = self._ablated_scores(
                    x, module, a, t, y, split, batch_size, float(ablation_value), raw=raw, index=index
                )
                w = torch.where(y[:, None] != 0, (y[:, None] - ablated) / y[:, None], torch.zeros_like(ablated))
            maps.append(weighted_sum(w.clone(), a))
        return maps

    def _usable_split(
        self, module: nn.Module, x: torch.Tensor, a: torch.Tensor, scores: torch.Tensor, path: str
    ) -> tuple[LayerSplit, tuple[Any, ...]] | None:
        if path == "full":
            return None
        split = self._split(module)
        problem = "the model cannot be traced with torch.fx" if split is None else ""
        if split is not None:
            frontier = split.frontier(x)
            if all(isinstance(f, torch.Tensor) and f.dim() > 0 and f.shape[0] == x.shape[0] for f in frontier):
                check = select_output(split.tail(a.clone(), *frontier), self.output)
                tol = 1e-4 * float(scores.abs().max()) + 1e-5
                if check.shape == scores.shape and float((check - scores).abs().max()) <= tol:
                    return split, frontier
                problem = "the torch.fx split does not reproduce the model's scores"
            else:
                problem = "the part after the layer reads non-batched values from before it"
        name = layer_name(self.model, module)
        if path == "fx":
            raise ConfigError(f"AblationCAM(path='fx'): {problem} (layer {name!r}); use path='auto' or 'full'")
        warnings.warn(
            f"AblationCAM: {problem} (layer {name!r}); using full forward passes instead (slower, same result)",
            stacklevel=4,
        )
        return None

    def _ablated_scores(
        self,
        x: torch.Tensor,
        module: nn.Module,
        a: torch.Tensor,
        t: torch.Tensor,
        y_clean: torch.Tensor,
        split: tuple[LayerSplit, tuple[Any, ...]] | None,
        batch_size: int | None,
        value: float,
        raw: torch.Tensor | None = None,
        index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        n, k = a.shape[:2]
        flat = a.flatten(2)
        # ablating a channel that already holds the ablation value changes nothing: weight 0
        inert = ((flat.amax(dim=2) == value) & (flat.amin(dim=2) == value)).flatten()
        live = torch.nonzero(~inert).flatten()
        # start from y_c everywhere: channels not run keep it, so their weight is exactly 0
        y = y_clean.to(a.dtype)[:, None].expand(n, k).reshape(-1).clone()
        raw = a if raw is None else raw
        # the default chunk follows the size of what is run (the layer's output with a split);
        # the memory check counts a full forward pass per ablated input: exact without a
        # split, an upper bound of the pass from the layer on with one
        sample_shape = raw.shape[1:] if split is not None else x.shape[1:]
        chunk = self.chunk_size(x, live.numel(), batch_size, grad=False, option="batch_size",
                                default=default_batch(sample_shape, live.numel(), a.device))
        for sl in chunk_slices(live.numel(), chunk):
            idx = live[sl]
            img, ch = idx // k, idx % k
            rows = torch.arange(idx.numel(), device=a.device)
            if split is not None:
                tail, frontier = split
                ab = self._ablate(raw[img], rows, ch, value, index)
                out = tail.tail(ab, *(f[img] for f in frontier))
            else:

                def hook(_m: nn.Module, _i: Any, o: torch.Tensor, ch: torch.Tensor = ch, r: torch.Tensor = rows) -> Any:
                    return self._ablate(o, r, ch, value, index)

                with forward_hooks([module], hook):
                    out = self.model(model_input(self.model, x[img]))
            y[idx] = gather_scores(select_output(out, self.output), t[img])
        return y.view(n, k)

    @staticmethod
    def _ablate(
        out: torch.Tensor, rows: torch.Tensor, ch: torch.Tensor, value: float, index: torch.Tensor | None
    ) -> torch.Tensor:
        """A copy of the raw layer output ``out`` with channel ``ch[i]`` of row ``rows[i]``
        set to ``value``; ``index`` maps a token layer's channels to their raw positions
        (prefix tokens are left as they are)."""
        if index is None:
            o = out.clone()
            o[rows, ch] = value
        else:
            o = out.clone(memory_format=torch.contiguous_format)
            pos = index.flatten(1)[ch]  # (B, h*w)
            o.view(o.shape[0], -1)[rows[:, None], pos] = value
        return o
