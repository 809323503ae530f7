"""FullGrad (Srinivas & Fleuret 2019): input-gradient × input plus the bias-gradients of
every layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..core import capture_activations, model_input, register, resolve_targets, select_output
from ..core.targets import TargetLike
from ..errors import LayerError
from .base import BaseCAM
from .projection import EIGEN_SMOOTH, first_component

__all__ = ["FullGrad", "FullGradDecomposition", "bias_layers"]

_SPATIAL = {4: (nn.Conv2d, nn.BatchNorm2d), 5: (nn.Conv3d, nn.BatchNorm3d)}
_ALL = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _bias(m: nn.Module) -> torch.Tensor:
    """The bias a layer adds to its output (a batch norm's implicit one in eval mode)."""
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        # bias_layers keeps the batch norms with running statistics only
        mean, var = cast(torch.Tensor, m.running_mean), cast(torch.Tensor, m.running_var)
        w = m.weight if m.weight is not None else torch.ones_like(mean)
        b = m.bias if m.bias is not None else torch.zeros_like(mean)
        return (b - mean * w / torch.sqrt(var + m.eps)).detach()
    return cast(torch.Tensor, m.bias).detach()  # bias_layers keeps the layers with a bias


def bias_layers(model: nn.Module, spatial_rank: int | None = None) -> list[nn.Module]:
    """Layers with a bias, in module order: convolutions, linear layers and batch norms
    (with running statistics); only those with spatial output of rank ``spatial_rank``
    (``Conv2d``/``BatchNorm2d`` for 4, as pytorch-grad-cam) when given."""
    kinds = _SPATIAL.get(spatial_rank, ()) if spatial_rank is not None else _ALL
    out: list[nn.Module] = []
    for m in model.modules():
        if type(m) not in kinds:
            continue
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            # the implicit bias needs running statistics; the maps take affine ones only
            if m.running_mean is not None and (spatial_rank is None or m.bias is not None):
                out.append(m)
        elif m.bias is not None:
            out.append(m)
    return out


@dataclass(frozen=True)
class FullGradDecomposition:
    """The full-gradient decomposition of target scores (``FullGrad.decompose``).

    ``score = input_term + bias_terms.sum(1)`` holds exactly for networks that are
    piecewise linear in their input and biases (ReLU, max/avg-pooling, convolutions, linear
    layers, eval-mode batch norms).

    Attributes:
        scores: ``(N,)`` target scores.
        input_term: ``(N,)`` ``sum(x ⊙ dy/dx)``.
        bias_terms: ``(N, L)`` ``sum(b ⊙ dy/db)`` of each bias layer.
        layers: the dotted names of the bias layers the forward pass used.
    """

    scores: torch.Tensor
    input_term: torch.Tensor
    bias_terms: torch.Tensor
    layers: tuple[str, ...]


def _norm_resize(t: torch.Tensor, size: tuple[int, ...], *, channel_sum: bool = False) -> torch.Tensor:
    """Each ``(n, c)`` map min–max normalised (eps 1e-7, pytorch-grad-cam's) and resized;
    with ``channel_sum`` the resized maps summed over channels, ``(n, 1, *size)``.

    The resize is linear, so the sum is taken before it (one map resized instead of ``c``;
    equal up to float rounding)."""
    dims = tuple(range(2, t.dim()))
    lo = t.amin(dim=dims, keepdim=True)
    t = t - lo
    t = t / (1e-7 + t.amax(dim=dims, keepdim=True))
    if channel_sum:
        t = t.sum(dim=1, keepdim=True)
    if tuple(t.shape[2:]) != tuple(size):
        mode = "bilinear" if t.dim() == 4 else "trilinear"
        t = F.interpolate(t, size=size, mode=mode, align_corners=False)
    return t


@register("fullgrad", family="cam", aliases=("full_grad",))
class FullGrad(BaseCAM):
    """FullGrad: ``|x ⊙ dy/dx|`` plus ``|b ⊙ dy/dz|`` for every layer ``z = ... + b`` with a
    bias, each channel min–max normalised and resized to the input, summed.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True)``

    Post-processing as pytorch-grad-cam's ``FullGrad``: the bias layers are the
    ``Conv2d`` and ``BatchNorm2d`` layers with a bias (a batch norm's bias is its implicit
    eval-mode one ``beta - mu gamma / sigma``); every channel of the input term and of each
    layer's ``|b ⊙ G|`` is min–max normalised (eps 1e-7) per image and resized (bilinear)
    to the input size before the sum. ``layer`` is not used (every bias layer is); the map
    is at the input's resolution. One forward and one backward pass to the input.
    :meth:`decompose` gives the unprocessed completeness terms.
    """

    def resolve_layers(self, x: torch.Tensor) -> list[nn.Module]:
        """The model itself: FullGrad uses every bias layer, not a target layer."""
        return [self.model]

    def _grads(
        self, x: torch.Tensor, target: TargetLike, layers: list[nn.Module]
    ) -> tuple[torch.Tensor, list[torch.Tensor | None], torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        with torch.enable_grad(), capture_activations(layers, requires_grad=True) as cap:
            scores = select_output(self.model(model_input(self.model, x)), self.output)
            t = resolve_targets(target, x.shape[0], scores=scores.detach())
            y = scores.gather(1, t.to(scores.device)[:, None])[:, 0]
            acts = [(i, out) for i, out in enumerate(cap.activations) if isinstance(out, torch.Tensor)]
            used = [i for i, _ in acts]
            got = torch.autograd.grad(y.sum(), [x, *(a for _, a in acts)], allow_unused=True)
        gx = torch.zeros_like(x) if got[0] is None else got[0]
        gl: list[torch.Tensor | None] = [None] * len(layers)  # None: not called in this forward pass
        for i, g in zip(used, got[1:]):
            a = cap.activations[i]
            gl[i] = torch.zeros_like(a) if g is None else g
        return gx.detach(), gl, y.detach(), t

    def _raw_maps(
        self, x: torch.Tensor, target: TargetLike, modules: list[nn.Module], **options: Any
    ) -> list[torch.Tensor]:
        if options:
            raise TypeError(f"FullGrad.attribute got unexpected options {sorted(options)}")
        layers = bias_layers(self.model, x.dim())
        gx, gl, _, _ = self._grads(x, target, layers)
        size = tuple(x.shape[2:])
        parts = [_norm_resize((gx * x).abs(), size)]
        for m, g in zip(layers, gl):
            if g is None:
                continue
            if g.dim() != x.dim():
                raise LayerError(f"FullGrad: bias layer {type(m).__name__} gives a {g.dim()}-D output")
            b = _bias(m).to(device=g.device, dtype=g.dtype).view(1, -1, *([1] * (g.dim() - 2)))
            parts.append(_norm_resize((b * g).abs(), size, channel_sum=True))
        stack = torch.cat(parts, dim=1)
        if not EIGEN_SMOOTH.get():
            return [stack.sum(dim=1, keepdim=True)]
        # pytorch-grad-cam's eigen_smooth for FullGrad: the per-part maps at 1/8 of the
        # input size, projected, resized back
        small = tuple(max(1, s // 8) for s in size)
        proj = first_component(_norm_resize(stack, small))
        return [_norm_resize(proj, size)]

    def decompose(self, x: torch.Tensor, target: TargetLike = None) -> FullGradDecomposition:
        """The completeness terms of the scores: input term and every bias layer's term
        (all bias layers, linear ones included), with the model left as found."""
        from ..core import check_input, gradient_call, layer_name, preserved_state

        check_input(x)
        with gradient_call(self.model), preserved_state(self.model, allow_train_mode=self.allow_train_mode):
            layers = bias_layers(self.model)
            gx, gl, y, _ = self._grads(x, target, layers)
            terms, names = [], []
            for m, g in zip(layers, gl):
                if g is None:
                    continue
                names.append(layer_name(self.model, m))
                b = _bias(m).to(device=g.device, dtype=g.dtype)
                shape = (1, -1) + (1,) * (g.dim() - 2) if not isinstance(m, nn.Linear) else (1,) * (g.dim() - 1) + (-1,)
                terms.append((b.view(shape) * g).flatten(1).sum(dim=1))
            bias = torch.stack(terms, dim=1) if terms else y.new_zeros(y.shape[0], 0)
        return FullGradDecomposition(y, (gx * x).flatten(1).sum(dim=1), bias, tuple(names))
