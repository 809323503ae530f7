"""The :class:`GAD` explainer: fit support models, then explain with the fused map."""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .. import families as _families  # noqa: F401  (base methods are looked up by name)
from ..core import (
    DEFAULT_CHUNK_ELEMENTS,
    REDUCTIONS,
    check_eval_mode,
    check_input,
    get_method,
    preserved_state,
    select_output,
)
from ..core.registry import init_params, make_method
from ..core.targets import OutputSelector, TargetLike, resolve_targets
from ..errors import ConfigError, ModelStateError, TargetError
from .data import collect_training_data
from .distancing import Grouping, alpha_schedule, check_alphas
from .fusion import COMBINES, _check_tau, fuse
from .persistence import load_gad, save_gad
from .settings import Distancing, Fusion, flat_parameters, split_settings
from .stacked import StackedModels
from .strategies import STRATEGIES, make_tasks
from .support import SupportStats, TrainSettings, model_outputs, train_support_models

__all__ = ["GAD", "SPEC_SETTINGS"]

#: the spec's proposals before issue 11 (fusion threshold = the paper's 10 % rule, the
#: paper's 10 epochs, Adam lr 1e-5 at a constant rate, BatchNorm kept in eval mode):
#: ``GAD(model, ..., **SPEC_SETTINGS)``
SPEC_SETTINGS: dict[str, Any] = {"tau": "paper", "lr": 1e-5, "schedule": "constant", "epochs": 10, "bn_mode": "eval"}

#: settings that only affect :meth:`GAD.attribute` (not the support models)
_ATTRIBUTE_ONLY = ("base", "base_options", "tau", "combine", "reduction", "batch_models", "progress")


def _support_error(
    models: list[nn.Module], x: torch.Tensor, rows: torch.Tensor, task: int, output: Any, n: int, e: Exception
) -> Exception:
    """The base method failed on non-finite scores: name the model(s) and the images of the
    caller's batch that give them (the failing pass numbers the rows of one task, stacked
    over its models). ``models[0]`` is the classifier, the others its support models."""
    parts = []
    with torch.no_grad():
        for j, m in enumerate(models):
            floats = [q for q in m.state_dict().values() if q.is_floating_point()]
            weights_bad = any(not bool(torch.isfinite(q).all()) for q in floats)
            s = select_output(m(x[rows]), output)
            bad = [int(rows[i]) for i in range(len(rows)) if not bool(torch.isfinite(s[i]).all())]
            if weights_bad or bad:
                who = "the classifier" if j == 0 else f"support model {j} of task {task}"
                what = "has non-finite weights and " if weights_bad else ""
                parts.append(f"{who} {what}gives NaN/Inf scores for image(s) {bad}")
    if not parts:
        return e
    return ModelStateError(
        f"GAD: {'; '.join(parts)} of the batch of {n}; a damaged support model: fit the GAD again "
        "(or load it from a good copy)"
    )


class GAD:
    """Gradient Artificial Distancing (Rodrigues, Boutry, Najman 2024; spec § 3).

    Support regression copies of the classifier are trained on outputs pushed apart
    between the classes concerned (Algorithm 1); the base method explains the original
    and every support model, and only the pixels important in all ``S + 1`` maps are
    kept (Algorithm 2). Call :meth:`fit` once, then :meth:`attribute`.

    >>> gad = GAD(model, base="integrated_gradients", classes=(3, 5), n_support=4)
    >>> gad.fit(train_loader)
    >>> fused = gad.attribute(x)            # (N, 1, H, W), in [0, 1]

    Args:
        model: the trained classifier ``M_0`` (eval mode). It is never modified.
        base: name of the base method (:func:`cleargrad.methods`): ``saliency``,
            ``deconvolution``, ``input_x_gradient``, ``guided_backprop``,
            ``integrated_gradients``, ..., or a CAM method.
        classes: the classes concerned. ``strategy="pairwise"`` needs exactly two
            ``(k, l)``; for the other strategies ``None`` means every output class.
        n_support: number of support models ``S`` per task (4 [paper]).
        distancing, training, fusion: the settings as three objects
            (:class:`~cleargrad.gad.settings.Distancing`,
            :class:`~cleargrad.gad.support.TrainSettings`, :class:`~cleargrad.gad.settings.Fusion`);
            each field is also a flat keyword (the common case, ``epochs=10``), documented below.
            A group given both ways is an error.
        strategy: ``"pairwise"`` (default), ``"one_vs_all"`` or ``"split"`` (§ 3.6).
        groups: for ``"split"``, the two groups of classes; ``None`` clusters the
            class-mean logit vectors in two (2-means) [spec PROPOSAL].
        alphas: distancing schedule: ``"std"`` (default, ``α^(s) = s · std`` of the
            other group's logits [spec PROPOSAL]), ``"margin"`` (``s ·`` mean margin),
            or an explicit list of ``S`` entries ``(α_1, α_2)`` / numbers, non-decreasing, ``>= 0``.
        alpha_scale: multiplies the rule's step ``Δ`` (not an explicit list).
        epochs, lr, batch_size, init, bn_mode, regress, schedule, seed, deterministic: training of the
            support models, see :class:`~cleargrad.gad.support.TrainSettings` (defaults: 30
            epochs, Adam lr 3e-3 with cosine decay, BatchNorm in training mode, batch 32, warm
            start; chosen in issue 11 because the spec's proposal, 10 epochs [paper] at lr
            1e-5 with BatchNorm frozen, realises 10-50 % of the intended margin gain, and
            30 epochs in training mode realise at least 80 % on every Fashion-MNIST pair:
            see docs/research/gad.md).
        tau: importance threshold of the fusion: a number (a fraction of each map's maximum;
            default 0.3, chosen on a validation split in issue 11), ``"paper"`` (0.1, the
            paper's 10 % rule, the spec's proposal), a quantile ``"q90"``, or ``"positive"``
            (signed methods). :data:`SPEC_SETTINGS` restores the spec's proposals.
        combine: ``"mask"`` (default: original importance on the common support) or ``"min"``.
        reduction: how a multi-channel map becomes 2-D (default ``"abs_sum"``, spec § 0).
        base_options: options of the base method (constructor or ``attribute``), e.g.
            ``{"n_steps": 32}`` for IG or ``{"layer": "features"}`` for a CAM.
        batch_models: explain the ``S + 1`` models in one call of the base method
            (``True``: possible for the five gradient methods; ``"auto"``: only for the four
            one-pass ones; Integrated Gradients runs its models one after another, which is
            faster; measured: benchmarks/results/gad_claims/gad_speed.md).
        output: selector of the ``(N, C)`` scores for models returning tuples/dicts.
        progress: draw rich progress bars during :meth:`fit`.

    Attributes set by :meth:`fit`:
        tasks_: the ``(grouping, explained classes)`` of each set of support models.
        alphas_: one ``(S, 2)`` float64 tensor of distancing constants per task.
        support_models_: one list of ``S`` support models per task.
        stats_: one list of :class:`~cleargrad.gad.support.SupportStats` per task.
        fit_time_: seconds spent in :meth:`fit`.
    """

    def __init__(
        self,
        model: nn.Module,
        base: str = "integrated_gradients",
        classes: Sequence[int] | None = None,
        n_support: int = 4,
        *,
        distancing: Distancing | None = None,
        training: TrainSettings | None = None,
        fusion: Fusion | None = None,
        base_options: dict[str, Any] | None = None,
        output: OutputSelector = None,
        progress: bool = True,
        **settings: Any,
    ) -> None:
        groups_ = split_settings(settings, {"distancing": distancing, "training": training, "fusion": fusion})
        d, ts, fu = groups_["distancing"], groups_["training"], groups_["fusion"]
        strategy, groups, alphas, alpha_scale = d.strategy, d.groups, d.alphas, d.alpha_scale
        tau, combine, reduction, batch_models = fu.tau, fu.combine, fu.reduction, fu.batch_models
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.base = get_method(base).name
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
        if classes is not None:
            classes = tuple(int(c) for c in classes)
            if len(classes) < 2 or len(set(classes)) != len(classes):
                raise ConfigError(f"classes must hold at least two distinct class indices, got {classes}")
        if strategy == "pairwise" and (classes is None or len(classes) != 2):
            raise ConfigError(
                f"strategy='pairwise' needs classes=(k, l), got {classes}; for more classes use "
                "strategy='one_vs_all' or 'split'"
            )
        if not (isinstance(n_support, int) and n_support >= 0):
            raise ConfigError(f"n_support must be an int >= 0, got {n_support!r}")
        if not isinstance(alphas, str):
            alphas = check_alphas(alphas, n_support).tolist()
        elif alphas not in ("std", "margin"):
            raise ConfigError(f"unknown alpha rule {alphas!r}; valid: 'std', 'margin' or an explicit list")
        _check_tau(tau)
        if combine not in COMBINES:
            raise ConfigError(f"unknown combine {combine!r}; valid: {', '.join(COMBINES)}")
        if reduction not in REDUCTIONS:
            raise ConfigError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
        if batch_models not in (True, False, "auto"):
            raise ConfigError(f"batch_models must be True, False or 'auto', got {batch_models!r}")
        self.classes = classes
        self.n_support = n_support
        self.strategy = strategy
        self.groups = None if groups is None else [[int(c) for c in g] for g in groups]
        self.alphas = alphas
        self.alpha_scale = float(alpha_scale)
        self.train_settings = ts
        self.tau = tau
        self.combine = combine
        self.reduction = reduction
        self.base_options = dict(base_options or {})
        self.batch_models = batch_models
        self.output = output
        self.progress = progress
        self.tasks_: list[tuple[Grouping, tuple[int, ...]]] | None = None
        self.alphas_: list[torch.Tensor] = []
        self.support_models_: list[list[nn.Module]] = []
        self.stats_: list[list[SupportStats]] = []
        self.num_classes_: int | None = None
        self.fit_time_: float | None = None

    @property
    def distancing(self) -> Distancing:
        """The distancing settings as one object."""
        return Distancing(strategy=self.strategy, groups=self.groups, alphas=self.alphas, alpha_scale=self.alpha_scale)

    @property
    def fusion(self) -> Fusion:
        """The fusion settings as one object."""
        return Fusion(tau=self.tau, combine=self.combine, reduction=self.reduction, batch_models=self.batch_models)

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return (
            f"GAD({type(self.model).__name__}, base={self.base!r}, classes={self.classes}, "
            f"n_support={self.n_support}, strategy={self.strategy!r}; {state})"
        )

    @property
    def is_fitted(self) -> bool:
        """Whether the support models exist (after :meth:`fit` or :meth:`load`)."""
        return self.tasks_ is not None

    # fitting -------------------------------------------------------------------
    def fit(self, data: Any, checkpoint: Any = None) -> GAD:
        """Train the support models on ``data``; returns ``self``.

        ``data`` is a torch ``Dataset`` or a ``DataLoader`` yielding ``(images,
        labels)``, or a pair of tensors ``(x, y)``; only images of the classes
        concerned are used. Cost: one inference pass plus ``S x epochs`` training
        passes per task.

        ``checkpoint``: a folder (or a :class:`~cleargrad.gad.checkpoint.FitCheckpoint`)
        where every support model is saved as soon as it is trained; rerunning the same
        fit (same settings, model and data) with the same folder loads those models and
        trains only the missing ones, with the same result as an uninterrupted fit.
        """
        check_eval_mode(self.model)
        start = time.perf_counter()
        x, y = collect_training_data(data, self.classes, progress=self.progress)
        with preserved_state(self.model):
            logits = model_outputs(self.model, x, self.output, self.train_settings.eval_batch_size)
        num_classes = logits.shape[1]
        classes = self.classes if self.classes is not None else tuple(range(num_classes))
        bad = [c for c in classes if not 0 <= c < num_classes]
        if bad:
            raise ConfigError(f"class(es) {bad} are not outputs of the model, which has {num_classes} classes")
        if self.classes is None:
            keep = torch.isin(y, torch.tensor(classes))
            x, y, logits = x[keep], y[keep], logits[keep]
        tasks = make_tasks(self.strategy, classes, logits, y, self.groups)
        ckpt = self._checkpoint(checkpoint, x, y)
        models, stats, alphas = [], [], []
        for t, (grouping, _) in enumerate(tasks):
            rows = torch.isin(y, torch.tensor(grouping.classes))
            a = alpha_schedule(logits[rows], y[rows], grouping, self.n_support, self.alphas, self.alpha_scale)
            desc = f"GAD {grouping.first} vs {grouping.second}" + (f" ({t + 1}/{len(tasks)})" if len(tasks) > 1 else "")
            ms, st = train_support_models(
                self.model, x[rows], y[rows], logits[rows], grouping, a, self.train_settings,
                output=self.output, progress=self.progress, description=desc, checkpoint=ckpt, task_index=t,
            )
            models.append(ms)
            stats.append(st)
            alphas.append(a)
        self.tasks_, self.support_models_, self.stats_, self.alphas_ = tasks, models, stats, alphas
        self.num_classes_ = num_classes
        self.fit_time_ = time.perf_counter() - start
        return self

    def _checkpoint(self, checkpoint: Any, x: torch.Tensor, y: torch.Tensor) -> Any:
        """The bound :class:`FitCheckpoint` of this fit (None without one)."""
        if checkpoint is None:
            return None
        from .checkpoint import FitCheckpoint, fingerprint
        from .persistence import _settings

        ckpt = checkpoint if isinstance(checkpoint, FitCheckpoint) else FitCheckpoint(checkpoint)
        training = {k: v for k, v in _settings(self).items() if k not in _ATTRIBUTE_ONLY}
        training["output"] = self.output if isinstance(self.output, (str, int)) or self.output is None else "callable"
        ckpt.bind(fingerprint(training, self.model, x, y))
        return ckpt

    def with_base(self, base: str, base_options: dict[str, Any] | None = None, **settings: Any) -> GAD:
        """A GAD sharing this one's fitted support models, explaining with another base method.

        The support models do not depend on the base method, so one fit serves every
        base. ``settings`` may change ``tau``, ``combine``, ``reduction``, ``batch_models``.
        """
        bad = sorted(set(settings) - {"tau", "combine", "reduction", "batch_models"})
        if bad:
            raise ConfigError(f"with_base can change tau, combine, reduction and batch_models only, got {bad}")
        other = copy.copy(self)
        other.base = get_method(base).name
        other.base_options = dict(base_options or {})
        for k, v in settings.items():
            setattr(other, k, v)
        _check_tau(other.tau)
        if other.combine not in COMBINES or other.reduction not in REDUCTIONS:
            raise ConfigError(f"invalid combine {other.combine!r} or reduction {other.reduction!r}")
        return other

    # explaining -----------------------------------------------------------------
    def _explained(self) -> dict[int, int]:
        """Explained class -> index of the task whose support models explain it."""
        out: dict[int, int] = {}
        for t, (_, explained) in enumerate(self.tasks_ or []):
            for c in explained:
                out.setdefault(c, t)
        return out

    def _targets(self, x: torch.Tensor, target: TargetLike) -> torch.Tensor:
        explained = self._explained()
        if target is None:
            cols = torch.tensor(sorted(explained), device=x.device)
            with preserved_state(self.model), torch.no_grad():
                scores = select_output(self.model(x), self.output)
            return cols[scores[:, cols].argmax(1)]
        t = resolve_targets(target, x.shape[0], self.num_classes_, device=x.device)
        bad = sorted({int(c) for c in t.tolist()} - set(explained))
        if bad:
            raise TargetError(
                f"target class(es) {bad} are not explained by this GAD (classes {sorted(explained)}); "
                "fit a GAD for those classes"
            )
        return t

    def _use_stack(self) -> bool:
        if self.batch_models == "auto":
            return bool(get_method(self.base).cls.stack_by_default)
        return bool(self.batch_models)

    def _base_maps(self, models: list[nn.Module], x: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
        """The base method's maps of every model for ``x`` and targets ``t``."""
        options = dict(self.base_options)
        if not self._use_stack():
            if self.output is not None:
                options["output"] = self.output
            maps = []
            for m in models:
                inst, opts = make_method(m, self.base, **options)
                maps.append(inst.attribute(x, target=t, **opts))
            return maps
        k, n = len(models), x.shape[0]
        stacked = StackedModels(models, n, self.output)
        # the class count is known; spares the base method a one-image probe, which the
        # stacked model (k blocks of n rows) cannot run
        if "num_classes" in init_params(get_method(self.base).cls):
            options["num_classes"] = self.num_classes_
        inst, opts = make_method(stacked, self.base, **options)
        if "internal_batch_size" in inspect.signature(inst._attribute).parameters:
            rows = k * n
            per = max(1, x[0].numel())
            chunk = opts.get("internal_batch_size") or DEFAULT_CHUNK_ELEMENTS // per
            opts["internal_batch_size"] = max(rows, chunk // rows * rows)
        a = inst.attribute(x.repeat(k, *([1] * (x.dim() - 1))), target=t.repeat(k), **opts)
        return list(a.split(n))

    def attribute(
        self, x: torch.Tensor, target: TargetLike = None, return_all: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The fused GAD map of ``x`` for ``target``.

        Args:
            x: images ``(N, C, H, W)``.
            target: the class to explain per image (int, sequence, LongTensor); ``None``
                = the original model's argmax among the explained classes.
            return_all: also return the ``S + 1`` normalised 2-D maps ``Ŝ_j``
                (``j = 0`` the original model) as ``(N, S + 1, H, W)``.

        Returns:
            the fused map ``(N, 1, H, W)`` in ``[0, 1]`` (and the maps with ``return_all``).
        """
        if not self.is_fitted:
            raise ModelStateError("this GAD is not fitted: call gad.fit(train_data) (or GAD.load) first")
        check_input(x, ndim=4)
        check_eval_mode(self.model)
        t = self._targets(x, target)
        explained = self._explained()
        fused = torch.zeros(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        maps = torch.zeros(x.shape[0], self.n_support + 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        task_of = torch.tensor([explained[int(c)] for c in t.tolist()], device=x.device)
        for task in task_of.unique().tolist():
            rows = (task_of == task).nonzero().squeeze(1)
            models = [self.model, *self.support_models_[task]]
            try:
                base_maps = self._base_maps(models, x[rows], t[rows])
            except ModelStateError as e:  # its image numbers count rows of this task's (stacked) pass
                raise _support_error(models, x, rows, task, self.output, x.shape[0], e) from e
            f, m = fuse(base_maps, self.tau, self.combine, self.reduction, return_maps=True)
            fused[rows] = f.to(x.dtype)
            maps[rows] = m.to(x.dtype)
        return (fused, maps) if return_all else fused

    # persistence ----------------------------------------------------------------
    def save(self, directory: str) -> None:
        """Save the settings (``gad.json``) and the support models (``support.safetensors``)."""
        save_gad(self, directory)

    @classmethod
    def load(cls, directory: str, model: nn.Module, check_weights: bool = True, **overrides: Any) -> GAD:
        """Rebuild a fitted GAD saved by :meth:`save` around ``model`` (the original classifier).

        ``overrides`` replace saved settings that only affect :meth:`attribute`
        (``tau``, ``combine``, ``reduction``, ``base_options``, ``batch_models``,
        ``progress``). Raises :class:`~cleargrad.DataError` when the saved weights do
        not match ``model``'s architecture, when ``model``'s weights are not those the
        support models were fitted on (``gad.json``'s ``model_digest``; ``check_weights=False``
        skips this check), or when a file of the folder is missing, torn or damaged.
        """
        return load_gad(cls, directory, model, check_weights=check_weights, **overrides)


def _advertised_signature() -> inspect.Signature:
    """``GAD.__init__`` with the settings groups' fields as flat keywords (their defaults from the groups)."""
    sig = inspect.signature(GAD.__init__)
    params = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
    return sig.replace(parameters=[*params, *flat_parameters()])


# the signature help() and inspect show; mypy does not model __signature__ on a function
GAD.__init__.__signature__ = _advertised_signature()  # type: ignore[attr-defined]  # function attribute
