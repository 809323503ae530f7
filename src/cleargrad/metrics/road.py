"""ROAD: RemOve And Debias (Rong, Leemann et al. 2022, "A Consistent and Efficient
Evaluation Strategy for Attribution Methods").

A fraction ``f`` of the pixels is removed, the most relevant first (MoRF) or the least
relevant first (LeRF), and the model scores the image in which the removed pixels are
*imputed* so that the removal mask itself carries no class information. The paper's
noisy linear imputation fills every removed pixel with the weighted mean of its eight
neighbours (weight 1/6 for the four edge neighbours, 1/12 for the four corners; only
neighbours inside the image count), the neighbours being known pixels or other removed
pixels, and adds Gaussian noise of standard deviation ``noise`` to the imputed values.

The means couple the removed pixels into one sparse linear system per (image, fraction):
for every removed pixel ``i``, ``sum_j w_ij (u_i - v_j) = 0`` over its valid neighbours
``j`` (``v_j`` known or unknown). Restricted to the unknowns the matrix is symmetric
(the weights of opposite offsets are equal) and weakly diagonally dominant, positive
definite whenever some pixel is kept, so it is solved by Jacobi-preconditioned conjugate
gradients, all systems and channels at once on the input's device: a matrix-vector
product is one masked 3x3 stencil over the whole batch. The solve runs in float64 to a
relative residual of ``tol``.

Removal follows pytorch-grad-cam's thresholds (``selection="quantile"``): MoRF at
fraction ``f`` removes the pixels whose map value is at least the ``1 - f`` quantile of
the map (linear interpolation, as ``numpy.percentile``), LeRF those whose negated value
is at least the ``1 - f`` quantile of the negated map; ``selection="count"`` removes
exactly ``floor(f H W)`` pixels by rank (ties by raster index), as Quantus's ``ROAD``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..core import check_input, chunk_slices, gather_scores, memory_guard, plan_chunk, run_model, select_output
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError, InputError
from .base import metric
from .insertion_deletion import pixel_rank
from .maps import blank_rows, mark_undefined, prepare_maps
from .scoring import evaluating, targets_for

__all__ = [
    "NEIGHBOUR_WEIGHTS",
    "ROAD_FRACTIONS",
    "RoadResult",
    "linear_imputation",
    "road_combined",
    "road_curves",
    "road_lerf",
    "road_morf",
    "road_removal_mask",
]

#: (row offset, column offset) -> weight of that neighbour in the imputation mean
NEIGHBOUR_WEIGHTS: dict[tuple[int, int], float] = {
    (-1, -1): 1 / 12, (-1, 0): 1 / 6, (-1, 1): 1 / 12,
    (0, -1): 1 / 6, (0, 1): 1 / 6,
    (1, -1): 1 / 12, (1, 0): 1 / 6, (1, 1): 1 / 12,
}
#: removal fractions of pytorch-grad-cam's ROAD averages (its percentiles 10 ... 90)
ROAD_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ORDERS = ("morf", "lerf")
SELECTIONS = ("quantile", "count")
IMPUTATIONS = ("linear", "fixed")
SOLVERS = ("auto", "cg", "direct")
ROAD_SCORES = ("prob", "logit", "correct")


class RoadResult(NamedTuple):
    """The per-image value ``(N,)`` and the curves ``(N, len(fractions))`` it averages."""

    value: torch.Tensor
    curves: torch.Tensor


def _kernel(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    k = torch.zeros(3, 3, dtype=dtype, device=device)
    for (dr, dc), w in NEIGHBOUR_WEIGHTS.items():
        k[1 + dr, 1 + dc] = w
    return k.view(1, 1, 3, 3)


def _stencil(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``sum_j w_j u_j`` over the valid neighbours of every pixel (zero outside the image)."""
    b, c, h, w = u.shape
    return F.conv2d(u.reshape(b * c, 1, h, w), k, padding=1).view(b, c, h, w)


def linear_imputation(
    x: torch.Tensor,
    removed: torch.Tensor,
    *,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
    solver: str = "auto",
) -> torch.Tensor:
    """Noisy linear imputation of the ``removed`` pixels of ``x``, every image at once.

    Args:
        x: ``(B, C, H, W)`` images.
        removed: ``(B, 1, H, W)`` or ``(B, H, W)`` bool mask, True = removed (imputed).
        noise: standard deviation of the Gaussian noise added to the imputed values only.
        generator: ``torch.Generator`` of the noise.
        tol: relative residual ``||b - A u|| / ||b||`` at which a system counts as solved.
        max_iter: conjugate-gradient iterations at most (default ``4 (H + W) + 50``);
            a system still above ``tol`` then gets a ``RuntimeWarning``.
        solver: ``"cg"`` (batched conjugate gradients on ``x``'s device), ``"direct"``
            (one sparse LU factorisation of the block-diagonal system of the whole batch,
            scipy's SuperLU, on the CPU) or ``"auto"``: ``"direct"`` for CPU tensors, where
            the factorisation is several times faster than the iterations on large images,
            ``"cg"`` elsewhere (an accelerator runs the stencil iterations for every image
            in parallel; no host round trip).

    Returns:
        ``(B, C, H, W)`` in ``x``'s dtype: ``x`` on kept pixels; on removed ones the
        solution of the weighted-mean equations (plus noise). A removed pixel with no
        kept pixel in its connected region (a fully removed image) is imputed as 0.
    """
    if removed.dim() == 3:
        removed = removed.unsqueeze(1)
    if removed.shape[0] != x.shape[0] or removed.shape[-2:] != x.shape[-2:] or removed.shape[1] != 1:
        raise InputError(f"removed mask of shape {tuple(removed.shape)} does not match images {tuple(x.shape)}")
    if noise < 0:
        raise ConfigError(f"noise must be >= 0, got {noise}")
    if solver not in SOLVERS:
        raise ConfigError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "direct" or (solver == "auto" and x.device.type == "cpu"):
        out = _direct(x, removed[:, 0])
        m = removed.to(torch.float64)
    else:
        out, m = _cg(x, removed, tol, max_iter)
    if noise > 0:
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        out = out + m * noise * eps.to(out.dtype)
    return out.to(x.dtype)


def _direct(x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """The imputation equations of every image as one sparse block-diagonal system (SuperLU)."""
    import numpy as np
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    bsz, c, h, w = x.shape
    rem = removed.detach().to("cpu", torch.bool).numpy().reshape(bsz, h * w)
    img = x.detach().to("cpu", torch.float64).numpy().reshape(bsz, c, h * w)
    out = img.copy()
    full = np.asarray(rem.all(1))  # a fully removed image has no kept pixel to anchor the means: impute 0
    out[full] = 0.0
    rem = rem & ~full[:, None]
    n_unknown = int(rem.sum())
    if n_unknown == 0:
        return torch.from_numpy(out.reshape(x.shape)).to(x.device)
    vid = np.full(rem.shape, -1, dtype=np.int64)
    vid[rem] = np.arange(n_unknown)
    bi, pi = np.nonzero(rem)  # system and flat pixel of each unknown, in unknown order
    r, col = pi // w, pi % w
    rows, cols, vals = [], [], []
    diag = np.zeros(n_unknown)
    rhs = np.zeros((n_unknown, c))
    for (dr, dc), wt in NEIGHBOUR_WEIGHTS.items():
        rr, cc = r + dr, col + dc
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        u = np.nonzero(ok)[0]
        q = rr[u] * w + cc[u]
        diag[u] += wt
        nb_rem = rem[bi[u], q]
        ur = u[nb_rem]
        rows.append(ur)
        cols.append(vid[bi[ur], q[nb_rem]])
        vals.append(np.full(len(ur), -wt))
        uk = u[~nb_rem]
        rhs[uk] += wt * img[bi[uk], :, q[~nb_rem]]
    rows.append(np.arange(n_unknown))
    cols.append(np.arange(n_unknown))
    vals.append(diag)
    a = csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_unknown,) * 2)
    sol = spsolve(a, rhs).reshape(n_unknown, c)
    out[bi, :, pi] = sol
    return torch.from_numpy(out.reshape(x.shape)).to(x.device)


def _cg(x: torch.Tensor, removed: torch.Tensor, tol: float, max_iter: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Jacobi-preconditioned conjugate gradients for every (image, channel) system at once."""
    h, w = x.shape[-2:]
    max_iter = 4 * (h + w) + 50 if max_iter is None else int(max_iter)
    dt = torch.float64
    k = _kernel(x.device, dt)
    m = removed.to(dt)
    known = x.to(dt) * (1 - m)
    wsum = _stencil(torch.ones_like(m), k)  # sum of the valid neighbours' weights, (B, 1, H, W)
    b = m * _stencil(known, k)

    def apply(u: torch.Tensor) -> torch.Tensor:  # A u on the unknowns (u is zero on kept pixels)
        return m * (wsum * u - _stencil(u, k))

    inv_diag = m / wsum
    u = b * inv_diag  # start: the mean of the kept neighbours
    r = b - apply(u)
    z = r * inv_diag
    p = z
    rz = (r * z).sum((2, 3), keepdim=True)
    bnorm = b.pow(2).sum((2, 3), keepdim=True).sqrt()
    thresh = tol * bnorm
    for _ in range(max_iter):
        rnorm = r.pow(2).sum((2, 3), keepdim=True).sqrt()
        active = rnorm > thresh
        if not bool(active.any()):
            break
        ap = apply(p)
        pap = (p * ap).sum((2, 3), keepdim=True)
        alpha = torch.where(active & (pap > 0), rz / pap.clamp_min(1e-300), torch.zeros_like(pap))
        u = u + alpha * p
        r = r - alpha * ap
        z = r * inv_diag
        rz_new = (r * z).sum((2, 3), keepdim=True)
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(1e-300), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
    else:
        rnorm = r.pow(2).sum((2, 3), keepdim=True).sqrt()
        if bool((rnorm > thresh).any()):
            worst = float((rnorm / bnorm.clamp_min(1e-300)).max())
            warnings.warn(
                f"ROAD imputation stopped after {max_iter} iterations at relative residual {worst:.2e} "
                f"(tol {tol:.0e}); pass a larger max_iter",
                RuntimeWarning,
                stacklevel=2,
            )
    return known + m * u, m


def road_removal_mask(s: torch.Tensor, fraction: float, order: str, selection: str = "quantile") -> torch.Tensor:
    """``(N, 1, H, W)`` bool: the pixels of the maps ``s`` (``(N, 1, H, W)``) that ROAD removes."""
    n, _, h, w = s.shape
    key = s if order == "morf" else -s
    if selection == "count":
        return pixel_rank(key) < math.floor(fraction * h * w + 1e-9)
    flat = key.reshape(n, -1).double()
    q = torch.quantile(flat, 1.0 - fraction, dim=1, keepdim=True)
    return (flat >= q).view(n, 1, h, w)


def _check(order: str | None, fractions: Sequence[float], selection: str, imputation: str, score: str) -> tuple:
    if order is not None and order not in ORDERS:
        raise ConfigError(f"order must be one of {ORDERS}, got {order!r}")
    if selection not in SELECTIONS:
        raise ConfigError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if imputation not in IMPUTATIONS:
        raise ConfigError(f"imputation must be one of {IMPUTATIONS} (linear: the paper's noisy linear "
                          f"imputation; fixed: removed pixels set to fill), got {imputation!r}")
    if score not in ROAD_SCORES:
        raise ConfigError(f"score must be one of {ROAD_SCORES}, got {score!r}")
    try:
        fr = tuple(float(f) for f in fractions)
    except TypeError as err:
        raise ConfigError(f"fractions must be a sequence of numbers in [0, 1], got {fractions!r}") from err
    if not fr or any(not (0.0 <= f <= 1.0) or math.isnan(f) for f in fr):
        raise ConfigError(f"fractions must be a non-empty sequence of numbers in [0, 1] (0.3 = remove 30% "
                          f"of the pixels), got {fractions!r}")
    return fr


def _scores(logits: torch.Tensor, t: torch.Tensor, score: str) -> torch.Tensor:
    if score == "correct":
        return (logits.argmax(1) == t).to(logits.dtype)
    return gather_scores(logits.softmax(1) if score == "prob" else logits, t)


def road_curves(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    order: str = "morf",
    fractions: Sequence[float] = ROAD_FRACTIONS,
    selection: str = "quantile",
    imputation: str = "linear",
    noise: float = 0.01,
    fill: float | torch.Tensor = 0.0,
    score: str = "prob",
    relative: bool = True,
    reduction: str = "abs_sum",
    generator: torch.Generator | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
    solver: str = "auto",
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """``(N, len(fractions))`` ROAD scores of ``order`` (``"morf"`` or ``"lerf"``) per removal fraction.

    Arguments as :func:`road_morf`. Column ``k`` is the score of the image with fraction
    ``fractions[k]`` removed and imputed (minus the clean image's score when
    ``relative``). All ``N len(fractions)`` imputed images are built chunk by chunk on
    ``x``'s device and scored in batched forward passes under ``torch.inference_mode()``.
    """
    check_input(x, ndim=4)
    fr = _check(order, fractions, selection, imputation, score)
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
    s = prepare_maps(explanation, x, reduction=reduction)
    if isinstance(fill, torch.Tensor):
        try:
            fill_t = torch.broadcast_to(fill.to(device=x.device, dtype=x.dtype), x.shape)
        except RuntimeError as err:
            raise InputError(f"fill of shape {tuple(fill.shape)} does not broadcast to x {tuple(x.shape)}") from err
    else:
        fill_t = torch.full_like(x, float(fill))
    n, p = x.shape[0], len(fr)
    total = n * p
    curves = torch.empty(n, p, dtype=x.dtype, device=x.device)
    with evaluating(model):
        if relative or target is None or score == "correct":
            chunk0 = plan_chunk(model, x.shape[1:], total=n, requested=batch_size, device=x.device, dtype=x.dtype,
                                grad=False)
            with torch.inference_mode():
                logits0 = torch.cat([select_output(run_model(model, x[sl]), output)
                                     for sl in chunk_slices(n, chunk0)]).clone()
            from ..core import resolve_targets

            t = resolve_targets(target, n, scores=logits0, device=x.device)
            clean = _scores(logits0, t, score)
        else:
            t = targets_for(model, x, target, output=output, batch_size=batch_size)
        chunk = plan_chunk(model, x.shape[1:], total=total, requested=batch_size, device=x.device, dtype=x.dtype,
                           grad=False)
        img = torch.arange(n, device=x.device).repeat_interleave(p)
        col = torch.arange(p, device=x.device).repeat(n)
        masks = torch.stack([road_removal_mask(s, f, order, selection) for f in fr], 1)  # (N, P, 1, H, W)
        flat = curves.view(-1)
        for sl in chunk_slices(total, chunk):
            i, c = img[sl], col[sl]
            rem = masks[i, c]
            if imputation == "linear":
                imp = linear_imputation(x[i], rem, noise=noise, generator=generator, tol=tol, max_iter=max_iter,
                                        solver=solver)
            else:
                imp = torch.where(rem, fill_t[i], x[i])
            with torch.inference_mode(), memory_guard(sl.stop - sl.start, x.shape[1:], x.device):
                logits = select_output(run_model(model, imp), output)
                flat[sl] = _scores(logits, t[i], score).to(x.dtype)
    curves = curves.clone()
    if relative:
        curves = curves - clean.to(curves.dtype).view(-1, 1)
    blank = blank_rows(s)
    if bool(blank.any()):
        curves[blank] = float("nan")
    return curves


_DOC = """
    Args:
        model: the classifier (left exactly as found; evaluated in eval mode).
        x: normalised input batch ``(N, C, H, W)``; imputation works on these values.
        explanation: ``(N, C, H, W)`` attribution (reduced with ``reduction``), ``(N, 1, H, W)``
            or ``(N, H, W)`` map, tensor or numpy array; resized bilinearly to ``x`` if needed.
        target: class per image, or None (the class predicted on ``x``).
        fractions: removal fractions in ``[0, 1]`` (default 0.1 ... 0.9, pytorch-grad-cam's
            percentiles 90 ... 10; its ``percentile`` ``p`` is the fraction ``1 - p / 100``).
        selection: ``"quantile"`` (pytorch-grad-cam's thresholds) or ``"count"`` (exactly
            ``floor(f H W)`` pixels by rank, Quantus's ``ROAD``).
        imputation: ``"linear"`` (the paper's noisy linear imputation) or ``"fixed"``
            (removed pixels set to ``fill``: a value or a tensor broadcast to ``x``).
        noise: standard deviation of the Gaussian noise added to imputed pixels (paper and
            both peers: 0.01; 0 = noiseless).
        score: ``"prob"`` (softmax), ``"logit"`` or ``"correct"`` (1 when the class is still
            the model's prediction, Quantus's accuracy curve).
        relative: subtract the clean image's score (pytorch-grad-cam's convention).
        reduction: 2-D reduction of the attribution (see :func:`cleargrad.metrics.prepare_maps`).
        generator: ``torch.Generator`` of the imputation noise.
        tol, max_iter, solver: the imputation's solve (see :func:`linear_imputation`).
        output: selector of the class scores for models returning tuples/dicts.
        batch_size: imputed images per chunk (imputation and forward pass).

    Returns:
        ``(N,)`` mean over the fractions, or :class:`RoadResult` ``(value, curves)`` with
        ``return_curves=True``. An all-zero map is undefined: NaN with a ``RuntimeWarning``.
        Cost: ``N len(fractions)`` forwarded images per order, plus one clean pass.
"""


def _road(order: str, name: str, model, x, explanation, target, return_curves, **kw):
    curves = road_curves(model, x, explanation, target, order=order, **kw)
    value = mark_undefined(curves.mean(1), torch.isnan(curves).any(1), name, stacklevel=4)
    return RoadResult(value, curves) if return_curves else value


@metric(direction="lower", category="faithfulness")
def road_morf(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    fractions: Sequence[float] = ROAD_FRACTIONS,
    selection: str = "quantile",
    imputation: str = "linear",
    noise: float = 0.01,
    fill: float | torch.Tensor = 0.0,
    score: str = "prob",
    relative: bool = True,
    reduction: str = "abs_sum",
    generator: torch.Generator | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
    solver: str = "auto",
    return_curves: bool = False,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor | RoadResult:
    """ROAD MoRF: mean class score after removing (and imputing) the most relevant pixels; lower is better."""
    return _road("morf", "road_morf", model, x, explanation, target, return_curves, fractions=fractions,
                 selection=selection, imputation=imputation, noise=noise, fill=fill, score=score,
                 relative=relative, reduction=reduction, generator=generator, tol=tol, max_iter=max_iter, solver=solver,
                 output=output, batch_size=batch_size)


@metric(direction="higher", category="faithfulness")
def road_lerf(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    fractions: Sequence[float] = ROAD_FRACTIONS,
    selection: str = "quantile",
    imputation: str = "linear",
    noise: float = 0.01,
    fill: float | torch.Tensor = 0.0,
    score: str = "prob",
    relative: bool = True,
    reduction: str = "abs_sum",
    generator: torch.Generator | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
    solver: str = "auto",
    return_curves: bool = False,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor | RoadResult:
    """ROAD LeRF: mean class score after removing (and imputing) the least relevant pixels; higher is better."""
    return _road("lerf", "road_lerf", model, x, explanation, target, return_curves, fractions=fractions,
                 selection=selection, imputation=imputation, noise=noise, fill=fill, score=score,
                 relative=relative, reduction=reduction, generator=generator, tol=tol, max_iter=max_iter, solver=solver,
                 output=output, batch_size=batch_size)


@metric(direction="higher", category="faithfulness")
def road_combined(
    model: nn.Module,
    x: torch.Tensor,
    explanation: Any,
    target: TargetLike = None,
    *,
    fractions: Sequence[float] = ROAD_FRACTIONS,
    selection: str = "quantile",
    imputation: str = "linear",
    noise: float = 0.01,
    fill: float | torch.Tensor = 0.0,
    score: str = "prob",
    reduction: str = "abs_sum",
    generator: torch.Generator | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
    solver: str = "auto",
    return_curves: bool = False,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor | RoadResult:
    """ROAD combined: (LeRF - MoRF) / 2 averaged over the fractions (pytorch-grad-cam's ROADCombined)."""
    kw: dict[str, Any] = dict(fractions=fractions, selection=selection, imputation=imputation, noise=noise, fill=fill,
              score=score, relative=False, reduction=reduction, generator=generator, tol=tol, max_iter=max_iter,
              solver=solver, output=output, batch_size=batch_size)
    lerf = road_curves(model, x, explanation, target, order="lerf", **kw)
    morf = road_curves(model, x, explanation, target, order="morf", **kw)
    curves = (lerf - morf) / 2
    value = mark_undefined(curves.mean(1), torch.isnan(curves).any(1), "road_combined")
    return RoadResult(value, curves) if return_curves else value


for _fn in (road_morf, road_lerf, road_combined):
    _fn.__doc__ = (_fn.__doc__ or "") + _DOC
