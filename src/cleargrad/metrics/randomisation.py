"""Randomisation sanity checks: does the explanation depend on the model at all?

- :func:`mprt`: model parameter randomisation test (Adebayo et al. 2018, "Sanity Checks
  for Saliency Maps"). The layers are re-initialised one after another, from the output
  down (``order="top_down"``, the paper's cascading test), from the input up
  (``"bottom_up"``) or one at a time with the others kept (``"independent"``, in
  input-to-output order), and after
  each step the explanation of the randomised model is compared with the original one.
  A method that explains the model gives maps that stop resembling the original ones;
  an edge detector that ignores the model keeps similarity 1.
- :func:`smooth_mprt`: sMPRT (Hedström et al. 2023/2024, "Sanity Checks Revisited"):
  both explanations are averaged over ``n_samples`` noisy copies of the input (noise std
  ``noise_magnitude (max x - min x)`` per image; the last copy is the clean input) before
  they are compared, which removes the gradient shattering noise that MPRT would
  otherwise read as "the map changed"; bottom-up by default, as published.
- :func:`efficient_mprt`: eMPRT (Hedström et al. 2024): the relative rise of the
  explanation's complexity (the discrete entropy of its histogram) from the original
  model to the fully randomised one, ``(H_random - H_original) / H_original``: no
  similarity function to choose; higher is better.
- :func:`random_logit`: the random-logit test (Sixt et al. 2020): the similarity between
  the explanation of the target class and of a random other class; lower is better.

The layers are the modules that have a ``reset_parameters`` method (convolutions,
linear layers, normalisation layers, ...), in ``named_modules`` order; randomising one
calls its ``reset_parameters`` (the layer's default initialisation, batch-norm running
statistics reset) with the global torch generator seeded to ``seed`` for each layer,
inside :func:`torch.random.fork_rng`, so the caller's random state is left as found and
a given seed always gives the same randomised copies. This is Quantus's randomisation
(its ``seed + 1`` is our ``seed``), so our curves equal Quantus's ``MPRT`` on the same
model and explainer.

**The user's model is never modified**: every randomisation works on one deep copy
(for ``"independent"``, the layer randomised at the previous step is restored from the
original before the next one is randomised), and only one copy exists at a time. Cost:
``1 + L`` explanations of the batch (``L`` = the randomised layers), ``n_samples`` times
that for sMPRT, 2 for eMPRT (original and fully randomised), 1 for the random logit.

Explainers: a method name (``"saliency"``, ``"gradcam"`` ...; run with
:func:`cleargrad.explain` and ``explainer_options``), a cleargrad method instance (it is
re-bound to each randomised copy: its model, and layers given as modules, are swapped
for the copy's), or a callable ``(model, x, target) -> explanation``.

Where Quantus differs from the papers we follow the papers: the similarity curve starts
from the original explanation the explainer gives on the model (Quantus compares with a
precomputed ``a_batch``, which can be any tensor), the default similarity of MPRT is
Spearman's of the absolute maps (the paper's), and SSIM is computed on the 2-D maps
(Quantus's SSIM on flattened maps is available as ``"ssim_flat"``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ..core import check_input, resolve_targets
from ..core.targets import TargetLike
from ..errors import ConfigError, InputError
from .base import metric
from .maps import as_float_tensor, blank_rows, mark_undefined, prepare_maps
from .scoring import evaluating, targets_for
from .similarity import SIMILARITIES, average_ranks, similarity, spearman

__all__ = [
    "LAYER_ORDERS",
    "MPRTResult",
    "Explainer",
    "efficient_mprt",
    "explanation_entropy",
    "mprt",
    "random_logit",
    "randomisable_layers",
    "randomised_copies",
    "sanity_check",
    "smooth_mprt",
]

LAYER_ORDERS = ("top_down", "bottom_up", "independent")
Explainer = Any  # str | method instance | Callable[[nn.Module, Tensor, Tensor], Tensor]


class MPRTResult(NamedTuple):
    """``value (N,)``: the similarity after the last step (``"top_down"`` / ``"bottom_up"``:
    the fully randomised model) or its mean over the layers (``"independent"``);
    ``curves (N, L)``: the similarity after each step; ``layers``: the ``L`` layer names."""

    value: torch.Tensor
    curves: torch.Tensor
    layers: tuple[str, ...]


# -- the randomised copies --------------------------------------------------------------


def randomisable_layers(model: nn.Module) -> list[str]:
    """Names of the modules of ``model`` that have ``reset_parameters``, in ``named_modules`` order."""
    return [n for n, m in model.named_modules() if callable(getattr(m, "reset_parameters", None))]


def _reset(module: nn.Module, seed: int) -> None:
    devices = [p.device for p in module.parameters() if p.device.type == "cuda"]
    with torch.random.fork_rng(devices=sorted({d.index or 0 for d in devices}), enabled=True):
        torch.manual_seed(seed)
        with torch.no_grad():
            getattr(module, "reset_parameters")()  # noqa: B009 (a method, whatever the module type)


def randomised_copies(
    model: nn.Module,
    *,
    order: str = "top_down",
    seed: int = 0,
    layers: Sequence[str] | None = None,
) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(layer name, randomised copy)`` step by step; one deep copy, reused.

    ``order``: ``"top_down"`` (cascading from the output: step ``k`` has the last ``k``
    layers re-initialised), ``"bottom_up"`` (cascading from the input) or
    ``"independent"`` (only the named layer re-initialised, input-to-output order). ``layers``:
    the names to randomise (default :func:`randomisable_layers`). The yielded module is
    the same object at every step (do not keep it); ``model`` itself is never touched.
    """
    if order not in LAYER_ORDERS:
        raise ConfigError(f"order must be one of {LAYER_ORDERS}, got {order!r}")
    names = randomisable_layers(model) if layers is None else list(layers)
    known = dict(model.named_modules())
    bad = [n for n in names if n not in known or not callable(getattr(known[n], "reset_parameters", None))]
    if bad:
        raise ConfigError(f"cannot randomise {bad}: give names of modules with reset_parameters, e.g. "
                          f"{randomisable_layers(model)[:5]}")
    if not names:
        raise ConfigError("the model has no layer with reset_parameters to randomise")
    if order == "top_down":
        names = names[::-1]
    work = copy.deepcopy(model)
    mods = dict(work.named_modules())
    prev: str | None = None
    try:
        for name in names:
            if order == "independent" and prev is not None:
                _restore(mods[prev], known[prev])
            _reset(mods[name], seed)
            prev = name
            yield name, work
    finally:
        del work, mods


def _restore(dst: nn.Module, src: nn.Module) -> None:
    with torch.no_grad():
        for p_dst, p_src in zip(dst.parameters(), src.parameters()):
            p_dst.copy_(p_src)
        for b_dst, b_src in zip(dst.buffers(), src.buffers()):
            b_dst.copy_(b_src)


# -- explainers ---------------------------------------------------------------------------


def _rebind(method: Any, original: nn.Module, work: nn.Module) -> Any:
    """A shallow copy of a method instance whose model (and module-valued layers) are ``work``'s."""
    names = {id(m): n for n, m in original.named_modules()}
    mods = dict(work.named_modules())

    def swap(v: Any) -> Any:
        if v is original:
            return work
        if isinstance(v, nn.Module) and id(v) in names:
            return mods[names[id(v)]]
        if isinstance(v, (list, tuple)) and any(isinstance(e, nn.Module) for e in v):
            return type(v)(swap(e) for e in v)
        return v

    new = copy.copy(method)
    for k, v in vars(method).items():
        if isinstance(v, dict) and any(isinstance(e, nn.Module) for e in v.values()):
            setattr(new, k, type(v)())  # a cache of resolved modules: resolve again on the copy
        else:
            setattr(new, k, swap(v))
    return new


def _explain_fn(explainer: Explainer, model: nn.Module, options: dict[str, Any] | None) -> Callable:
    """``f(model_or_copy, x, target) -> explanation`` for any accepted explainer."""
    opts = dict(options or {})
    if isinstance(explainer, str):
        from ..core.registry import make_method
        from ..families import load_families

        load_families()  # the built-in methods registered, so a name resolves

        def by_name(m: nn.Module, x: torch.Tensor, t: Any) -> Any:
            inst, rest = make_method(m, explainer, **opts)
            return inst.attribute(x, target=t, **rest)

        return by_name
    if hasattr(explainer, "attribute") and isinstance(getattr(explainer, "model", None), nn.Module):
        if explainer.model is not model:
            raise InputError("the explainer instance is bound to another model than the one given; "
                             "build it on this model or pass its name")
        return lambda m, x, t: (explainer if m is model else _rebind(explainer, model, m)).attribute(x, t, **opts)
    if callable(explainer):
        return lambda m, x, t: explainer(m, x, t, **opts)
    raise InputError("explainer must be a method name, a cleargrad method instance or a callable "
                     f"(model, x, target) -> explanation, got {type(explainer).__name__}")


def _maps(fn: Callable, m: nn.Module, x: torch.Tensor, t: torch.Tensor, *, reduction: str, absolute: bool,
          normalise: bool) -> torch.Tensor:
    a = as_float_tensor(fn(m, x, t), x, name="explanation returned by the explainer")
    if a.shape[0] != x.shape[0]:
        raise InputError(f"the explainer returned {a.shape[0]} explanations for {x.shape[0]} images")
    s = prepare_maps(a, x, reduction=reduction)
    if absolute:
        s = s.abs()
    if normalise:
        mx = s.reshape(s.shape[0], -1).abs().amax(1).view(-1, 1, 1, 1)
        s = s / torch.where(mx > 0, mx, torch.ones_like(mx))
    return s


def _setup(model, x, target, explainer, explainer_options, similarity_name, batch_size):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_input(x, ndim=4)
    if similarity_name is not None and similarity_name not in SIMILARITIES:
        raise ConfigError(f"similarity must be one of {SIMILARITIES}, got {similarity_name!r}")
    fn = _explain_fn(explainer, model, explainer_options)
    with evaluating(model):
        t = targets_for(model, x, target, batch_size=batch_size)
    return fn, t


_ARGS = """
    Args:
        model: the classifier; never modified (the randomisation works on one deep copy).
        x: input batch ``(N, C, H, W)``.
        explainer: a method name (run by :func:`cleargrad.explain`), a cleargrad method
            instance built on ``model``, or a callable ``(model, x, target) -> explanation``.
        target: class per image, or None (the class predicted by the original model, kept
            for every randomised copy).
        order: ``"top_down"`` (cascading from the output, the paper's), ``"bottom_up"`` or
            ``"independent"``.
        similarity: ``"spearman"``, ``"pearson"``, ``"ssim"`` (2-D) or ``"ssim_flat"``
            (Quantus's SSIM over the flattened map).
        seed: the seed each layer's re-initialisation starts from (Quantus: its seed + 1).
        layers: names of the modules to randomise (default: every module with
            ``reset_parameters``).
        reduction: 2-D reduction of the explanation (:func:`cleargrad.metrics.prepare_maps`).
        absolute: compare ``|map|`` (the paper's default and Quantus's).
        normalise: divide each map by its largest magnitude (Quantus's default; it only
            changes SSIM).
        explainer_options: keyword arguments passed to the explainer on every call.
        return_curves: return :class:`MPRTResult` (value, per-layer curves, layer names).
        batch_size: images per forward pass when ``target`` is None.
"""


def _curves(model, x, fn, t, steps, ref, sim, *, reduction, absolute, normalise, explain=None):
    explain = explain or (lambda m: _maps(fn, m, x, t, reduction=reduction, absolute=absolute, normalise=normalise))
    cols, names = [], []
    ranks = average_ranks(ref) if sim == "spearman" else None  # the reference's ranks, once
    for name, work in steps:
        b = explain(work)
        if ranks is not None:
            if b.shape != ref.shape:
                raise InputError(f"maps of shapes {tuple(ref.shape)} and {tuple(b.shape)} cannot be compared")
            cols.append(spearman(ref, b, ranks_a=ranks).to(x.dtype))
        else:
            cols.append(similarity(sim, ref, b).to(x.dtype))
        names.append(name)
    return torch.stack(cols, 1), tuple(names)


@metric(direction="lower", category="randomisation")
def mprt(
    model: nn.Module,
    x: torch.Tensor,
    explainer: Explainer,
    target: TargetLike = None,
    *,
    order: str = "top_down",
    similarity: str = "spearman",
    seed: int = 0,
    layers: Sequence[str] | None = None,
    reduction: str = "abs_sum",
    absolute: bool = True,
    normalise: bool = True,
    explainer_options: dict[str, Any] | None = None,
    return_curves: bool = False,
    batch_size: int | None = None,
) -> torch.Tensor | MPRTResult:
    """MPRT: similarity of the explanation to the original one after randomising the model's layers; lower is better.

    Returns ``(N,)`` (see :class:`MPRTResult` for which value), or :class:`MPRTResult`
    with ``return_curves=True``. Cost: ``1 + L`` explanations of ``x``.
    """
    fn, t = _setup(model, x, target, explainer, explainer_options, similarity, batch_size)
    ref = _maps(fn, model, x, t, reduction=reduction, absolute=absolute, normalise=normalise)
    steps = randomised_copies(model, order=order, seed=seed, layers=layers)
    curves, names = _curves(model, x, fn, t, steps, ref, similarity, reduction=reduction, absolute=absolute,
                            normalise=normalise)
    return _result(curves, names, order, ref, "mprt", return_curves)


def _result(curves, names, order, ref, name, return_curves):
    blank = blank_rows(ref)
    curves = curves.masked_fill(blank.view(-1, 1), float("nan"))
    value = curves.mean(1) if order == "independent" else curves[:, -1]
    value = mark_undefined(value, blank, name, "an all-zero original explanation", stacklevel=4)
    return MPRTResult(value, curves, names) if return_curves else value


def _smooth(fn, m, x, t, n_samples, noise_magnitude, generator, **kw) -> torch.Tensor:
    lo = x.reshape(x.shape[0], -1).amin(1)
    hi = x.reshape(x.shape[0], -1).amax(1)
    std = (noise_magnitude * (hi - lo)).view(-1, 1, 1, 1)
    acc = None
    for k in range(n_samples):
        xe = x if k == n_samples - 1 else x + std * torch.randn(x.shape, generator=generator, device=x.device,
                                                                dtype=x.dtype)
        a = as_float_tensor(fn(m, xe, t), x, name="explanation returned by the explainer")
        acc = a / n_samples if acc is None else acc + a / n_samples
    s = prepare_maps(acc, x, reduction=kw["reduction"])
    if kw["normalise"]:
        mx = s.reshape(s.shape[0], -1).abs().amax(1).view(-1, 1, 1, 1)
        s = s / torch.where(mx > 0, mx, torch.ones_like(mx))
    return s.abs() if kw["absolute"] else s


@metric(direction="lower", category="randomisation")
def smooth_mprt(
    model: nn.Module,
    x: torch.Tensor,
    explainer: Explainer,
    target: TargetLike = None,
    *,
    order: str = "bottom_up",
    similarity: str = "spearman",
    n_samples: int = 50,
    noise_magnitude: float = 0.1,
    seed: int = 0,
    layers: Sequence[str] | None = None,
    reduction: str = "abs_sum",
    absolute: bool = True,
    normalise: bool = True,
    explainer_options: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    return_curves: bool = False,
    batch_size: int | None = None,
) -> torch.Tensor | MPRTResult:
    """Smooth MPRT: MPRT on explanations averaged over noisy copies of the input; lower is better.

    ``n_samples``: explanations averaged per map (the last one of the clean input, so
    ``n_samples=1`` is :func:`mprt`); ``noise_magnitude``: the noise std as a fraction of
    each image's value range; ``generator``: the noise draws (the same draws are used
    for the original and every randomised copy, so only the model differs). Cost:
    ``n_samples (1 + L)`` explanations of ``x``.
    """
    if n_samples < 1:
        raise ConfigError(f"n_samples must be >= 1, got {n_samples}")
    if noise_magnitude < 0:
        raise ConfigError(f"noise_magnitude must be >= 0, got {noise_magnitude}")
    fn, t = _setup(model, x, target, explainer, explainer_options, similarity, batch_size)
    kw: dict[str, Any] = dict(reduction=reduction, absolute=absolute, normalise=normalise)
    state = generator.get_state() if generator is not None else None

    def explain(m: nn.Module) -> torch.Tensor:
        if state is not None and generator is not None:
            generator.set_state(state)  # the same noise for every model
        return _smooth(fn, m, x, t, n_samples, noise_magnitude, generator, **kw)

    if generator is None:  # without a generator: one fixed set of draws, seeded from the default one
        explain = _fixed_noise_explainer(fn, x, t, n_samples, noise_magnitude, kw)
    ref = explain(model)
    steps = randomised_copies(model, order=order, seed=seed, layers=layers)
    curves, names = _curves(model, x, fn, t, steps, ref, similarity, explain=explain, **kw)
    return _result(curves, names, order, ref, "smooth_mprt", return_curves)


def _fixed_noise_explainer(fn, x, t, n_samples, noise_magnitude, kw):
    g = torch.Generator(device=x.device)
    g.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
    state = g.get_state()

    def explain(m: nn.Module) -> torch.Tensor:
        g.set_state(state)
        return _smooth(fn, m, x, t, n_samples, noise_magnitude, g, **kw)

    return explain


def explanation_entropy(maps: torch.Tensor, n_bins: int = 100) -> torch.Tensor:
    """``(N,)`` discrete entropy (nats) of the histogram of each map's values, ``n_bins``
    equal bins between the map's minimum and maximum (``numpy.histogram``'s bins)."""
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    v = maps.reshape(maps.shape[0], -1).double()
    lo, hi = v.amin(1, keepdim=True), v.amax(1, keepdim=True)
    flat_map = hi == lo
    lo = torch.where(flat_map, lo - 0.5, lo)
    hi = torch.where(flat_map, hi + 0.5, hi)
    width = (hi - lo) / n_bins
    idx = ((v - lo) / width).floor().long().clamp(0, n_bins - 1)
    # numpy puts a value on an inner bin edge into the upper bin; recompute exact edges
    edges = lo + width * idx.double()
    idx = torch.where((v < edges) & (idx > 0), idx - 1, idx)
    counts = torch.zeros(v.shape[0], n_bins, dtype=torch.float64, device=v.device)
    counts.scatter_add_(1, idx, torch.ones_like(v))
    p = counts / counts.sum(1, keepdim=True)
    return -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(1)


@metric(direction="higher", category="randomisation")
def efficient_mprt(
    model: nn.Module,
    x: torch.Tensor,
    explainer: Explainer,
    target: TargetLike = None,
    *,
    n_bins: int = 100,
    order: str = "bottom_up",
    seed: int = 0,
    layers: Sequence[str] | None = None,
    reduction: str = "abs_sum",
    absolute: bool = False,
    normalise: bool = False,
    explainer_options: dict[str, Any] | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Efficient MPRT: relative rise of the explanation's entropy when every layer is randomised; higher is better.

    ``(H(e_random) - H(e)) / H(e)`` with :func:`explanation_entropy` (``n_bins`` bins);
    ``absolute`` / ``normalise`` as :func:`mprt` (off by default, as published). Only the
    original and the fully randomised model are explained (2 explanations of ``x``).
    An explanation of entropy 0 (constant map) gives NaN.
    """
    if order == "independent":
        raise ConfigError("efficient_mprt compares with the fully randomised model: order must be "
                          "'bottom_up' or 'top_down'")
    fn, t = _setup(model, x, target, explainer, explainer_options, None, batch_size)
    kw: dict[str, Any] = dict(reduction=reduction, absolute=absolute, normalise=normalise)
    ref = _maps(fn, model, x, t, **kw)
    h0 = explanation_entropy(ref, n_bins)
    work = None
    for step in randomised_copies(model, order=order, seed=seed, layers=layers):
        work = step[1]  # the same copy at every step: after the loop, the fully randomised model
    assert work is not None
    h1 = explanation_entropy(_maps(fn, work, x, t, **kw), n_bins)
    del work
    out = ((h1 - h0) / torch.where(h0 > 0, h0, torch.ones_like(h0))).to(x.dtype)
    return mark_undefined(out, h0 == 0, "efficient_mprt", "a constant original explanation (entropy 0)")


@metric(direction="lower", category="randomisation")
def random_logit(
    model: nn.Module,
    x: torch.Tensor,
    explainer: Explainer,
    target: TargetLike = None,
    *,
    similarity: str = "ssim",
    off_target: TargetLike = None,
    reduction: str = "abs_sum",
    absolute: bool = False,
    normalise: bool = True,
    explainer_options: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Random logit: similarity of the target class's explanation to a random other class's; lower is better.

    ``off_target``: the other class per image (default: uniform over the classes other
    than the target, drawn with ``generator``). ``similarity``: as :func:`mprt` (the
    paper's SSIM by default; Quantus's default is ``"ssim_flat"``). ``absolute`` /
    ``normalise``: Quantus's defaults. Cost: 2 explanations of ``x``.
    """
    fn, t = _setup(model, x, target, explainer, explainer_options, similarity, batch_size)
    with evaluating(model), torch.inference_mode():
        from ..core import run_model, select_output

        n_classes = int(select_output(run_model(model, x[:1]), None).shape[1])
    if n_classes < 2:
        raise ConfigError("random_logit needs a model with at least 2 classes")
    if off_target is None:
        r = torch.randint(0, n_classes - 1, (x.shape[0],), generator=generator,
                          device=generator.device if generator is not None else "cpu").to(x.device)
        off = r + (r >= t).long()
    else:
        off = resolve_targets(off_target, x.shape[0], n_classes, device=x.device)
        if bool((off == t).any()):
            raise InputError("off_target must differ from the target for every image")
    kw: dict[str, Any] = dict(reduction=reduction, absolute=absolute, normalise=normalise)
    a = _maps(fn, model, x, t, **kw)
    b = _maps(fn, model, x, off, **kw)
    out = _sim(similarity, a, b).to(x.dtype)
    return mark_undefined(out, blank_rows(a), "random_logit", "an all-zero explanation of the target")


def _sim(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from .similarity import similarity as fn

    return fn(name, a, b)


def sanity_check(result: MPRTResult | torch.Tensor, *, threshold: float = 0.5, z: float = 2.0) -> dict[str, Any]:
    """Whether a method passes the randomisation sanity check on these images.

    ``result``: :func:`mprt` / :func:`smooth_mprt` values (``(N,)`` or an
    :class:`MPRTResult`). The method **passes** when the mean similarity to the
    original explanation after randomisation, plus ``z`` standard errors, is below
    ``threshold``: the maps of a randomised model must be clearly less similar to the
    original ones than half-way (a Spearman or SSIM of 0.5 still means the map keeps
    much of its structure; an explainer that ignores the model stays at 1, while the
    gradient of a randomised network falls to about 0). Returns ``{"passes", "mean",
    "se", "n", "threshold"}``.
    """
    v = result.value if isinstance(result, MPRTResult) else torch.as_tensor(result)
    v = v.detach().double().flatten()
    v = v[torch.isfinite(v)]
    n = int(v.numel())
    if n == 0:
        raise InputError("no finite similarity values to judge")
    mean = float(v.mean())
    se = float(v.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("inf")
    return {"passes": mean + z * se < threshold, "mean": mean, "se": se, "n": n, "threshold": threshold}


mprt.__doc__ = (mprt.__doc__ or "") + _ARGS
smooth_mprt.__doc__ = (smooth_mprt.__doc__ or "") + _ARGS
