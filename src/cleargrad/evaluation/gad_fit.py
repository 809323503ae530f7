"""``cleargrad gad fit``: fit GAD's support models from the command line, resumably.

The folder it writes (``--out``) holds what :meth:`cleargrad.GAD.save` writes
(``gad.json``, ``support.safetensors``) plus ``fit.json``: the command's settings, the
classifier's weights digest, the class names and the support models' statistics. While
the fit runs, ``checkpoints/`` holds every finished support model: an interrupted fit
rerun with the same command continues where it stopped (and gives the same models).
``explain`` and ``evaluate`` use the folder with ``--method gad:BASE --gad DIR``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from ..errors import ConfigError, DataError

__all__ = ["FIT_RECORD", "GadFitSettings", "load_fitted_gad", "parse_classes", "run_gad_fit", "state_digest"]

FIT_RECORD = "fit.json"
CHECKPOINTS = "checkpoints"


@dataclass(kw_only=True, frozen=True)
class GadFitSettings:
    """What ``cleargrad gad fit`` takes besides the model and the preprocessing (field =
    the option without the dashes; ``n_support`` is ``--support``), as given on the
    command line: ``classes`` and ``groups`` are the option texts (indices or class
    names), ``strategy`` any spelling of ``pairwise`` / ``one_vs_all`` / ``split``.
    The defaults are the command's, which are :class:`~cleargrad.GAD`'s."""

    dataset: str
    out: Path
    classes: str | None = None
    strategy: str = "pairwise"
    groups: str | None = None
    n_support: int = 4
    epochs: int = 30
    lr: float = 3e-3
    bn_mode: str = "train"
    batch_size: int = 32
    alphas: str = "std"
    limit: int | None = None
    seed: int = 0


def state_digest(model: Any) -> str:
    """SHA-256 (16 hex digits) of a model's state dict: names, dtypes, shapes and values."""
    from ..gad.persistence import model_digest

    return model_digest(model)


def _read_record(path: Path) -> dict[str, Any]:
    """The parsed ``fit.json``, or :class:`DataError` naming it."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}); delete the folder and fit again") from e
    if not isinstance(record, dict):
        raise DataError(f"{path} is not a `cleargrad gad fit` record; delete the folder and fit again")
    return record


def parse_classes(text: str | None, names: list[str] | None) -> tuple[int, ...] | None:
    """``"0,6"`` or ``"T-shirt/top,Shirt"`` (names from ``names``) -> class indices."""
    if text is None or not text.strip():
        return None
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item.lstrip("-").isdigit():
            out.append(int(item))
        elif names is not None and item in names:
            out.append(names.index(item))
        elif names is not None and item.lower() in [n.lower() for n in names]:
            out.append([n.lower() for n in names].index(item.lower()))
        else:
            known = f"; known names: {', '.join(names)}" if names else " (give --class-names FILE to use names)"
            raise ConfigError(f"--classes: {item!r} is neither a class index nor a class name{known}")
    return tuple(out)


def _folder_identity(dataset: str) -> dict[str, Any]:
    """``{"dataset_files": identity}`` of an image folder (absent for Fashion-MNIST): a fit
    folder is bound to the files it was fitted on (:mod:`cleargrad.data.identity`)."""
    from ..core.names import dashed_key

    if dashed_key(dataset) == "fashion-mnist":
        return {}
    from ..data.identity import dataset_identity

    return {"dataset_files": dataset_identity(dataset)}


def _groups(text: str | None, names: list[str] | None) -> list[list[int]] | None:
    if text is None or not text.strip():
        return None
    parts = [p for p in text.split(";") if p.strip()]
    if len(parts) != 2:
        raise ConfigError(f"--groups needs two groups separated by ';', e.g. '0,2,4;1,3', got {text!r}")
    return [list(parse_classes(p, names) or ()) for p in parts]


def _training_data(dataset: str, prep: Any, ui: Any = None) -> tuple[Any, Any, list[str] | None, str]:
    """``(x, y, class names, description)`` of every training image of ``dataset``; unreadable
    files of a folder are skipped and listed on ``ui``."""
    import torch

    from ..core.names import dashed_key

    key = dashed_key(dataset)
    names: list[str] | None
    if key == "fashion-mnist":
        from ..data import FASHION_MNIST_CLASSES, load_fashion_mnist

        ds = load_fashion_mnist("train", normalize=True)
        x, y, names, desc = ds.images, ds.labels, list(FASHION_MNIST_CLASSES), "fashion-mnist train"
    else:
        from .explain_run import class_names_from
        from .images import image_set

        data = image_set([dataset], prep)
        if all(r.label is None for r in data.records):
            raise DataError(f"{dataset} has no class sub-folders: GAD needs labelled images (root/<class>/<image>)")
        loaded, recs = data.load(list(range(len(data))))
        if loaded is None:
            raise DataError(f"no readable image in {dataset}")
        x = loaded
        y = torch.tensor([r.label for r in recs], dtype=torch.long)
        names, desc = class_names_from(data), f"image folder {dataset}"
        if data.skipped and ui is not None:
            ui.warn(f"skipped {len(data.skipped)} unreadable file(s): " + ", ".join(sorted(data.skipped)))
    return x, y, names, desc


def run_gad_fit(
    settings: GadFitSettings,
    *,
    model: Any,
    model_spec: dict[str, Any],
    prep: Any,
    class_names: list[str] | None,
    ui: Any,
) -> dict[str, Any]:
    """Fit (or resume, or find already fitted) a GAD into ``settings.out``; returns the fit
    record. ``model`` is the loaded classifier, ``model_spec`` how it was named (recorded),
    ``prep`` the preprocessing of an image folder (None for Fashion-MNIST),
    ``class_names`` the names read from ``--class-names`` (None: the data set's)."""
    import torch

    from ..core.names import snake_key
    from ..gad import GAD
    from ..gad.checkpoint import FitCheckpoint
    from ..models import config_key

    s = settings
    dataset, out, limit = s.dataset, s.out, s.limit
    n_support, epochs, lr, bn_mode, batch_size, alphas, seed = (
        s.n_support, s.epochs, s.lr, s.bn_mode, s.batch_size, s.alphas, s.seed
    )
    strategy = snake_key(s.strategy)
    digest = state_digest(model)
    ui.info(f"loading the training images ({dataset})")
    x, y, data_names, desc = _training_data(dataset, prep, ui)
    names = class_names or data_names
    classes = parse_classes(s.classes, names)
    groups = _groups(s.groups, names)
    if classes is not None:
        keep = torch.isin(y, torch.tensor(list(classes)))
        x, y = x[keep], y[keep]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if len(y) == 0:
        raise DataError(f"no training image of classes {classes} in {desc}")
    recorded = {
        "model": model_spec,
        "model_digest": digest,
        "dataset": desc,
        **_folder_identity(dataset),
        "limit": limit,
        "preprocess": prep.as_dict() if prep is not None else "fashion-mnist (normalised)",
        "classes": None if classes is None else list(classes),
        "strategy": strategy,
        "groups": groups,
        "n_support": n_support,
        "epochs": epochs,
        "lr": lr,
        "bn_mode": bn_mode,
        "batch_size": batch_size,
        "alphas": alphas,
        "seed": seed,
    }
    key = config_key(recorded)
    record_path = out / FIT_RECORD
    if (out / "gad.json").is_file() and record_path.is_file():
        old = _read_record(record_path)
        if old.get("key") == key:
            ui.info(f"{out} already holds this fit: nothing to do")
            return old
        raise ConfigError(
            f"{out} holds a GAD fitted with other settings (see {record_path}); choose another --out or delete it"
        )
    gad = GAD(
        model, base="saliency", classes=classes, n_support=n_support, strategy=strategy, groups=groups,
        alphas=alphas, epochs=epochs, lr=lr, bn_mode=bn_mode, batch_size=batch_size, seed=seed,
        progress=not ui.quiet,
    )
    n_per = {int(c): int((y == c).sum()) for c in sorted(set(y.tolist()))}
    ui.info(
        f"fitting GAD ({strategy}, {n_support} support model(s) per task, {epochs} epoch(s), "
        f"{len(y)} images: {', '.join(f'{c}: {k}' for c, k in n_per.items())})"
    )
    ckpt = FitCheckpoint(out / CHECKPOINTS, log=ui.info)
    start = time.perf_counter()
    gad.fit((x, y), checkpoint=ckpt)
    gad.save(str(out))
    stats = [
        {
            "task": t,
            "first": list(g.first),
            "second": list(g.second),
            "models": [s.to_dict() for s in st],
        }
        for t, ((g, _), st) in enumerate(zip(gad.tasks_ or [], gad.stats_))
    ]
    record = {
        "format": "cleargrad-gad-fit",
        "key": key,
        "settings": recorded,
        "class_names": names,
        "images": len(y),
        "images_per_class": n_per,
        "seconds": round(time.perf_counter() - start, 2),
        "stats": stats,
    }
    atomic_write(record_path, json.dumps(record, indent=2, default=str) + "\n")
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return record


def load_fitted_gad(directory: Path, model: Any) -> Any:
    """The GAD saved in ``directory`` around ``model``; refuses one fitted on other weights
    (when the folder's ``fit.json`` records them)."""
    from ..gad import GAD

    if not directory.is_dir():
        raise DataError(f"--gad {directory}: no such folder (fit one with `cleargrad gad fit --out {directory}`)")
    record = directory / FIT_RECORD
    if record.is_file():
        saved = _read_record(record).get("settings", {}).get("model_digest")
        if saved is not None and saved != state_digest(model):
            raise ConfigError(
                f"the GAD in {directory} was fitted on other model weights (digest {saved}, this model "
                f"{state_digest(model)}): use the --model/--weights it was fitted with, or fit a new one"
            )
    return GAD.load(str(directory), model, progress=False)
