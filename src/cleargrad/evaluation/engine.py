"""The evaluation loop shared by ``cleargrad evaluate`` and ``cleargrad demo``.

Work is cut into fixed batches of images (the same batches whatever the number of
processes); process ``rank`` of ``world`` takes batches ``rank, rank + world, ...``. For
each batch and method the explanation is computed once, then each metric's rows are
written in one transaction. Every random draw comes from a generator seeded by
``(seed, batch, method, metric)``, so a value does not depend on which process computed
it, or on whether the run was interrupted and resumed: rows already in the store are
skipped, and a batch is only recomputed when some of its rows are missing.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core import release_host_memory, to_2d
from ..metrics.protocol import SharedBatch
from ..runtime.compiled import compiled_forward
from ..runtime.fused import folded_forward
from ..store import ResultRow, ResultStore
from .console import UI
from .explainers import Explainer
from .images import ImageRecord, ImageSet, Preprocess
from .metric_runner import BatchContext, MetricRunner
from .outputs import output_stems
from .render import input_png, overlay_png
from .settings import EvaluationSettings
from .targets import TargetSpec, parse_output, parse_target, target_classes, target_key, targets_for

__all__ = [
    "EvalPlan",
    "Shard",
    "barrier",
    "distributed",
    "run_evaluation",
    "seed_for",
    "shard_from_env",
]


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world`` processes (from torchrun's environment)."""

    rank: int = 0
    world: int = 1


def shard_from_env() -> Shard:
    """``RANK``/``WORLD_SIZE`` as set by ``torchrun`` (a single process otherwise)."""
    return Shard(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


@contextmanager
def distributed(shard: Shard) -> Iterator[None]:
    """Join the ``torchrun`` process group (gloo on CPU, nccl on CUDA) when ``world > 1``.

    Each process computes its own shard and writes to the shared store; the group is used
    only to wait for every shard before the final table is printed.
    """
    import torch.distributed as dist

    if shard.world <= 1 or not dist.is_available() or dist.is_initialized():
        yield
        return
    backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend=backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(shard: Shard) -> None:
    """Wait until every process reaches this point (no-op for a single process)."""
    import torch.distributed as dist

    if shard.world > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()


def seed_for(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from ``seed`` and the parts (stable across processes and runs)."""
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


class EvalPlan:
    """Everything one evaluation needs: the built objects, and the options as an
    :class:`~cleargrad.evaluation.settings.EvaluationSettings` (:attr:`run`).

    Args:
        model, images, explainers, metrics, store: what is evaluated, and where rows go.
        settings: the store's settings hash of the run.
        preprocess: the images' preprocessing (denormalisation of the overlays).
        run: the options the engine reads: ``batch_size``, ``seed``, ``target``
            (``"auto"``: the model's prediction; ``"label"``: ground truth, the prediction
            for images without one; or a class index), ``gallery``, ``overlays``,
            ``compile``, ``metric_batch_size``, ``fold_batchnorm`` (see
            :class:`~cleargrad.evaluation.settings.EvaluationSettings`). None: the defaults,
            its ``model`` ... ``store`` describing the objects given.
        references: explainers of the reference maps (scored by no metric).
        shard: this process's share of the batches.
        device: where the images go.
        save_arrays: with ``overlays``, also write every explanation as ``.npy``.
        **options: settings fields replacing those of ``run`` (``batch_size=4``;
            ``overlay_dir`` is the former name of ``overlays``).

    Options read and set as attributes too (``plan.batch_size``, ``plan.fold_batchnorm = False``:
    setting one replaces :attr:`run` with a copy); :meth:`replace` copies with changes.
    """

    def __init__(
        self,
        model: nn.Module,
        images: ImageSet,
        explainers: list[Explainer],
        metrics: list[MetricRunner],
        store: ResultStore,
        settings: str,
        preprocess: Preprocess,
        *,
        run: EvaluationSettings | None = None,
        references: list[Explainer] | None = None,
        shard: Shard | None = None,
        device: torch.device | None = None,
        save_arrays: bool = False,
        **options: object,
    ) -> None:
        self.model, self.images, self.explainers, self.metrics = model, images, explainers, metrics
        self.store, self.settings, self.preprocess = store, settings, preprocess
        self.references = list(references or [])
        self.shard = shard if shard is not None else Shard()
        self.device = device if device is not None else torch.device("cpu")
        self.save_arrays = save_arrays
        if "overlay_dir" in options:
            options["overlays"] = options.pop("overlay_dir")
        if run is None:
            run = EvaluationSettings(
                model=type(model).__name__, dataset=images.description,
                methods=",".join(e.name for e in explainers), metrics=",".join(m.name for m in metrics),
                store=Path(store.path),
            )
        self.run = run.with_options(**options) if options else run

    def __setattr__(self, name: str, value: object) -> None:
        d = self.__dict__
        if "run" in d and name not in d and name in EvaluationSettings.field_names():  # an option: into the settings
            object.__setattr__(self, "run", self.run.with_options(**{name: value}))
        else:
            object.__setattr__(self, name, value)

    def replace(self, **changes: object) -> EvalPlan:
        """A copy with ``changes`` (constructor arguments or settings fields) replaced."""
        current = {k: v for k, v in self.__dict__.items() if k != "run"}
        return EvalPlan(**{**current, "run": self.run, **changes})

    def __getattr__(self, name: str) -> object:
        run = self.__dict__.get("run")
        if run is not None and name in EvaluationSettings.field_names():
            return getattr(run, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def target(self) -> str | int | TargetSpec:
        """The target rule: ``"auto"``, ``"label"``, a class index or a
        :class:`~cleargrad.evaluation.targets.TargetSpec`."""
        return parse_target(self.run.target, allow_label=True)


def _score_metric(
    plan: EvalPlan,
    shared: SharedBatch,
    mt: MetricRunner,
    wanted: dict[str, Any],
    explain: Callable[[str, Any], torch.Tensor],
    x: torch.Tensor,
    b: int,
    by_name: dict[str, Explainer],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor | None]]:
    """``{method: (N,) values}`` of one metric for the methods ``wanted`` (name -> targets):
    shared work where the metric has it (:class:`~cleargrad.metrics.SharedBatch`; methods
    explained for the same classes are scored together), else each method alone. Also
    ``{method: (N, K) curves}`` of curve metrics (insertion, deletion) for the report."""
    out: dict[str, torch.Tensor] = {}
    curves: dict[str, torch.Tensor | None] = {}
    groups: dict[tuple[Any, ...], list[str]] = {}
    for m, t in wanted.items():
        groups.setdefault(target_key(t), []).append(m)
    for members in groups.values():
        t = wanted[members[0]]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".* is undefined for ", category=RuntimeWarning)
            gen = torch.Generator(device=x.device).manual_seed(seed_for(plan.run.seed, b, mt.name))
            values = shared.score(mt.name, {m: explain(m, t) for m in members}, t, dict(mt.options), gen)
        if values is not None:
            out.update({m: v.detach().to("cpu", torch.float64).reshape(-1) for m, v in values.items()})
            for m in values:
                c = shared.last_curves.pop((mt.name, m), None)
                curves[m] = None if c is None else c.detach().to("cpu", torch.float64)
            continue
        for m in members:
            ref_name = by_name[m].reference

            def explain_fn(xx: torch.Tensor, tt: torch.Tensor, m: str = m) -> torch.Tensor:
                gen = torch.Generator(device=xx.device).manual_seed(seed_for(plan.run.seed, "sens", m))
                return by_name[m].fn(xx, tt, gen)

            ctx = BatchContext(
                model=plan.model,
                x=x,
                targets=t,
                attribution=explain(m, t),
                explain_fn=explain_fn,
                generator=torch.Generator(device=x.device).manual_seed(seed_for(plan.run.seed, b, m, mt.name)),
                mean=plan.preprocess.mean,
                std=plan.preprocess.std,
                reference=explain(ref_name, t) if ref_name and ref_name in by_name else None,
                output=shared.output,
            )
            out[m], curves[m] = mt.run_with_curves(ctx)
    return out, curves


def _overlay_path(plan: EvalPlan, rec: ImageRecord, method: str) -> Path:
    assert plan.run.overlays is not None
    return plan.run.overlays / f"{output_stems([rec.image_id])[rec.image_id]}__{method}.png"


def _write_files(plan: EvalPlan, rec: ImageRecord, method: str, png: bytes, arr: np.ndarray) -> None:
    from ..atomic import atomic_save_npy, atomic_write

    path = _overlay_path(plan, rec, method)
    if plan.save_arrays:
        atomic_save_npy(path.with_suffix(".npy"), arr)
    atomic_write(path, png)  # last: its existence marks the pair as done


def _overlay_done(plan: EvalPlan, rec: ImageRecord, method: str) -> bool:
    """The overlay file exists and is a whole PNG (a torn file of an older version is redone)."""
    from ..atomic import is_complete_png

    path = _overlay_path(plan, rec, method)
    if plan.save_arrays and not path.with_suffix(".npy").is_file():
        return False
    return is_complete_png(path)


def run_evaluation(plan: EvalPlan, ui: UI) -> int:
    """Compute and store every missing row of this process's shard; returns rows written."""
    n = len(plan.images)
    batches = [list(range(i, min(i + plan.run.batch_size, n))) for i in range(0, n, plan.run.batch_size)]
    mine = [(b, idx) for b, idx in enumerate(batches) if b % plan.shard.world == plan.shard.rank]
    gallery_ids = {r.image_id for r in sorted(plan.images.records, key=lambda r: r.image_id)[: plan.run.gallery]}
    done = plan.store.done(plan.settings)
    have_overlay = plan.store.has_overlay(plan.settings)
    names = [e.name for e in plan.explainers]
    by_name = {e.name: e for e in [*plan.references, *plan.explainers]}
    written = 0
    # compiled: the model itself (inductor fuses the norms into the convolutions' epilogues; it
    # must not trace the folding wrapper's copy-and-check); else batch norms folded, if asked
    scorer = (
        compiled_forward(
            plan.model, plan.run.compile,
            on_fallback=lambda why: ui.warn(f"torch.compile failed, running eagerly: {why}"),
        )
        if plan.run.compile
        else folded_forward(plan.model, plan.run.fold_batchnorm)
    )
    steps = len(names) + len(plan.metrics)
    output = parse_output(plan.run.output)
    target = plan.target
    layers_seen: set[str] = set()
    with ui.progress() as progress:
        task = progress.add_task("evaluating", total=len(mine) * steps)
        for b, idx in mine:
            recs_all = [plan.images.records[i] for i in idx]
            todo = {
                m: [mt for mt in plan.metrics if any((r.image_id, m, mt.name) not in done for r in recs_all)]
                for m in names
            }
            need_overlay = {
                m
                for m in names
                for r in recs_all
                if (r.image_id in gallery_ids and (r.image_id, m) not in have_overlay)
                or (plan.run.overlays is not None and not _overlay_done(plan, r, m))
            }
            if not any(todo.values()) and not need_overlay:
                progress.advance(task, steps)
                continue
            x, recs = plan.images.load(idx)
            if plan.images.skipped:
                plan.store.add_skipped(plan.images.skipped.items())
            if x is None:
                progress.advance(task, steps)
                continue
            x = x.to(plan.device)
            plan.store.add_images(((r.image_id, r.label, r.class_name, r.source) for r in recs), plan.settings)
            shared = SharedBatch(
                plan.model, x, mean=plan.preprocess.mean, std=plan.preprocess.std,
                batch_size=plan.run.metric_batch_size, scorer=scorer, output=output,
            )
            clean = shared.output_value  # the batch's one clean pass: targets and every metric
            labels = [r.label for r in recs]
            cache: dict[tuple[Any, ...], torch.Tensor] = {}

            def explain(
                name: str, t: Any, b: int = b, x: torch.Tensor = x,
                cache: dict[tuple[Any, ...], torch.Tensor] = cache,
            ) -> torch.Tensor:
                key = (name, target_key(t))
                if key not in cache:
                    gen = torch.Generator(device=x.device).manual_seed(seed_for(plan.run.seed, b, name))
                    cache[key] = by_name[name].fn(x, t, gen).detach()
                return cache[key]

            targets = {m: targets_for(by_name[m], target, clean, labels) for m in names}
            for m in names:
                progress.update(task, description=f"batch {b + 1}/{len(batches)} {m}")
                if todo[m] or m in need_overlay:
                    a = explain(m, targets[m])
                    if m not in layers_seen:  # the layer a CAM resolved (layer="auto"), for the report
                        layers_seen.add(m)
                        resolved = by_name[m].resolved_layers(x)
                        if resolved:
                            plan.store.add_layers([(m, ", ".join(resolved))], plan.settings)
                if m in need_overlay:
                    items, maps = [], []
                    for i, r in enumerate(recs):
                        png = overlay_png(plan.preprocess.denormalize(x[i].cpu()), a[i].cpu())
                        if r.image_id in gallery_ids:
                            items.append((r.image_id, m, png))
                            maps.append((r.image_id, m, to_2d(a[i : i + 1].float().cpu())[0, 0].numpy()))
                        if plan.run.overlays is not None:
                            _write_files(plan, r, m, png, a[i].cpu().numpy())
                    if items:
                        plan.store.add_maps(maps, plan.settings)
                        plan.store.add_overlays(items, plan.settings)
                        plan.store.add_inputs(
                            ((r.image_id, input_png(plan.preprocess.denormalize(x[i].cpu())))
                             for i, r in enumerate(recs) if r.image_id in gallery_ids),
                            plan.settings,
                        )
                release_host_memory()
                progress.advance(task)
            for mt in plan.metrics:
                progress.update(task, description=f"batch {b + 1}/{len(batches)} {mt.name}")
                wanted = {m: targets[m] for m in names if mt in todo[m]}
                values, curves = (
                    _score_metric(plan, shared, mt, wanted, explain, x, b, by_name) if wanted else ({}, {})
                )
                for m, v in values.items():
                    rows = [
                        ResultRow(r.image_id, m, mt.name, float(val), tt)
                        for r, val, tt in zip(recs, v.tolist(), target_classes(targets[m]))
                        if (r.image_id, m, mt.name) not in done
                    ]
                    got = curves.get(m)
                    curve_rows = (
                        [(r.image_id, m, mt.name, c) for r, c in zip(recs, got.tolist())
                         if (r.image_id, m, mt.name) not in done]
                        if got is not None else []
                    )
                    plan.store.add_results(rows, plan.settings, curve_rows)
                    written += len(rows)
                release_host_memory()
                progress.advance(task)
    return written
