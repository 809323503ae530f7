"""Axiomatic properties: non-sensitivity and input invariance.

- :func:`non_sensitivity` (Nguyen & Martinez 2020): the number of pixels on which "the
  attribution is zero" and "the model does not react when the pixel alone is set to the
  baseline" disagree (the symmetric difference of the two pixel sets). Lower is better;
  0 means the explanation is zero exactly where the model is insensitive.
- :func:`input_invariance` (Kindermans et al. 2017): a constant shift ``s`` of the input
  is absorbed by the first layer's bias (``b' = b - W s``), so the shifted model on the
  shifted input computes the same function as the model on the input; a method is input
  invariant when its explanation of the shifted pair equals that of the original pair
  (1) and not otherwise (0). The shift is made on a copy of the model; the user's model
  is never touched.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core import check_input
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError, InputError
from .base import metric
from .faithfulness_extra import _baseline
from .maps import as_float_tensor, blank_rows, mark_undefined, prepare_attributions
from .scoring import chunked_scores, clean_scores, evaluating, targets_for

__all__ = ["input_invariance", "non_sensitivity", "shifted_model"]


@metric(direction="lower", category="axiomatic")
def non_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    eps: float = 1e-5,
    baseline: Any = "black",
    normalise: bool = True,
    score: str = "prob",
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Non-sensitivity (Nguyen & Martinez 2020): pixels where a zero attribution and an insensitive model disagree.

    Args:
        model, x, explanation, target: as the other metrics; a pixel's attribution is the
            sum of its channels' absolute values.
        eps: an attribution below ``eps`` counts as zero, and a score change below ``eps``
            as no reaction (Quantus: 1e-5).
        baseline: the value a pixel is set to (``"black"``: the image minimum, Quantus's).
        normalise: divide each attribution by its own maximum first (so ``eps`` is a
            fraction of the peak).
        score: ``"prob"`` (Quantus's default) or ``"logit"``.
        output, batch_size: as the other metrics.

    Returns: ``(N,)`` counts (as floats); NaN (with a warning) for an all-zero attribution.
    Cost: ``N H W`` forwarded images, one per pixel.
    """
    check_input(x, ndim=4)
    if eps < 0:
        raise ConfigError(f"eps must be >= 0, got {eps}")
    n, _, h, w = x.shape
    hw = h * w
    a = prepare_attributions(explanation, x).abs().sum(1).reshape(n, -1)
    if normalise:
        mx = a.amax(1, keepdim=True)
        a = a / torch.where(mx > 0, mx, torch.ones_like(mx))
    zero_attr = a < eps
    base = _baseline(x, baseline)
    img = torch.arange(n, device=x.device).repeat_interleave(hw)
    pix = torch.arange(hw, device=x.device).repeat(n)
    with evaluating(model):
        t, f0 = clean_scores(model, x, target, score=score, output=output, batch_size=batch_size)

        def build(sl: slice) -> torch.Tensor:
            i = img[sl]
            m = F.one_hot(pix[sl], hw).bool().view(-1, 1, h, w)
            return torch.where(m, base[i], x[i])

        fp = chunked_scores(model, build, t[img], sample_shape=x.shape[1:], score=score, output=output,
                            batch_size=batch_size).view(n, hw)
    insensitive = (fp - f0.view(-1, 1).to(fp.dtype)).abs() < eps
    return mark_undefined((insensitive ^ zero_attr).sum(1).to(x.dtype), blank_rows(a), "non_sensitivity")


def _first_layer(model: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    mods = dict(model.named_modules())
    if name is not None:
        if name not in mods:
            raise ConfigError(f"no layer named {name!r} in the model; e.g. {[k for k in mods if k][:5]}")
        mod = mods[name]
        if not isinstance(mod, (nn.Conv2d, nn.Linear)):
            raise ConfigError(f"layer {name!r} is a {type(mod).__name__}; the shift is absorbed by a Conv2d or "
                              "Linear layer that sees the input")
        return name, mod
    for k, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            return k, mod
    raise ConfigError("the model has no Conv2d or Linear layer to absorb the input shift; give first_layer=")


def shifted_model(
    model: nn.Module, shift: float | Sequence[float], example: torch.Tensor, *, first_layer: str | None = None
) -> nn.Module:
    """A deep copy of ``model`` whose first layer absorbs an input shift: ``copy(x + shift)
    == model(x)`` for every ``x`` shaped like ``example``.

    ``shift``: one value, or one per input channel. The first layer (``first_layer``, by
    default the first ``Conv2d`` or ``Linear`` module) gets the bias ``b - W s`` (a bias is
    added if it had none). A convolution that pads with zeros sees the padding unshifted,
    so the border outputs get the exact remainder as a constant map (a forward hook on
    the copy's layer, zero away from the borders). ``model`` is not modified.
    """
    check_input(example, ndim=4)
    name, _ = _first_layer(model, first_layer)
    work = copy.deepcopy(model)
    layer = dict(work.named_modules())[name]
    c = example.shape[1] if isinstance(layer, nn.Conv2d) else None
    s = torch.as_tensor(shift, dtype=example.dtype, device=example.device).reshape(-1)
    with torch.no_grad():
        weight = layer.weight
        if isinstance(layer, nn.Conv2d):
            if s.numel() not in (1, c):
                raise InputError(f"shift has {s.numel()} values but x has {c} channels")
            if layer.padding_mode != "zeros":
                raise ConfigError(f"layer {name!r} pads with {layer.padding_mode!r}; only zero padding (or none) "
                                  "is supported")
            shifted = torch.ones_like(example[:1]) * s.to(weight.dtype).view(1, -1, 1, 1)
            # W s at every position, zero padding included (the border outputs see part of the shift)
            seen = F.conv2d(shifted, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
            # the unpadded value W s, the same at every position
            interior = F.conv2d(shifted, weight, None, layer.stride, 0, layer.dilation, layer.groups)[0, :, 0, 0]
        else:
            d = weight.shape[1]
            if s.numel() not in (1, d):
                raise InputError(f"shift has {s.numel()} values but the first Linear layer takes {d} inputs")
            interior = weight @ (s.expand(d) if s.numel() == 1 else s).to(weight.dtype)
            seen = None
        if layer.bias is None:
            layer.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device))
        layer.bias.sub_(interior)
        if seen is not None:
            border = (interior.view(1, -1, 1, 1) - seen).detach()  # zero in the interior
            if bool(border.abs().gt(0).any()):
                layer.register_forward_hook(lambda _m, _i, out, b=border: out + b)
    return work


@metric(direction="higher", category="axiomatic")
def input_invariance(
    model: nn.Module,
    x: torch.Tensor,
    explainer: Any,
    target: TargetLike = None,
    explanation: Any = None,
    *,
    shift: float | Sequence[float] = -1.0,
    atol: float = 1e-4,
    first_layer: str | None = None,
    explainer_options: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Input invariance (Kindermans et al. 2017): 1 if the shifted model explains the shifted input alike, else 0.

    Args:
        model: the classifier (left exactly as found; the shift is made on a copy).
        x: input batch ``(N, C, H, W)``.
        explainer: as for :func:`cleargrad.metrics.mprt`: a method name (``"saliency"``),
            a cleargrad method instance built on ``model`` (re-bound to the shifted copy),
            or a callable ``(model, x, target) -> explanation``.
        target: class per image; None: the class predicted on ``x``.
        explanation: the explanation of ``model`` on ``x`` (computed when None).
        shift: the constant added to the input (Quantus: -1), one value or one per channel.
        atol: the explanations are equal when every element differs by at most ``atol``
            (Quantus: 1e-4).
        first_layer: the layer that absorbs the shift (see :func:`shifted_model`).
        explainer_options: options passed to the explainer.

    Returns: ``(N,)`` 1.0 (invariant) or 0.0; NaN (with a warning) where the explanation
    of ``model`` is all zero. Cost: two explanations of the batch.
    """
    from .randomisation import _explain_fn

    check_input(x, ndim=4)
    if atol < 0:
        raise ConfigError(f"atol must be >= 0, got {atol}")
    fn = _explain_fn(explainer, model, explainer_options)
    with evaluating(model):
        t = targets_for(model, x, target)
    a = as_float_tensor(fn(model, x, t) if explanation is None else explanation, x)
    twin = shifted_model(model, shift, x, first_layer=first_layer)
    s = torch.as_tensor(shift, dtype=x.dtype, device=x.device).reshape(-1)
    xs = x + (s.view(1, -1, 1, 1) if s.numel() > 1 else s)
    b = as_float_tensor(fn(twin, xs, t), x)
    if a.shape != b.shape:
        raise InputError(f"the explanations of the model {tuple(a.shape)} and of the shifted copy "
                         f"{tuple(b.shape)} differ in shape")
    same = ((a - b).abs().reshape(a.shape[0], -1) <= atol).all(1).to(x.dtype)
    return mark_undefined(same, blank_rows(a), "input_invariance", "an all-zero explanation")
