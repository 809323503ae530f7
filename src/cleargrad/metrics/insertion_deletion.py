"""Insertion and Deletion (Petsiuk et al. 2018, RISE), spec 7.2.

Pixels are ordered by decreasing importance (stable sort: ties by raster index).
Deletion starts from ``x`` and copies ``step`` pixels (all channels) per step from
the substrate (zeros by default); insertion starts from the substrate (a blurred
``x`` by default) and copies pixels of ``x``. The class probability is recorded
before each step and after the last one, giving a curve of ``n_steps + 1`` points
(``n_steps = ceil(H W / step)``) whose trapezoid area on ``[0, 1]`` is the score.
By default ``step = ceil(H W / 28)`` (:data:`DEFAULT_N_STEPS`: 28 steps at any size, the
image width on 28×28 images); ``n_steps="all"`` (or ``step=1``) is the per-pixel curve.

Implementation: one ranking per image; the ``N (n_steps + 1)`` intermediate images
are never materialised together. Each chunk of ``(image, step)`` pairs is written
into one reused buffer by ``torch.where(rank < k step, finish, start)`` and scored
in one forward pass under ``torch.inference_mode()``; probabilities stay on device.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from ..core import check_input, plan_chunk
from ..core.inputs import broadcast_like
from ..core.maps import rise_blur, rise_blur_kernel
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError
from .base import metric
from .maps import blank_rows, mark_undefined, prepare_maps
from .scoring import chunked_scores, evaluating, targets_for

__all__ = [
    "DEFAULT_N_STEPS",
    "SUBSTRATES",
    "CurveOptions",
    "CurveResult",
    "blur",
    "blur_kernel",
    "deletion",
    "insertion",
    "perturbation_curve",
    "pixel_rank",
    "trapezoid_auc",
]

SUBSTRATES = ("auto", "blur", "zero", "mean")
#: steps of a curve when neither ``step`` nor ``n_steps`` is given (``benchmarks/results/insertion_steps.md``)
DEFAULT_N_STEPS = 28
#: smallest image side at which insertion's ``substrate="auto"`` uses the RISE blur
AUTO_BLUR_MIN_SIDE = 64
CLASS_CHOICES = ("target", "predicted")


class CurveResult(NamedTuple):
    """AUC per image ``(N,)`` and the curves ``(N, n_steps + 1)`` (``return_curves=True``)."""

    auc: torch.Tensor
    curves: torch.Tensor


@dataclass(frozen=True)
class CurveOptions:
    """The options of a perturbation curve (insertion, deletion), travelling as one object
    from the metric down to the passes; see :func:`insertion` for each one.

    ``substrate=None`` is the metric's own default canvas (insertion ``"auto"``, deletion
    ``"zero"``); :func:`perturbation_curve` reads ``step``, ``score``, ``output`` and
    ``batch_size``, and ``n_steps`` (``step`` and ``n_steps`` None: ``ceil(H W / 28)``
    pixels per step, see :func:`check_step`).
    """

    step: int | None = None
    n_steps: int | str | None = None
    substrate: Any = None
    klen: int = 11
    sigma: float = 5.0
    which_class: str = "target"
    score: str = "prob"
    reduction: str = "abs_sum"
    output: OutputSelector = None
    batch_size: int | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> CurveOptions:
        """A copy with ``changes``; an unknown name is an error that lists the valid ones."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ConfigError(f"unknown curve option(s) {', '.join(unknown)}; valid: {', '.join(self.names())}")
        return dataclasses.replace(self, **changes)


def _options_of(options: CurveOptions | None, flat: dict[str, Any], where: str) -> CurveOptions:
    """``options`` with the flat keywords of an older call applied (both at once is an error)."""
    if options is None:
        return CurveOptions().replace(**flat)
    if flat:
        raise ConfigError(
            f"{where}: give the curve options either as options=CurveOptions(...) or as keywords "
            f"({', '.join(sorted(flat))}), not both"
        )
    return options


#: the RISE blur kernel and the blur of the curves' canvas (one home: :mod:`cleargrad.core.maps`)
blur_kernel = rise_blur_kernel
blur = rise_blur


def substrate_for(x: torch.Tensor, substrate: Any, klen: int, sigma: float) -> torch.Tensor:
    """The canvas of a curve: ``"blur"``, ``"zero"``, ``"mean"`` or a tensor broadcast to ``x``."""
    if isinstance(substrate, torch.Tensor):
        return broadcast_like(substrate, x, "substrate")
    if substrate == "auto":
        substrate = "blur" if min(x.shape[-2:]) >= AUTO_BLUR_MIN_SIDE else "zero"
    if substrate == "blur":
        return blur(x, klen, sigma)
    if substrate == "zero":
        return torch.zeros_like(x)
    if substrate == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    raise ConfigError(f"substrate must be one of {SUBSTRATES} or a tensor, got {substrate!r}")


def perturbation_curve(
    model: nn.Module,
    x: torch.Tensor,
    saliency: torch.Tensor,
    start: torch.Tensor,
    finish: torch.Tensor,
    targets: torch.Tensor,
    options: CurveOptions | None = None,
    *,
    rank: torch.Tensor | None = None,
    first: torch.Tensor | None = None,
    last: torch.Tensor | None = None,
    **flat: Any,
) -> torch.Tensor:
    """Scores ``(N, n_steps + 1)`` while pixels move from ``start`` to ``finish`` by decreasing saliency.

    ``options``: :class:`CurveOptions` (``step``, ``score``, ``output``, ``batch_size``);
    the older keywords ``step=``, ``score=``, ``output=``, ``batch_size=`` still work.

    Point ``k`` is ``start`` with its ``k * step`` most important pixels (all channels)
    taken from ``finish``. Call inside :func:`~cleargrad.metrics.scoring.evaluating`.
    ``rank``: :func:`pixel_rank` of ``saliency`` when the caller already has it
    (insertion and deletion of one map share it). ``first`` / ``last``: the ``(N,)``
    scores of ``start`` and ``finish`` themselves when the caller already has them (the
    clean image, a canvas shared by several maps): those points cost no pass.
    """
    opts = _options_of(options, flat, "perturbation_curve")
    step = check_step(x, opts.step, opts.batch_size, opts.n_steps)
    score, output, batch_size = opts.score, opts.output, opts.batch_size
    n, _, h, w = x.shape
    n_steps = math.ceil(h * w / step)
    rank = pixel_rank(saliency) if rank is None else rank
    k0 = 0 if first is None else 1
    k1 = n_steps if last is None else n_steps - 1
    per = max(0, k1 - k0 + 1)
    total = n * per
    out = torch.empty((n, n_steps + 1), dtype=x.dtype, device=x.device)
    if first is not None:
        out[:, 0] = first
    if last is not None:
        out[:, n_steps] = last
    if total == 0:
        return out
    chunk = plan_chunk(model, x.shape[1:], total=total, requested=batch_size, device=x.device, dtype=x.dtype,
                       grad=False)
    buf = torch.empty((min(chunk, total), *x.shape[1:]), dtype=x.dtype, device=x.device)
    img = torch.arange(n, device=x.device).repeat_interleave(per)
    k = torch.arange(k0, k1 + 1, device=x.device).repeat(n)

    def build(sl: slice) -> torch.Tensor:
        i = img[sl]
        moved = rank[i] < (k[sl] * step).view(-1, 1, 1, 1)
        out = buf[: len(i)]
        torch.where(moved, finish[i], start[i], out=out)
        return out

    scores = chunked_scores(
        model, build, targets[img], sample_shape=x.shape[1:], score=score, output=output, batch_size=chunk
    )
    if first is None and last is None:
        return scores.view(n, n_steps + 1)
    out = out.to(scores.dtype)
    out[:, k0 : k1 + 1] = scores.view(n, per)
    return out


def pixel_rank(saliency: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` position of each pixel in the order of decreasing saliency
    (0 = most important; stable sort, ties by raster index)."""
    n, _, h, w = saliency.shape
    hw = h * w
    order = torch.argsort(saliency.reshape(n, hw), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(hw, device=saliency.device).expand(n, hw))
    return rank.view(n, 1, h, w)


def curves_for(
    model: nn.Module,
    x: torch.Tensor,
    s: torch.Tensor,
    start: torch.Tensor,
    finish: torch.Tensor,
    t: torch.Tensor,
    options: CurveOptions,
    *,
    rank: torch.Tensor | None = None,
    first: torch.Tensor | None = None,
    last: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(curves, blank)``: the ``(N, n_steps + 1)`` curves of the 2-D maps ``s`` (NaN rows
    for all-zero maps, which cost no pass) and the ``(N,)`` mask of those maps.

    ``t`` are resolved targets, ``rank`` optionally :func:`pixel_rank` of ``s``, ``first`` /
    ``last`` optionally the ``(N,)`` scores of ``start`` / ``finish``. Call inside
    :func:`~cleargrad.metrics.scoring.evaluating`.
    """
    blank = blank_rows(s)
    keep = torch.nonzero(~blank).flatten()
    step = check_step(x, options.step, options.batch_size, options.n_steps)
    n_steps = math.ceil(x.shape[-2] * x.shape[-1] / step)
    curves = torch.full((x.shape[0], n_steps + 1), float("nan"), dtype=x.dtype, device=x.device)
    if len(keep):  # an all-zero map ranks no pixel: no curve, no forward pass

        def rows(a: torch.Tensor) -> torch.Tensor:
            return a if len(keep) == len(a) else a[keep]

        def some_rows(a: torch.Tensor | None) -> torch.Tensor | None:
            return None if a is None else rows(a)

        done = perturbation_curve(
            model, rows(x), rows(s), rows(start), rows(finish), rows(t), options,
            rank=some_rows(rank), first=some_rows(first), last=some_rows(last),
        )
        curves[keep] = done.to(curves.dtype)
    return curves, blank


def check_step(
    x: torch.Tensor, step: int | None, batch_size: int | None, n_steps: int | str | None = None
) -> int:
    """Pixels per step, validated with ``batch_size``: ``step`` as given, else
    ``ceil(H W / n_steps)`` (``n_steps="all"``: 1, the per-pixel curve; default
    :data:`DEFAULT_N_STEPS`). The curve then has ``ceil(H W / step)`` steps (at most
    ``n_steps``).

    Raises:
        ConfigError: both ``step`` and ``n_steps`` given, or a value below 1.
    """
    hw = x.shape[-2] * x.shape[-1]
    if step is not None and n_steps is not None:
        raise ConfigError(f"give step (pixels per step) or n_steps (steps per curve), not both: {step}, {n_steps}")
    if step is None:
        if isinstance(n_steps, str):
            if n_steps.strip().lower() != "all":
                raise ConfigError(f"n_steps must be a positive integer or 'all' (one pixel per step), got {n_steps!r}")
            n_steps = hw
        n = DEFAULT_N_STEPS if n_steps is None else int(n_steps)
        if n < 1:
            raise ConfigError(f"n_steps (steps per curve) must be >= 1, got {n_steps}")
        step = math.ceil(hw / min(n, hw))
    step = int(step)
    if step < 1:
        raise ConfigError(f"step (pixels per step) must be >= 1, got {step}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
    return step


def trapezoid_auc(curves: torch.Tensor) -> torch.Tensor:
    """Area under ``(N, n_steps + 1)`` curves on ``[0, 1]``: ``(sum p - p_0/2 - p_n/2) / n_steps``."""
    n_steps = curves.shape[1] - 1
    return (curves.sum(1) - curves[:, 0] / 2 - curves[:, -1] / 2) / n_steps


def _run(
    kind: str,
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike,
    options: CurveOptions,
    return_curves: bool,
) -> torch.Tensor | CurveResult:
    check_input(x, ndim=4)
    o = options
    if o.which_class not in CLASS_CHOICES:
        raise ConfigError(f"which_class must be one of {CLASS_CHOICES}, got {o.which_class!r}")
    o = o.replace(step=check_step(x, o.step, o.batch_size, o.n_steps), n_steps=None)
    s = prepare_maps(explanation, x, reduction=o.reduction)
    sub = substrate_for(x, _DEFAULT_SUBSTRATE[kind] if o.substrate is None else o.substrate, o.klen, o.sigma)
    start, finish = (x, sub) if kind == "deletion" else (sub, x)
    with evaluating(model):
        t = targets_for(
            model, x, None if o.which_class == "predicted" else target, output=o.output, batch_size=o.batch_size
        )
        curves, blank = curves_for(model, x, s, start, finish, t, o)
    auc = mark_undefined(trapezoid_auc(curves), blank, kind, stacklevel=4)
    return CurveResult(auc, curves) if return_curves else auc


_DEFAULT_SUBSTRATE = {"insertion": "auto", "deletion": "zero"}


def _flat(values: dict[str, Any]) -> CurveOptions:
    """The :class:`CurveOptions` of a metric's flat keyword call (its local variables)."""
    return CurveOptions(**{k: values[k] for k in CurveOptions.names()})


_DOC = """
    Args:
        model: the classifier (left exactly as found; evaluated in eval mode).
        x: normalised input batch ``(N, C, H, W)``.
        explanation: ``(N, C, H, W)`` attribution (reduced with ``reduction``),
            ``(N, 1, H, W)`` or ``(N, H, W)`` map, tensor or numpy array; resized
            bilinearly to ``x`` if needed. Only the pixel order matters.
        target: class per image (int, sequence, LongTensor) or None (predicted class).
        step: pixels changed per step (the interpretable-gradient protocol uses
            ``8 * W``); give ``step`` or ``n_steps``, not both.
        n_steps: steps per curve (default :data:`DEFAULT_N_STEPS` = 28, so
            ``step = ceil(H W / 28)``: 28 at 28×28, 1792 at 224×224); ``"all"``: one
            pixel per step, RISE's per-pixel curve (``H W`` passes per image).
        substrate: ``"blur"``, ``"zero"`` (0 of the normalised tensor), ``"mean"``
            (each image's per-channel mean), a tensor broadcastable to ``x``, or
            ``"auto"`` (insertion's default: ``"blur"`` when both image sides are at
            least 64 px, else ``"zero"``; see :func:`insertion`).
        klen, sigma: blur kernel size and Gaussian sigma (RISE: 11 and 5; the
            interpretable-gradient protocol: 5 and 5), see :func:`blur_kernel`.
        which_class: ``"target"`` (the given ``target``; None falls back to the
            prediction) or ``"predicted"`` (argmax on the clean image, the RISE
            default, ignoring ``target``).
        score: ``"prob"`` (softmax, default) or ``"logit"``.
        return_curves: also return the ``(N, n_steps + 1)`` curves.
        reduction: 2-D reduction of the attribution, any channel count (a signed
            1-channel attribution becomes ``|a|``); ``"none"``: a 1-channel map used as given.
        output: selector of the class scores for models returning tuples/dicts.
        batch_size: perturbed images per forward pass (default: ~2.4M input elements).

    Returns:
        ``(N,)`` AUC per image, or :class:`CurveResult` ``(auc, curves)`` when
        ``return_curves=True``. An all-zero map (after ``reduction``) ranks no pixel:
        its AUC and curve are NaN (with a ``RuntimeWarning``; no forward pass), counted
        by :func:`cleargrad.metrics.nan_summary`. Cost: ``N (n_steps + 1)`` forwarded
        images (plus one pass over ``x`` when the class is the prediction).
"""


@metric(
    direction="higher", category="faithfulness", shares="curve",
    shared_params={"start": "canvas", "substrate": "auto"},  # as insertion(): RISE blur from 64 px, else zero
)
def insertion(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    step: int | None = None,
    n_steps: int | str | None = None,
    substrate: Any = "auto",
    klen: int = 11,
    sigma: float = 5.0,
    which_class: str = "target",
    score: str = "prob",
    return_curves: bool = False,
    reduction: str = "abs_sum",
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor | CurveResult:
    """Insertion AUC: class probability as the most important pixels are restored into a start canvas.

    The curve starts at the substrate and ends at ``x``. The default ``"auto"`` canvas is
    RISE's blurred ``x`` (kernel 11, sigma 5) on images of at least 64 px a side, and the
    all-zero normalised image (the data mean) on smaller ones: on 28x28 Fashion-MNIST a
    blurred image keeps the object's silhouette and the canvas already scores close to the
    full image, and the zero canvas tells a CAM from a random map most clearly (measured:
    benchmarks/results/egc_claims.md, "Insertion start canvas").
    """
    return _run("insertion", model, x, explanation, target, _flat(locals()), return_curves)


@metric(
    direction="lower", category="faithfulness", shares="curve", shared_params={"start": "image", "substrate": "zero"}
)
def deletion(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    step: int | None = None,
    n_steps: int | str | None = None,
    substrate: Any = "zero",
    klen: int = 11,
    sigma: float = 5.0,
    which_class: str = "target",
    score: str = "prob",
    return_curves: bool = False,
    reduction: str = "abs_sum",
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor | CurveResult:
    """Deletion AUC: class probability as the most important pixels are removed (set to the substrate).

    The curve starts at ``x`` and ends at the substrate (zeros of the normalised tensor).
    """
    return _run("deletion", model, x, explanation, target, _flat(locals()), return_curves)


# under ``python -OO`` docstrings are None: the module must still import
insertion.__doc__ = (insertion.__doc__ or "") + _DOC
deletion.__doc__ = (deletion.__doc__ or "") + _DOC
