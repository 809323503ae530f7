"""``cleargrad evaluate`` as one function of an :class:`EvaluationSettings` (also usable from Python).

    from cleargrad.evaluation import EvaluationSettings, run_evaluate
    from cleargrad.evaluation.console import UI

    run_evaluate(EvaluationSettings(model="small-cnn-fashion-mnist", dataset="fashion-mnist",
                                    methods="saliency,gradcam", metrics="insertion,deletion",
                                    store=Path("runs.sqlite"), limit=64), UI())

The settings are built from spec strings here (the model, the image set, the explainers,
the metrics), then the engine (:func:`cleargrad.evaluation.engine.run_evaluation`)
receives the built objects and the settings as an :class:`~cleargrad.evaluation.engine.EvalPlan`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ..errors import ConfigError
from .console import UI
from .settings import EvaluationSettings

if TYPE_CHECKING:
    import torch

__all__ = ["EvaluateSettings", "EvaluationSettings", "ShowResults", "run_evaluate"]

#: ``show(store, settings_hash)``: what the caller does with the finished results (print a summary)
ShowResults = Callable[[Any, str], None]

#: the former name of :class:`EvaluationSettings`
EvaluateSettings = EvaluationSettings


def _process_device(dev: Any, world: int) -> Any:
    """Under ``torchrun`` with several processes, an unindexed CUDA device is this
    process's GPU (``LOCAL_RANK`` modulo the GPUs it sees)."""
    import torch

    if world > 1 and dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % max(1, torch.cuda.device_count()))
    return dev


def _image_set(s: EvaluationSettings, net: Any, target: Any) -> tuple[Any, Any, Any]:
    """``(images, preprocessing, reference images)`` of ``s.dataset``, restricted by
    ``s.classes`` and ``s.limit``."""
    from ..core.names import dashed_key
    from .images import check_model_takes, default_preprocess, fashion_mnist_set, image_set
    from .prepare import first_images, only_classes, parse_floats, reference_images

    if dashed_key(s.dataset) == "fashion-mnist":
        data = fashion_mnist_set(None if s.classes else s.limit)
        prep = data.preprocess
        refs = cast("torch.Tensor", fashion_mnist_set(64, split="train").tensors)  # in memory: tensors set
    else:
        prep = default_preprocess(
            net, s.size, s.grayscale, parse_floats(s.mean, "mean"), parse_floats(s.std, "std"), s.resize,
            s.crop_fraction,
        )
        data = image_set([s.dataset], prep)
        refs = reference_images(data, prep)
    if s.class_names is not None:
        data = _named(data, s.class_names)
    if s.classes:
        data = only_classes(data, s.classes)
    if s.limit is not None:
        data = first_images(data, s.limit)
    if target == "label" or getattr(target, "rule", None) == "label":
        data.check_labels()
    check_model_takes(net, refs)
    assert prep is not None
    return data, prep, refs


def _named(data: Any, path: Any) -> Any:
    """``data`` with each labelled image's class name read from the file ``path`` (line i = class i)."""
    import dataclasses

    from .explain_run import read_class_names

    names = read_class_names(path)
    high = max((r.label for r in data.records if r.label is not None), default=-1)
    if high >= len(names):
        raise ConfigError(f"--class-names {path} names {len(names)} classes but the images have label {high}")
    records = [r if r.label is None else dataclasses.replace(r, class_name=names[r.label]) for r in data.records]
    return dataclasses.replace(data, records=records)


def _reference_explainers(
    s: EvaluationSettings, net: Any, explainers: list[Any], runners: list[Any], opts: Any, refs: Any,
    output: Any = None,
) -> list[Any]:
    """The maps region-comparison metrics compare against: ``s.reference`` for plain methods,
    the base method for GAD (built here unless evaluated anyway)."""
    from .explainers import build_explainer
    from .prepare import param_names

    if not any("map_b" in param_names(r.fn) for r in runners):
        return []
    out = []
    plain = [e for e in explainers if e.family != "gad"]
    if s.reference is None and plain:
        raise ConfigError("a region-comparison metric needs --reference METHOD (the map it compares against)")
    if s.reference is not None:
        ref = build_explainer(
            net, s.reference, layer=s.layer, reshape=s.reshape, options=opts, references=refs, output=output
        )
        out.append(ref)
        for e in plain:
            e.reference = ref.name
    have = {e.name for e in [*explainers, *out]}
    for e in explainers:  # GAD is compared with its base method
        if e.family == "gad" and e.reference not in have:
            out.append(
                build_explainer(
                    net, e.reference, layer=s.layer, reshape=s.reshape, options=opts, references=refs, output=output
                )
            )
            have.add(e.reference)
    return out


def _curve_default(runners: list[Any], mopts: dict[str, dict[str, Any]], size: int) -> dict[str, Any]:
    """``{"curve_steps": ...}`` when a curve metric runs at its default step and that step
    differs from the one before ``n_steps`` (the image width): those values changed, so
    the run gets a new settings hash; at 28×28 the step is the same and nothing is added."""
    from ..metrics.insertion_deletion import DEFAULT_N_STEPS

    for r in runners:
        given = mopts.get(r.name, {})
        default = r.name in ("insertion", "deletion") and "step" not in given and "n_steps" not in given
        if default and -(-size * size // DEFAULT_N_STEPS) != size:
            return {"curve_steps": f"n_steps={DEFAULT_N_STEPS}"}
    return {}


def run_evaluate(s: EvaluationSettings, ui: UI, show: ShowResults | None = None) -> None:
    """Run the evaluation described by ``s``: resumable rows in ``s.store``; on rank 0, once every
    shard is done, ``show(store, settings_hash)`` (the command prints its summary there)."""
    from ..core.names import dashed_key, snake_key
    from ..data.identity import dataset_identity
    from ..report import versions
    from ..report.verdict import CONTROL
    from ..store import ResultStore
    from .engine import EvalPlan, barrier, distributed, run_evaluation, shard_from_env
    from .explainers import build_explainer, check_global_options, parse_options, split_names
    from .metric_runner import metric_runner
    from .prepare import (
        build_explainers,
        file_digest,
        gad_identity,
        load_run_model,
        parse_metric_options,
        parse_target,
        report_skipped,
        resolve_run_device,
    )
    from .targets import parse_output

    method_names = split_names(s.methods)
    metric_names = split_names(s.metrics)
    if not method_names or not metric_names:
        raise ConfigError("give at least one method (--methods) and one metric (--metrics)")
    opts = parse_options(s.option)
    mopts = parse_metric_options(s.metric_option)
    runners = [metric_runner(n, mopts.get(snake_key(n))) for n in metric_names]
    tgt = parse_target(s.target, allow_label=True)
    output = parse_output(s.output)
    shard = shard_from_env()
    dev = _process_device(resolve_run_device(s.device), shard.world)
    net = load_run_model(s.model, s.weights, s.seed, dev, ui)
    data, prep, refs = _image_set(s, net, tgt)
    check_opts = opts
    if not s.fold_batchnorm and "fold_batchnorm" not in opts.get("*", {}):
        # the explanations' forward-only passes (Score-CAM's masked passes) unfolded too; a global
        # option reaches only the methods that take it
        opts = {**opts, "*": {**opts.get("*", {}), "fold_batchnorm": False}}
    explainers = build_explainers(net, method_names, s.gad, s.layer, s.reshape, opts, refs, output=output)
    check_global_options(check_opts, explainers)
    ref_explainers = _reference_explainers(s, net, explainers, runners, opts, refs, output=output)
    # an image folder: its resolved path and file-list digest (a changed folder is a new run)
    folder: dict[str, Any] = (
        {"dataset_files": dataset_identity(s.dataset)}
        if dashed_key(s.dataset) != "fashion-mnist" else {}
    )
    record = s.record(
        weights_sha256=file_digest(s.weights),
        dataset=data.description,
        preprocess=prep.as_dict(),
        target=tgt if isinstance(tgt, str | int) else str(tgt),  # a spec by its canonical text
        gad=gad_identity(s.gad),
        method_options={e.name: e.options for e in explainers},
        metric_options=mopts,
        # values that differ from older versions' rows: a new settings hash, never mixed in one table
        **({"infidelity_draws": "shared across methods"} if any(r.name == "infidelity" for r in runners) else {}),
        **_curve_default(runners, mopts, prep.size),
        **folder,
    )
    evaluated = explainers
    if s.random_control and CONTROL not in {e.name for e in explainers}:
        # after the record: the control's rows join the run's hash (see EvaluationSettings);
        # no user option reaches it, so its maps are the same whatever the command's -o
        control = build_explainer(net, CONTROL, output=output)
        control.reference = next((e.reference for e in explainers if e.family != "gad" and e.reference), None)
        evaluated = [*explainers, control]
    with distributed(shard), ResultStore(s.store) as st:
        h = st.record_run(record, versions())
        st.add_metric_info((r.name, r.direction, r.category, r.summary) for r in runners)
        st.add_images(((r.image_id, r.label, r.class_name, r.source) for r in data.records), h)
        plan = EvalPlan(
            model=net, images=data, explainers=evaluated, metrics=runners, store=st, settings=h, preprocess=prep,
            run=s, references=ref_explainers, shard=shard, device=dev,
        )
        written = run_evaluation(plan, ui)
        if data.skipped:
            st.add_skipped(data.skipped.items())
        ui.info(f"{written} new row(s); {s.store} holds {st.count()} row(s)")
        barrier(shard)
        if shard.rank == 0 and show is not None:
            show(st, h)
    report_skipped(ui, data.skipped)
