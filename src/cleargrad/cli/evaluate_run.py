"""``cleargrad evaluate`` as a settings object and one function (also usable from Python).

    from cleargrad.cli.evaluate_run import EvaluateSettings, run_evaluate
    from cleargrad.cli.console import UI

    run_evaluate(EvaluateSettings(model="small-cnn-fashion-mnist", dataset="fashion-mnist",
                                  methods="saliency,gradcam", metrics="insertion,deletion",
                                  store=Path("runs.sqlite"), limit=64), UI())

The command's options are the fields of :class:`EvaluateSettings` (same names and
defaults); the engine (:func:`cleargrad.cli.engine.run_evaluation`) receives what it
needs from them as an :class:`~cleargrad.cli.engine.EvalPlan`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .console import UI

__all__ = ["EvaluateSettings", "run_evaluate"]


@dataclass
class EvaluateSettings:
    """Everything ``cleargrad evaluate`` takes (field = option without the dashes).

    ``methods`` / ``metrics`` are comma-separated names; ``option`` and
    ``metric_option`` hold ``METHOD.KEY=VALUE`` / ``METRIC.KEY=VALUE`` strings;
    ``device`` is ``auto``, ``cpu``, ``cuda``, ``cuda:K`` (under ``torchrun`` on several
    GPUs, ``auto``/``cuda`` mean ``cuda:LOCAL_RANK``); ``compile`` runs the metrics'
    forward passes through ``torch.compile`` (True or a backend name);
    ``metric_batch_size`` bounds the images per metric forward pass (memory);
    ``fold_batchnorm`` runs the metrics' passes, and Score-CAM's masked passes, on a copy
    with eval-mode batch norms folded into the layers before them (faster, equal to float
    rounding); False also sets Score-CAM's ``fold_batchnorm`` option unless given.
    """

    model: str
    dataset: str
    methods: str
    metrics: str
    store: Path
    weights: Path | None = None
    limit: int | None = None
    target: str = "auto"
    layer: str = "auto"
    reshape: str = "auto"
    reference: str | None = None
    option: list[str] = field(default_factory=list)
    metric_option: list[str] = field(default_factory=list)
    gallery: int = 8
    overlays: Path | None = None
    gad: Path | None = None
    classes: str | None = None
    size: int | None = None
    resize: str = "crop"
    crop_fraction: float | None = None
    grayscale: bool | None = None
    mean: str | None = None
    std: str | None = None
    batch_size: int = 16
    seed: int = 0
    device: str = "auto"
    compile: bool | str = False
    metric_batch_size: int | None = None
    fold_batchnorm: bool = True


def _process_device(dev: Any, world: int) -> Any:
    """Under ``torchrun`` with several processes, an unindexed CUDA device is this
    process's GPU (``LOCAL_RANK`` modulo the GPUs it sees)."""
    import torch

    if world > 1 and dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % max(1, torch.cuda.device_count()))
    return dev


def run_evaluate(s: EvaluateSettings, ui: UI) -> None:
    """Run the evaluation described by ``s``: resumable rows in ``s.store``, a summary on rank 0."""
    from ..data.identity import dataset_identity
    from ..report import versions
    from ..store import ResultStore
    from .app import (
        _device,
        _explainers,
        _file_digest,
        _first,
        _floats,
        _gad_identity,
        _metric_options,
        _model,
        _only_classes,
        _params,
        _print_skipped,
        _references,
        _target,
    )
    from .engine import EvalPlan, barrier, distributed, run_evaluation, shard_from_env
    from .explainers import build_explainer, check_global_options, parse_options, split_names
    from .images import check_model_takes, default_preprocess, fashion_mnist_set, image_set
    from .metric_runner import metric_runner
    from .tables import print_results

    method_names = split_names(s.methods)
    metric_names = split_names(s.metrics)
    if not method_names or not metric_names:
        raise ConfigError("give at least one method (--methods) and one metric (--metrics)")
    opts = parse_options(s.option)
    mopts = _metric_options(s.metric_option)
    runners = [metric_runner(n, mopts.get(n.strip().lower().replace("-", "_"))) for n in metric_names]
    tgt = _target(s.target, allow_label=True)
    shard = shard_from_env()
    dev = _process_device(_device(s.device), shard.world)
    net = _model(s.model, s.weights, s.seed, dev, ui)
    if s.dataset.strip().lower().replace("_", "-") == "fashion-mnist":
        data = fashion_mnist_set(None if s.classes else s.limit)
        prep = data.preprocess
        refs = fashion_mnist_set(64, split="train").tensors
    else:
        prep = default_preprocess(
            net, s.size, s.grayscale, _floats(s.mean, "mean"), _floats(s.std, "std"), s.resize, s.crop_fraction
        )
        data = image_set([s.dataset], prep)
        refs = _references(data, prep)
    if s.classes:
        data = _only_classes(data, s.classes)
    if s.limit is not None:
        data = _first(data, s.limit)
    if tgt == "label":
        data.check_labels()
    check_model_takes(net, refs)
    assert prep is not None
    check_opts = opts
    if not s.fold_batchnorm and "fold_batchnorm" not in opts.get("*", {}):
        # the explanations' forward-only passes (Score-CAM's masked passes) unfolded too; a global
        # option reaches only the methods that take it
        opts = {**opts, "*": {**opts.get("*", {}), "fold_batchnorm": False}}
    explainers = _explainers(net, method_names, s.gad, s.layer, s.reshape, opts, refs)
    check_global_options(check_opts, explainers)
    refs_needed = any("map_b" in _params(r.fn) for r in runners)
    ref_explainers = []
    if refs_needed:
        plain = [e for e in explainers if e.family != "gad"]
        if s.reference is None and plain:
            raise ConfigError("a region-comparison metric needs --reference METHOD (the map it compares against)")
        if s.reference is not None:
            ref = build_explainer(net, s.reference, layer=s.layer, reshape=s.reshape, options=opts, references=refs)
            ref_explainers.append(ref)
            for e in plain:
                e.reference = ref.name
        have = {e.name for e in [*explainers, *ref_explainers]}
        for e in explainers:  # GAD is compared with its base method
            if e.family == "gad" and e.reference not in have:
                ref_explainers.append(
                    build_explainer(net, e.reference, layer=s.layer, reshape=s.reshape, options=opts, references=refs)
                )
                have.add(e.reference)
    settings = {
        "command": "evaluate",
        "model": s.model,
        "weights": str(s.weights) if s.weights else None,
        "weights_sha256": _file_digest(s.weights),
        "dataset": data.description,
        # an image folder: its resolved path and file-list digest (a changed folder is a new run)
        **({"dataset_files": dataset_identity(s.dataset)} if s.dataset.strip().lower().replace("_", "-")
           != "fashion-mnist" else {}),
        "limit": s.limit,
        "preprocess": prep.as_dict(),
        "target": tgt,
        "classes": s.classes,
        "gad": _gad_identity(s.gad),
        "layer": s.layer,
        **({"reshape": s.reshape} if s.reshape != "auto" else {}),  # absent by default: older stores resume
        "reference": s.reference,
        "method_options": {e.name: e.options for e in explainers},
        "metric_options": mopts,
        "batch_size": s.batch_size,
        "seed": s.seed,
        # values that differ from older versions' rows: a new settings hash, never mixed in one table
        **({"infidelity_draws": "shared across methods"} if any(r.name == "infidelity" for r in runners) else {}),
        **({"metric_batch_size": s.metric_batch_size} if s.metric_batch_size is not None else {}),
    }
    with distributed(shard), ResultStore(s.store) as st:
        h = st.record_run(settings, versions())
        st.add_metric_info((r.name, r.direction, r.category, r.summary) for r in runners)
        st.add_images(((r.image_id, r.label, r.class_name, r.source) for r in data.records), h)
        plan = EvalPlan(
            model=net,
            images=data,
            explainers=explainers,
            metrics=runners,
            store=st,
            settings=h,
            preprocess=prep,
            batch_size=s.batch_size,
            seed=s.seed,
            target=tgt,
            gallery=s.gallery,
            overlay_dir=s.overlays,
            references=ref_explainers,
            shard=shard,
            device=dev,
            compile=s.compile,
            metric_batch_size=s.metric_batch_size,
            fold_batchnorm=s.fold_batchnorm,
        )
        written = run_evaluation(plan, ui)
        if data.skipped:
            st.add_skipped(data.skipped.items())
        ui.info(f"{written} new row(s); {s.store} holds {st.count()} row(s)")
        barrier(shard)
        if shard.rank == 0:
            print_results(ui, st, h, str(s.store))
    _print_skipped(ui, data.skipped)
