"""One batch of an evaluation protocol: what several methods' metrics share, computed once.

A protocol scores several explanations of the same images with several metrics. Much
of that work does not depend on the explanation, or is common to several metrics of
one explanation; :class:`SharedBatch` does it once per batch of images:

- the clean forward pass over the images (targets, ``Y`` of AD/AG/AI, ``f_c(x)`` of
  infidelity) and the target resolution: **one pass of N images per batch**;
- the canvases of insertion/deletion (the blurred image), per substrate, and their
  scores: the first point of every insertion curve and the last of every deletion curve;
- the end points that are the clean image (the first point of a deletion curve, the
  last of an insertion curve) come from the clean pass;
- the pixel ranking of a map, shared by insertion and deletion of that map;
- the masked pass ``O`` of a map, shared by average drop, gain and increase;
- the infidelity draws ``I`` and their passes ``f_c(x - I)``, shared by every method
  (they do not depend on the explanation; ``I^T Phi`` is taken per map from the same
  draws).

Each value equals the standalone metric's (``cleargrad.metrics.insertion`` etc.) to
float tolerance; for infidelity, with a generator in the same state. Images forwarded
for a batch of ``N`` images, ``M`` methods (``n_steps = ceil(H W / step)``):

============================  ===========================================
clean pass (all metrics)      ``N``
canvas of a curve             ``N`` per substrate used (blur, zero, ...)
insertion, per method         ``N (n_steps - 1)`` (no pass for an all-zero map)
deletion, per method          ``N (n_steps - 1)``
AD + AG + AI, per method      ``N`` (together)
infidelity, all methods       ``N n_perturb`` (once, not per method)
sparseness / complexity       0
============================  ===========================================

A standalone call costs, per method, one more clean pass for AD, AG, AI and
infidelity each, ``N (n_steps + 1)`` passes for insertion and deletion each (plus a
one-image class-count pass), three
masked passes instead of one for AD/AG/AI, and ``N n_perturb`` infidelity passes per
method instead of once.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..core import chunk_slices, gather_scores, plan_chunk, resolve_targets, run_model, select_output
from ..core.target_objects import (
    as_class_indices,
    class_probabilities,
    is_target_object,
    scores_are_targets,
    target_selector,
)
from ..core.targets import OutputSelector, TargetLike, pick_output
from ..errors import ConfigError
from . import complexity as _complexity  # noqa: F401 - registers sparseness, complexity
from .average import average_values, masked_scores, unit_map
from .base import METRICS, MetricInfo
from .infidelity import infidelity_many, perturbation_fn
from .insertion_deletion import (
    CLASS_CHOICES,
    CurveOptions,
    check_step,
    curves_for,
    pixel_rank,
    substrate_for,
    trapezoid_auc,
)
from .maps import mark_undefined, prepare_attributions, prepare_maps
from .scoring import NormStat, as_score, evaluating

__all__ = ["SHARED_METRICS", "SharedBatch"]

_CURVE_OPTS = set(CurveOptions.names()) - {"output"}  # the batch's output selector is the model's
_AVERAGE_OPTS = {"normalize", "space", "mean", "std", "reduction", "batch_size"}
_INFIDELITY_OPTS = {
    "perturbation", "n_perturb", "noise_std", "square_size", "baseline", "normalize", "score", "batch_size",
}
#: the options each kind of shared work (:data:`cleargrad.metrics.base.SHARES`) takes
_KIND_OPTS: dict[str, set[str]] = {
    "curve": _CURVE_OPTS,
    "masked": _AVERAGE_OPTS,
    "perturbed": _INFIDELITY_OPTS,
    "map": {"reduction"},
}


class _SharedMetrics(Mapping[str, set[str]]):
    """``metric -> options`` of every registered metric that declares shared work
    (``@metric(shares=...)``), read from the registry when asked (so metrics registered later count)."""

    def _table(self) -> dict[str, set[str]]:
        return {
            name: _KIND_OPTS[info.shares] | set(info.shared_options)
            for name, info in METRICS.items()
            if info.shares in _KIND_OPTS
        }

    def __getitem__(self, name: str) -> set[str]:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


#: metrics :meth:`SharedBatch.score` computes with shared work, and the options it takes for each
SHARED_METRICS: Mapping[str, set[str]] = _SharedMetrics()


def _joined(parts: list[Any]) -> Any:
    """The chunks of a clean pass as one output (tensors concatenated, lists joined), a
    normal tensor usable outside inference mode."""
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(parts).clone()
    if all(isinstance(p, (list, tuple)) for p in parts):
        return [item for p in parts for item in p]
    raise ConfigError(
        f"the model's (selected) output is {type(parts[0]).__name__}: pass output= to select a tensor "
        "(or a detector's list of dicts)"
    )


def _key(v: Any) -> Any:
    return ("tensor", id(v)) if isinstance(v, torch.Tensor) else v


class SharedBatch:
    """The metric work of one batch of images that several explanations share.

    Args:
        model: the classifier (left exactly as found; evaluated in eval mode).
        x: the normalised batch ``(N, C, H, W)``.
        mean, std: its normalisation (for the masked images of AD/AG/AI).
        output: selector of the class scores for models returning tuples/dicts.
        batch_size: default images per forward pass of every metric (a metric's own
            ``batch_size`` option wins).
        scorer: the module that runs the metric passes (default ``model``), e.g. a
            compiled copy from :func:`cleargrad.core.compiled_forward`; it must compute
            the same function as ``model``.

    The clean pass runs on construction: :attr:`output_value` holds its (selected) output,
    :attr:`logits` the same as ``(N, C)`` class scores (an :class:`~cleargrad.InputError`
    when it is not, e.g. a segmentation or detection output).

    Targets (:meth:`score`'s ``target``) are class indices or target objects
    (:mod:`cleargrad.core.target_objects`, one per image or one for all): with target
    objects every pass scores each image by its own target, and a target's score is used
    as it is where the class metrics take a softmax (``SoftmaxTarget`` gives the
    probability). The work shared across maps is shared across the maps of the same
    target list (the same list object).
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        *,
        mean: NormStat = None,
        std: NormStat = None,
        output: OutputSelector = None,
        batch_size: int | None = None,
        scorer: nn.Module | None = None,
    ) -> None:
        self.model = model
        self.scorer = scorer if scorer is not None else model
        self.x = x
        self.mean, self.std, self.output, self.batch_size = mean, std, output, batch_size
        chunk = plan_chunk(self.scorer, x.shape[1:], total=x.shape[0], requested=batch_size, device=x.device,
                           dtype=x.dtype, grad=False)
        with evaluating(self.scorer), torch.inference_mode():
            parts = [pick_output(run_model(self.scorer, x[sl]), output) for sl in chunk_slices(x.shape[0], chunk)]
        #: the clean pass's (selected) output: a tensor, or a list (a detector's dicts)
        self.output_value: Any = _joined(parts)
        self._logits: torch.Tensor | None = None
        self._views: dict[int, tuple[SharedBatch, Any, Any]] = {}
        self._canvas_scores: dict[int, torch.Tensor] = {}
        self._canvas: dict[tuple[Any, ...], torch.Tensor] = {}
        self._maps: dict[tuple[Any, ...], torch.Tensor] = {}
        self._rank: dict[tuple[Any, ...], torch.Tensor] = {}
        self._masked: dict[tuple[Any, ...], torch.Tensor] = {}
        #: ``(metric, method) -> (N, n_steps + 1)`` curves of the last insertion/deletion
        #: scores (the command stores them for the report's mean curves)
        self.last_curves: dict[tuple[str, str], torch.Tensor] = {}

    @property
    def logits(self) -> torch.Tensor:
        """``(N, C)`` class scores of the clean pass."""
        if self._logits is None:
            self._logits = select_output(self.output_value)
        return self._logits

    def _bound(self, target: Any) -> tuple[SharedBatch, Any]:
        """``(batch, target)`` to score ``target`` with: ``self`` and ``target`` for class
        targets; for target objects a view of this batch whose output selector is their
        score matrix (:func:`~cleargrad.core.target_objects.target_selector`) and their
        integer index (one view per target list, sharing the canvases, maps and ranks)."""
        target = as_class_indices(target)
        if not is_target_object(target):
            return self, target
        if id(target) not in self._views:
            n = self.x.shape[0]
            select, _, index = target_selector(target, n, self.output)
            view = copy.copy(self)
            with torch.inference_mode():
                clean = target_selector(target, n, None)[0](self.output_value)
            view.output, view.output_value, view._logits = select, clean.clone(), None
            view._views, view._masked, view._canvas_scores = {}, {}, {}
            self._views[id(target)] = (view, index, target)  # holding target keeps its id unique
        view, index, _ = self._views[id(target)]
        return view, index

    # -- what every metric shares -------------------------------------------------------
    def targets(self, target: TargetLike = None) -> torch.Tensor:
        """``target`` resolved for the batch (None: the predicted class), range-checked."""
        return resolve_targets(target, self.x.shape[0], scores=self.logits, device=self.x.device)

    def probabilities(self, t: torch.Tensor) -> torch.Tensor:
        """``(N,)`` clean softmax probability of class ``t`` (a bound target's own score)."""
        return gather_scores(class_probabilities(self.logits, self.output), t)

    def canvas(self, substrate: Any, klen: int = 11, sigma: float = 5.0) -> torch.Tensor:
        """The substrate of insertion/deletion (the blurred batch is computed once)."""
        key = (_key(substrate), klen, sigma)
        if key not in self._canvas:
            self._canvas[key] = substrate_for(self.x, substrate, klen, sigma)
        return self._canvas[key]

    def map2d(self, method: str, explanation: torch.Tensor, reduction: str = "abs_sum") -> torch.Tensor:
        """The ``(N, 1, H, W)`` map of ``method``'s explanation (cached per reduction)."""
        key = (method, reduction)
        if key not in self._maps:
            self._maps[key] = prepare_maps(explanation, self.x, reduction=reduction)
        return self._maps[key]

    def rank(self, method: str, explanation: torch.Tensor, reduction: str = "abs_sum") -> torch.Tensor:
        """The per-image pixel ranking of ``method``'s map, shared by insertion and deletion."""
        key = (method, reduction)
        if key not in self._rank:
            self._rank[key] = pixel_rank(self.map2d(method, explanation, reduction))
        return self._rank[key]

    # -- metrics -----------------------------------------------------------------------
    def score(
        self,
        metric: str,
        explanations: Mapping[str, torch.Tensor],
        target: torch.Tensor,
        options: Mapping[str, Any] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor] | None:
        """``{method: (N,) values}`` of ``metric`` for each explanation, or None when this
        metric (or one of its ``options``) has no shared implementation (score it alone).

        ``target``: resolved targets (:meth:`targets`) or target objects. ``generator``:
        the draws of a random metric (infidelity: one set for every method).
        """
        batch, target = self._bound(target)
        if batch is not self:
            return batch.score(metric, explanations, target, options, generator)
        opts = dict(options or {})
        info = METRICS.get(metric)
        if info is None or info.shares not in _KIND_OPTS:
            return None
        allowed = _KIND_OPTS[info.shares] | set(info.shared_options)
        if not set(opts) <= allowed:
            return None
        if info.shares == "perturbed" and callable(opts.get("perturbation")):
            return None
        if "batch_size" in allowed and opts.get("batch_size") is None:
            opts["batch_size"] = self.batch_size
        if info.shares == "curve":
            curve = CurveOptions().replace(**opts)
            return {m: self._curve(info, m, a, target, curve) for m, a in explanations.items()}
        if info.shares == "masked":
            return {m: self._average(metric, m, a, target, **opts) for m, a in explanations.items()}
        if info.shares == "perturbed":
            return self._infidelity(explanations, target, generator, **opts)
        return {m: info.fn(a, **opts) for m, a in explanations.items()}

    def _curve(
        self, info: MetricInfo, method: str, explanation: torch.Tensor, target: torch.Tensor, options: CurveOptions
    ) -> torch.Tensor:
        o = options
        if o.which_class not in CLASS_CHOICES:
            raise ConfigError(f"which_class must be one of {CLASS_CHOICES}, got {o.which_class!r}")
        o = o.replace(step=check_step(self.x, o.step, o.batch_size, o.n_steps), n_steps=None, output=self.output)
        kind, from_image = info.name, info.shared_params.get("start", "image") == "image"
        sub = self.canvas(info.shared_params.get("substrate", "zero") if o.substrate is None else o.substrate,
                          o.klen, o.sigma)
        start, finish = (self.x, sub) if from_image else (sub, self.x)
        if o.which_class == "predicted" and scores_are_targets(self.output):
            raise ConfigError("which_class='predicted' scores the predicted class: it takes class targets only")
        t = self.targets(None) if o.which_class == "predicted" else target
        s = self.map2d(method, explanation, o.reduction)
        clean = self._kind(self.logits, o.score, t, self.output)
        canvas = self._kind(self._canvas_logits(sub, o.batch_size), o.score, t, self.output)
        first, last = (clean, canvas) if from_image else (canvas, clean)
        with evaluating(self.scorer):
            curves, blank = curves_for(
                self.scorer, self.x, s, start, finish, t, o, rank=self.rank(method, explanation, o.reduction),
                first=first, last=last,
            )
        self.last_curves[(kind, method)] = curves
        return mark_undefined(trapezoid_auc(curves), blank, kind, stacklevel=4)

    @staticmethod
    def _kind(logits: torch.Tensor, score: str, t: torch.Tensor, output: OutputSelector = None) -> torch.Tensor:
        if score not in ("prob", "logit"):
            raise ConfigError(f"score must be one of ('prob', 'logit'), got {score!r}")
        return gather_scores(as_score(logits, score, output), t)

    def _canvas_logits(self, canvas: torch.Tensor, batch_size: int | None) -> torch.Tensor:
        """Class scores of a canvas: one pass, shared by every map's curve that starts or ends there."""
        k = id(canvas)
        if k not in self._canvas_scores:
            x = self.x
            chunk = plan_chunk(self.scorer, x.shape[1:], total=x.shape[0], requested=batch_size, device=x.device,
                               dtype=x.dtype, grad=False)
            with evaluating(self.scorer), torch.inference_mode():
                parts = [
                    select_output(run_model(self.scorer, canvas[sl]), self.output)
                    for sl in chunk_slices(canvas.shape[0], chunk)
                ]
            self._canvas_scores[k] = torch.cat(parts).clone()
        return self._canvas_scores[k]

    def _average(
        self,
        name: str,
        method: str,
        explanation: torch.Tensor,
        target: torch.Tensor,
        *,
        normalize: str | None = "max",
        space: str = "pixel",
        mean: NormStat = None,
        std: NormStat = None,
        reduction: str = "abs_sum",
        batch_size: int | None = None,
        ag_denominator: str = "1-y",
    ) -> torch.Tensor:
        mean = self.mean if mean is None else mean
        std = self.std if std is None else std
        key = (method, _key(target), normalize, space, _key(mean), _key(std), reduction)
        if key not in self._masked:  # one masked pass feeds AD, AG and AI
            s = unit_map(self.map2d(method, explanation, reduction), normalize)
            with evaluating(self.scorer):
                self._masked[key] = masked_scores(
                    self.scorer, self.x, s, target, space=space, mean=mean, std=std, output=self.output,
                    batch_size=batch_size,
                )
        y = self.probabilities(target)
        return average_values(name, y, self._masked[key].to(y.dtype), ag_denominator)

    def _infidelity(
        self,
        explanations: Mapping[str, torch.Tensor],
        target: torch.Tensor,
        generator: torch.Generator | None,
        *,
        perturbation: str = "gaussian",
        n_perturb: int = 50,
        noise_std: float = 0.1,
        square_size: int | None = None,
        baseline: float = 0.0,
        normalize: bool = True,
        score: str = "logit",
        batch_size: int | None = None,
    ) -> dict[str, torch.Tensor]:
        if n_perturb < 1:
            raise ConfigError(f"n_perturb must be >= 1, got {n_perturb}")
        if score not in ("logit", "prob"):
            raise ConfigError(f"score must be one of ('prob', 'logit'), got {score!r}")
        draw = perturbation_fn(perturbation, noise_std, square_size, baseline, self.x.shape[-2])
        names = list(explanations)
        phis = [prepare_attributions(explanations[m], self.x) for m in names]
        fx = gather_scores(as_score(self.logits, score, self.output), target)
        with evaluating(self.scorer):
            values = infidelity_many(
                self.scorer, self.x, phis, target, fx, draw=draw, n_perturb=n_perturb, normalize=normalize,
                score=score, generator=generator, output=self.output, batch_size=batch_size,
            )
        return dict(zip(names, values))
