"""Robustness of an explanation to input changes: continuity and relative stability.

- :func:`continuity` (Montavon et al. 2018): ``max_k ||Phi(x) - Phi(x_k)||_1 / ||x - x_k||_2``
  over horizontally translated copies ``x_k`` of the image (the vacated columns take a
  baseline value); ``Phi`` is the absolute explanation, divided by its own maximum with
  ``normalize=True``. Lower is better.
- :func:`relative_input_stability`, :func:`relative_output_stability`,
  :func:`relative_representation_stability` (Agarwal et al. 2022): over random
  perturbations ``x' = x + delta`` that keep the predicted class,
  ``max ||(e_x - e_x') / e_x|| / max(||(v_x - v_x') / v_x||, eps_min)`` with ``v`` the input
  (RIS) or a layer's output (RRS), and ``max ||(e_x - e_x') / e_x|| / max(||h_x - h_x'||,
  eps_min)`` with ``h`` the logits (ROS, whose denominator is not relative); the divisions
  are element-wise with ``eps_min`` in place of zero divisors, norms are Euclidean over
  all elements. Lower is
  better. A draw that changes the predicted class is left out of the maximum (the
  paper's neighbourhood keeps the prediction); an image whose every draw changes it is
  undefined (NaN with a warning).

The explanation function ``explain_fn(x, target) -> explanation`` is called on the clean
batch (unless ``explanation`` is given) and on chunks of perturbed copies with the targets
repeated; it may need gradients, so it does not run under inference mode. Draws come from
``perturbation(x_rep, generator) -> delta`` (rows image-major: row ``i * n_samples + j``),
by default :func:`uniform_noise`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..core import check_input, chunk_slices, default_chunk_size, resolve_targets, run_model
from ..core.layers import find_layer
from ..core.targets import OutputSelector, TargetLike, select_output
from ..errors import ConfigError, InputError
from .base import metric
from .faithfulness_extra import _baseline
from .maps import as_float_tensor, mark_undefined
from .perturbations import Perturbation
from .scoring import evaluating, targets_for

__all__ = [
    "continuity",
    "relative_input_stability",
    "relative_output_stability",
    "relative_representation_stability",
    "translate_x",
    "uniform_noise",
]

ExplainFn = Callable[[torch.Tensor, torch.Tensor], Any]


def uniform_noise(low: float = 0.02, high: float = 0.2) -> Perturbation:
    """``delta ~ U[low, high]`` per element, added to the input (Quantus's default draw for
    the relative-stability metrics)."""
    if not high > low:
        raise ConfigError(f"uniform noise needs high > low, got low={low}, high={high}")

    def draw(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        dev = generator.device if generator is not None else x.device
        u = torch.empty(x.shape, device=dev, dtype=x.dtype)
        return u.uniform_(low, high, generator=generator).to(x.device)

    return draw


def _explain(fn: ExplainFn, x: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    a = as_float_tensor(fn(x, t), like, name="explanation returned by explain_fn").detach()
    if a.shape[0] != x.shape[0]:
        raise InputError(f"explain_fn returned {a.shape[0]} explanations for {x.shape[0]} inputs")
    return a.reshape(a.shape[0], -1)


def translate_x(x: torch.Tensor, shift: int, fill: torch.Tensor) -> torch.Tensor:
    """``x`` moved ``shift`` columns to the right (left when negative); vacated columns take
    ``fill`` (a tensor shaped like ``x``)."""
    w = x.shape[-1]
    out = fill.clone()
    if shift >= 0:
        if shift < w:
            out[..., shift:] = x[..., : w - shift]
    elif -shift < w:
        out[..., : w + shift] = x[..., -shift:]
    return out


def _default_shifts(width: int, n_steps: int) -> list[int]:
    """Quantus's schedule: ``n_steps`` shifts from ``-W + dx`` in steps of ``dx = (2W + 1) // n_steps``."""
    dx = (2 * width + 1) // n_steps
    return [-width + dx * (k + 1) for k in range(n_steps)]


@metric(direction="lower", category="robustness", needs_model=False)
def continuity(
    explain_fn: ExplainFn,
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    n_steps: int = 28,
    shifts: Sequence[int] | None = None,
    baseline: Any = "black",
    normalize: bool = True,
    model: nn.Module | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Continuity (Montavon et al. 2018): max L1 change of the explanation per L2 change of the translated input.

    Args:
        explain_fn: ``f(x, target) -> explanation`` for a batch.
        x: input batch ``(N, C, H, W)``.
        target: class per image; None resolves the class predicted on the clean ``x`` when
            ``model`` is given (else None is passed on).
        n_steps: translations (Quantus: 28) on Quantus's schedule, from ``-W`` towards
            ``+W`` columns; or give ``shifts`` (column offsets, positive = to the right).
        baseline: the value of the vacated columns (``"black"``: the image minimum).
        normalize: divide each absolute explanation by its own maximum.
        model: only used to resolve ``target=None`` (left exactly as found).
        batch_size: translated images per ``explain_fn`` call.

    Returns: ``(N,)`` the largest ratio; a translation that leaves the image unchanged is
    skipped; NaN (with a warning) for an all-zero clean explanation. Cost: ``N (n_steps +
    1)`` explanations.
    """
    check_input(x, ndim=4)
    n, w = x.shape[0], x.shape[-1]
    if shifts is None:
        if n_steps < 1 or n_steps > 2 * w + 1:
            raise ConfigError(f"n_steps must be in [1, {2 * w + 1}] for width {w}, got {n_steps}")
        shifts = _default_shifts(w, n_steps)
    shifts = [int(s) for s in shifts]
    if not shifts:
        raise ConfigError("shifts must hold at least one column offset")
    t = _targets(x, target, model, batch_size)
    fill = _baseline(x, baseline)

    def phi(e: torch.Tensor) -> torch.Tensor:
        e = e.abs()
        if normalize:
            mx = e.amax(1, keepdim=True)
            e = e / torch.where(mx > 0, mx, torch.ones_like(mx))
        return e

    p0 = phi(_explain(explain_fn, x, t, x))
    zero = (p0 == 0).all(1)
    steps = len(shifts)
    total = n * steps
    img = torch.arange(n, device=x.device).repeat(steps)  # step-major: one shift per chunk row block
    sh = torch.tensor(shifts, device=x.device).repeat_interleave(n)
    chunk = batch_size if batch_size is not None else default_chunk_size(x.shape[1:], total, x.device)
    ratio = torch.empty(total, dtype=p0.dtype, device=x.device)
    for sl in chunk_slices(total, chunk):
        i = img[sl]
        xs = torch.stack([translate_x(x[j], int(s), fill[j]) for j, s in zip(i.tolist(), sh[sl].tolist())])
        num = (phi(_explain(explain_fn, xs, t[i], x)) - p0[i]).abs().sum(1)
        den = (x[i] - xs).reshape(len(i), -1).norm(dim=1).to(num.dtype)
        ratio[sl] = torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.zeros_like(num))
    out = ratio.view(steps, n).amax(0)
    return mark_undefined(out, zero, "continuity", "an all-zero explanation")


def _targets(x: torch.Tensor, target: TargetLike, model: nn.Module | None, batch_size: int | None) -> torch.Tensor:
    if model is not None:
        with evaluating(model):
            return targets_for(model, x, target, batch_size=batch_size)
    if target is None:
        raise ConfigError("give target= (one class per image) or model= to resolve the predicted classes")
    return resolve_targets(target, x.shape[0], device=x.device)


def _relative(a: torch.Tensor, b: torch.Tensor, eps_min: float) -> torch.Tensor:
    """``||(a - b) / a||`` per row, ``eps_min`` in place of the zero entries of ``a``."""
    return ((a - b) / torch.where(a == 0, torch.full_like(a, eps_min), a)).norm(dim=1)


def _stability(
    kind: str,
    model: nn.Module,
    explain_fn: ExplainFn,
    x: torch.Tensor,
    target: TargetLike,
    explanation: Any,
    *,
    n_samples: int,
    eps_min: float,
    perturbation: Perturbation | None,
    generator: torch.Generator | None,
    layer: Any,
    output: OutputSelector,
    batch_size: int | None,
) -> torch.Tensor:
    check_input(x, ndim=4)
    if n_samples < 1:
        raise ConfigError(f"n_samples must be >= 1, got {n_samples}")
    if not eps_min > 0:
        raise ConfigError(f"eps_min must be > 0, got {eps_min}")
    draw = perturbation if perturbation is not None else uniform_noise()
    n = x.shape[0]
    module = find_layer(model, layer, x[:1], output) if kind == "representation" else None
    captured: list[torch.Tensor] = []

    def forward(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and (for RRS) the layer's flattened output, without gradients."""
        captured.clear()
        handle = None
        if module is not None:
            handle = module.register_forward_hook(lambda _m, _i, out: captured.append(
                (out[0] if isinstance(out, (tuple, list)) else out).detach()))
        try:
            with evaluating(model), torch.inference_mode():
                logits = select_output(run_model(model, inputs), output).clone()
        finally:
            if handle is not None:
                handle.remove()
        rep = captured[-1].reshape(inputs.shape[0], -1).clone() if module is not None else None
        return logits, rep

    logits0, rep0 = forward(x)
    t = resolve_targets(target, n, scores=logits0, device=x.device)
    pred0 = logits0.argmax(1)
    e0 = _explain(explain_fn, x, t, x) if explanation is None else \
        as_float_tensor(explanation, x).reshape(n, -1)
    if e0.shape[0] != n:
        raise InputError(f"explanation has {e0.shape[0]} rows for {n} images")
    total = n * n_samples
    img = torch.arange(n, device=x.device).repeat_interleave(n_samples)
    chunk = batch_size if batch_size is not None else default_chunk_size(x.shape[1:], total, x.device)
    ratio = torch.empty(total, dtype=torch.float64, device=x.device)
    for sl in chunk_slices(total, chunk):
        i = img[sl]
        xi = x[i]
        xs = xi + draw(xi, generator)
        e = _explain(explain_fn, xs, t[i], x)
        if e.shape[1] != e0.shape[1]:
            raise InputError(f"explain_fn returned {e.shape[1]} values per image, the explanation has "
                             f"{e0.shape[1]}")
        logits, rep = forward(xs)
        num = _relative(e0[i].double(), e.double(), eps_min)
        if kind == "input":
            den = _relative(xi.reshape(len(i), -1).double(), xs.reshape(len(i), -1).double(), eps_min)
        elif kind == "output":
            den = (logits0[i].double() - logits.double()).norm(dim=1)  # the paper's ROS: not relative
        else:
            assert rep0 is not None and rep is not None
            den = _relative(rep0[i].double(), rep.double(), eps_min)
        r = num / den.clamp_min(eps_min)
        ratio[sl] = torch.where(logits.argmax(1) == pred0[i], r, torch.full_like(r, float("nan")))
    ratio = ratio.view(n, n_samples)
    kept = ~torch.isnan(ratio)
    out = torch.where(kept, ratio, torch.full_like(ratio, -1.0)).amax(1)
    name = f"relative_{kind}_stability"
    blank = (e0 == 0).all(1)
    out = mark_undefined(out.masked_fill(~kept.any(1), float("nan")).to(x.dtype), ~kept.any(1) & ~blank, name,
                         "perturbations that all change the predicted class")
    return mark_undefined(out, blank, name, "an all-zero explanation")


_ARGS_DOC = """
    Args:
        model: the classifier (left exactly as found; evaluated in eval mode).
        explain_fn: ``f(x, target) -> explanation`` for a batch.
        x: input batch ``(N, C, H, W)``.
        target: class per image; None: the class predicted on the clean ``x``.
        explanation: the clean explanation (computed with ``explain_fn`` when None).
        n_samples: perturbations per image (Quantus: 200).
        eps_min: the floor of the denominator and the stand-in for zero divisors (1e-6).
        perturbation: ``(x_rep, generator) -> delta`` (default :func:`uniform_noise`,
            ``U[0.02, 0.2]``).
        generator: ``torch.Generator`` of the draws.
        output, batch_size: as the other metrics.

    Returns: ``(N,)`` maxima over the draws that keep the predicted class (NaN with a
    warning when none does, or for an all-zero clean explanation). Cost: ``N n_samples``
    explanations and forwarded images.
"""


@metric(direction="lower", category="robustness")
def relative_input_stability(
    model: nn.Module,
    explain_fn: ExplainFn,
    x: torch.Tensor,
    target: TargetLike = None,
    explanation: Any = None,
    *,
    n_samples: int = 50,
    eps_min: float = 1e-6,
    perturbation: Perturbation | None = None,
    generator: torch.Generator | None = None,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Relative input stability (Agarwal et al. 2022): max relative explanation change per relative input change."""
    return _stability("input", model, explain_fn, x, target, explanation, n_samples=n_samples, eps_min=eps_min,
                      perturbation=perturbation, generator=generator, layer=None, output=output,
                      batch_size=batch_size)


@metric(direction="lower", category="robustness")
def relative_output_stability(
    model: nn.Module,
    explain_fn: ExplainFn,
    x: torch.Tensor,
    target: TargetLike = None,
    explanation: Any = None,
    *,
    n_samples: int = 50,
    eps_min: float = 1e-6,
    perturbation: Perturbation | None = None,
    generator: torch.Generator | None = None,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Relative output stability (Agarwal et al. 2022): max relative explanation change per logit change."""
    return _stability("output", model, explain_fn, x, target, explanation, n_samples=n_samples, eps_min=eps_min,
                      perturbation=perturbation, generator=generator, layer=None, output=output,
                      batch_size=batch_size)


@metric(direction="lower", category="robustness")
def relative_representation_stability(
    model: nn.Module,
    explain_fn: ExplainFn,
    x: torch.Tensor,
    target: TargetLike = None,
    explanation: Any = None,
    *,
    layer: Any = "auto",
    n_samples: int = 50,
    eps_min: float = 1e-6,
    perturbation: Perturbation | None = None,
    generator: torch.Generator | None = None,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Relative representation stability (Agarwal et al. 2022): max relative change of explanation per layer change.

    ``layer``: the layer whose output is the representation, as the CAMs take it (a dotted
    name such as ``"features.3"``, a module of the model, or ``"auto"``: the CAMs' default
    layer, the last one that keeps a spatial map). Other arguments as
    :func:`relative_input_stability`.
    """
    return _stability("representation", model, explain_fn, x, target, explanation, n_samples=n_samples,
                      eps_min=eps_min, perturbation=perturbation, generator=generator, layer=layer,
                      output=output, batch_size=batch_size)


for _fn in (relative_input_stability, relative_output_stability):
    _fn.__doc__ = (_fn.__doc__ or "") + "\n" + _ARGS_DOC
