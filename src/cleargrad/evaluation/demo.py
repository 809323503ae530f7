"""The demo pipeline behind ``cleargrad demo`` (and ``make demo``).

Load the reference SmallCNN on Fashion-MNIST (its weights ship with the package; it is
trained only when they are missing or when asked with ``retrain``), fit GAD for one class pair with small
settings (cached on disk too), explain a fixed sample of test images of that pair with
every registered pixel and CAM method (Expected Grad-CAM included) and with GAD, score
them with faithfulness, complexity and region metrics, and write PNG overlays,
``results.sqlite`` and ``report.html``. The evaluation goes through the same resumable
store as ``cleargrad evaluate``: rerunning the demo only computes what is missing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..report import build_report, versions
from ..store import ResultStore
from .console import UI
from .engine import EvalPlan, run_evaluation
from .explainers import Explainer, build_explainer, fast_defaults, load_registries
from .images import ImageSet, fashion_mnist_set
from .metric_runner import MetricRunner, metric_runner
from .settings import EvaluationSettings

__all__ = ["DemoSettings", "fit_or_load_gad", "gad_key", "run_demo"]


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs; every field is recorded with the results.

    Attributes:
        n_images: test images explained (half of each class of the pair, the first ones
            of the test split).
        pair: the GAD class pair (default T-shirt/top vs Shirt, the most confused pair).
        gad_base: GAD's base method; also the reference map of region complexity.
        gad_support / gad_epochs / gad_lr / gad_train_images: the GAD fit (3 support models,
            the library's 30 epochs; ``gad_lr=None`` is the library's default; the fit ships
            with the package, so the demo only fits when a setting changes); the training
            images of the pair are taken from the first
            ``10 * gad_train_images`` training images. Every other GAD setting is the
            library default (see :class:`cleargrad.GAD`).
        metrics: the metrics computed for every method.
        methods: registered methods to run (None: every pixel and CAM method); GAD is always run.
        recipe: training recipe of the SmallCNN (None: the reference recipe,
            :class:`cleargrad.models.FashionMNISTRecipe`).
        batch_size: images per batch.
        seed: seed of every random draw.
    """

    n_images: int = 16
    pair: tuple[int, int] = (0, 6)
    gad_base: str = "saliency"
    gad_support: int = 3
    gad_epochs: int = 30
    gad_lr: float | None = None
    gad_train_images: int = 2000
    metrics: tuple[str, ...] = (
        "insertion",
        "deletion",
        "average_drop",
        "infidelity",
        "sparseness",
        "complexity",
        "region_complexity",
        "region_sensitivity",
    )
    methods: tuple[str, ...] | None = None
    recipe: Any = None
    batch_size: int = 16
    seed: int = 0


def _pair_sample(settings: DemoSettings) -> ImageSet:
    """The first ``n_images / 2`` test images of each class of the pair."""
    per = -(-settings.n_images // 2)
    full = fashion_mnist_set(40 * per, split="test")  # classes are balanced: ~4 per image needed
    if min(sum(r.label == c for r in full.records) for c in settings.pair) < per:
        full = fashion_mnist_set(None, split="test")
    assert full.tensors is not None
    picked: list[int] = []
    for c in settings.pair:
        picked += [i for i, r in enumerate(full.records) if r.label == c][:per]
    picked = sorted(picked)[: settings.n_images]
    idx = torch.tensor(picked)
    return ImageSet([full.records[i] for i in picked], full.preprocess, tensors=full.tensors[idx],
                    description=f"fashion-mnist test, classes {settings.pair}")


def _unfitted_gad(model: nn.Module, settings: DemoSettings) -> Any:
    """The demo's GAD object before fitting (library defaults for everything not in ``settings``)."""
    from ..gad import GAD

    options = {"n_steps": 32} if settings.gad_base == "integrated_gradients" else {}
    extra: dict[str, Any] = {"lr": settings.gad_lr} if settings.gad_lr is not None else {}
    return GAD(
        model,
        base=settings.gad_base,
        classes=settings.pair,
        n_support=settings.gad_support,
        epochs=settings.gad_epochs,
        seed=settings.seed,
        base_options=options,
        **extra,
    )


def gad_key(model: nn.Module, settings: DemoSettings) -> str:
    """The cache key of the demo's GAD fit: every GAD setting (so a change of a library
    default, e.g. the learning-rate schedule or tau, is a new key), the training images
    and a digest of the model's weights."""
    from ..gad.persistence import gad_settings
    from ..models import config_key

    digest = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    gs = gad_settings(_unfitted_gad(model, settings))
    gs.pop("progress", None)
    return config_key({"gad": gs, "train_images": settings.gad_train_images, "model": digest.hexdigest()[:16]})


#: the GAD fit of the default demo on the shipped SmallCNN, shipped beside this module
SHIPPED_GAD = Path(__file__).with_name("demo_gad")


def _shipped_gad(key: str) -> Path | None:
    """The shipped GAD folder when it was fitted for ``key`` and its files match their
    SHA-256 in ``record.json``; else None."""
    import json

    rec_path = SHIPPED_GAD / "record.json"
    if not rec_path.is_file():
        return None
    rec = json.loads(rec_path.read_text())
    if rec.get("key") != key:
        return None
    for name, digest in rec.get("sha256", {}).items():
        if hashlib.sha256((SHIPPED_GAD / name).read_bytes()).hexdigest() != digest:
            return None
    return SHIPPED_GAD


def fit_or_load_gad(model: nn.Module, settings: DemoSettings, ui: UI) -> Any:
    """GAD for ``settings.pair`` with the demo's small fit settings: from the cache
    ``<cache>/gad/<key>`` (keyed by the settings and the model's weights), else the fit
    shipped with the package when the key matches (the default demo on the shipped
    SmallCNN), else fitted here and cached."""
    from ..data import load_fashion_mnist
    from ..gad import GAD
    from ..models import cache_root

    key = gad_key(model, settings)
    folder = cache_root() / "gad" / key
    if (folder / "gad.json").exists():
        ui.info(f"loading cached GAD support models from {folder}")
        return GAD.load(str(folder), model, progress=not ui.quiet)
    shipped = _shipped_gad(key)
    if shipped is not None:
        ui.info("loading the GAD support models shipped with the package (the default demo's fit)")
        return GAD.load(str(shipped), model, progress=not ui.quiet)
    # the pair is 1/5 of the balanced training set: the first 10 N images hold about 2 N of it
    train = load_fashion_mnist("train", normalize=True, limit=10 * settings.gad_train_images)
    keep = torch.isin(train.labels, torch.tensor(settings.pair)).nonzero().squeeze(1)[: settings.gad_train_images]
    gad = _unfitted_gad(model, settings)
    gad.progress = not ui.quiet
    ui.info(f"fitting GAD ({settings.gad_support} support models, {settings.gad_epochs} epochs, {len(keep)} images)")
    gad.fit((train.images[keep], train.labels[keep]))
    gad.save(str(folder))
    return gad


def _gad_explainer(gad: Any, base: str) -> Explainer:
    def fn(x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return gad.attribute(x, target=targets)

    return Explainer(f"gad_{base}", fn, "gad", "GAD: features the base method finds in every support model",
                     reference=base, options={"n_support": gad.n_support})


def run_demo(
    out: str | Path,
    ui: UI | None = None,
    n_images: int = 16,
    settings: DemoSettings | None = None,
    retrain: bool = False,
    show: Callable[[ResultStore, str], None] | None = None,
) -> Path:
    """Run the whole demo into ``out``; returns the path of ``report.html``.

    Args:
        out: output folder (overlays, ``results.sqlite``, ``report.html``).
        ui: terminal output (default: messages and progress on stderr).
        n_images: test images explained (ignored when ``settings`` is given).
        settings: what the demo runs (default :class:`DemoSettings`).
        retrain: train the SmallCNN again instead of loading the shipped or cached weights.
        show: ``show(store, settings_hash)`` once the rows are in (the command prints its summary).
    """
    from ..core.registry import get_method
    from ..models import small_cnn_fashion_mnist, small_cnn_fashion_mnist_record
    from .explainers import method_names

    ui = ui or UI()
    settings = settings or DemoSettings(n_images=n_images)
    load_registries()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)

    start = time.perf_counter()

    def took() -> str:
        return f"({time.perf_counter() - start:.1f} s since start)"

    ui.info("[1/4] model: SmallCNN on Fashion-MNIST (shipped weights; trained only when missing or --retrain)")
    model = small_cnn_fashion_mnist(recipe=settings.recipe, device="cpu", quiet=ui.quiet, retrain=retrain).eval()
    record = small_cnn_fashion_mnist_record(recipe=settings.recipe) or {}
    source = "shipped with the package" if record.get("source") == "shipped" else "trained here, cached"
    ui.info(f"      weights {source}, test accuracy {record.get('test_accuracy', float('nan')):.4f} {took()}")

    ui.info("[2/4] GAD support models")
    gad = fit_or_load_gad(model, settings, ui)
    ui.info(f"      GAD ready {took()}")

    data = _pair_sample(settings)
    assert data.preprocess is not None
    references = fashion_mnist_set(64, split="train").tensors
    if settings.methods is None:
        names = [n for n in method_names() if get_method(n).family in ("attribution", "cam")]
    else:
        names = [get_method(n).name for n in settings.methods]
    explainers = [build_explainer(model, n, references=references) for n in names]
    explainers.append(_gad_explainer(gad, settings.gad_base))
    for e in explainers:
        e.reference = e.reference or settings.gad_base
    by_name = {e.name: e for e in explainers}
    refs = [] if settings.gad_base in by_name else [build_explainer(model, settings.gad_base)]
    runners: list[MetricRunner] = [metric_runner(m) for m in settings.metrics]

    run_settings = {
        "command": "demo",
        "demo": {k: v for k, v in asdict(settings).items() if k != "recipe"},
        "recipe": asdict(settings.recipe) if settings.recipe is not None else "default",
        "model": "small-cnn-fashion-mnist",
        "model_test_accuracy": record.get("test_accuracy"),
        "dataset": data.description,
        "preprocess": data.preprocess.as_dict(),
        "target": "label",
        "reference": settings.gad_base,
        "method_options": {e.name: e.options for e in explainers},
        "fast_defaults": {n: fast_defaults(n) for n in names if fast_defaults(n)},
    }
    store_path = out / "results.sqlite"
    evaluation = EvaluationSettings(
        model="small-cnn-fashion-mnist", dataset="fashion-mnist", methods=",".join(e.name for e in explainers),
        metrics=",".join(settings.metrics), store=store_path, target="label", gallery=8, overlays=out / "overlays",
        batch_size=settings.batch_size, seed=settings.seed,
    )
    ui.info(f"[3/4] explaining {len(data)} images with {len(explainers)} methods, {len(runners)} metrics")
    with ResultStore(store_path) as store:
        h = store.record_run(run_settings, versions())
        store.add_metric_info((r.name, r.direction, r.category, r.summary) for r in runners)
        store.add_images(((r.image_id, r.label, r.class_name, r.source) for r in data.records), h)
        plan = EvalPlan(
            model=model, images=data, explainers=explainers, metrics=runners, store=store, settings=h,
            preprocess=data.preprocess, run=evaluation, references=refs,
        )
        run_evaluation(plan, ui)
        ui.info(f"[4/4] report {took()}")
        report = build_report(store_path, out / "report.html", title="cleargrad demo: Fashion-MNIST",
                              settings=h, gallery=8)
        if show is not None:
            show(store, h)
    ui.info(f"done {took()}")
    ui.out.print(f"report: {report.resolve()}", markup=False)
    return report
