"""Save and load a fitted GAD: ``gad.json`` (settings, schedule, statistics) and
``support.safetensors`` (the support models' state dicts; no pickle).

Both files are written atomically (weights first); ``gad.json`` names the weights file's
random ``fit_id`` (also in the safetensors metadata), so a pair torn by a kill between the
two writes is refused at load. ``gad.json`` records ``model_digest``, the
:func:`model_digest` of the classifier the support models were fitted on; loading around
a model with other weights raises :class:`~cleargrad.DataError` (``check_weights=False``
skips the check). Every defect of a saved folder (missing, unparsable or torn file)
raises :class:`~cleargrad.DataError` naming the file."""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ConfigError, DataError
from .distancing import Grouping
from .support import SupportStats

__all__ = ["save_gad", "load_gad", "model_digest", "SETTINGS_FILE", "WEIGHTS_FILE"]

SETTINGS_FILE = "gad.json"
WEIGHTS_FILE = "support.safetensors"
FORMAT = "cleargrad-gad"
VERSION = 1
ATTRIBUTE_SETTINGS = ("tau", "combine", "reduction", "base_options", "batch_models", "progress")


def gad_settings(gad: Any) -> dict[str, Any]:
    """Every setting of a GAD object as saved in ``gad.json`` (training and fusion); two GAD
    objects with equal settings, model and data fit the same support models."""
    return _settings(gad)


def _settings(gad: Any) -> dict[str, Any]:
    ts = gad.train_settings
    return {
        "base": gad.base,
        "classes": None if gad.classes is None else list(gad.classes),
        "n_support": gad.n_support,
        "strategy": gad.strategy,
        "groups": gad.groups,
        "alphas": gad.alphas,
        "alpha_scale": gad.alpha_scale,
        "epochs": ts.epochs,
        "lr": ts.lr,
        "batch_size": ts.batch_size,
        "init": ts.init,
        "bn_mode": ts.bn_mode,
        "regress": ts.regress,
        "schedule": ts.schedule,
        "seed": ts.seed,
        "deterministic": ts.deterministic,
        "tau": gad.tau,
        "combine": gad.combine,
        "reduction": gad.reduction,
        "base_options": gad.base_options,
        "batch_models": gad.batch_models,
        "progress": gad.progress,
    }


def model_digest(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a model's state dict: names, dtypes, shapes and values."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _shapes(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def save_gad(gad: Any, directory: str | Path) -> None:
    """Write ``gad.json`` and ``support.safetensors`` into ``directory`` (created if needed)."""
    if not gad.is_fitted:
        raise ConfigError("only a fitted GAD can be saved: call fit() first")
    if gad.output is not None and not isinstance(gad.output, (str, int)):
        raise ConfigError("a GAD with a callable output selector cannot be saved; pass output= again at load")
    from ..atomic import atomic_write

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    fit_id = secrets.token_hex(8)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "fit_id": fit_id,
        "model_digest": model_digest(gad.model),
        "settings": _settings(gad),
        "output": gad.output,
        "model_class": type(gad.model).__name__,
        "state_shapes": _shapes(gad.model),
        "num_classes": gad.num_classes_,
        "fit_time": gad.fit_time_,
        "tasks": [{"grouping": g.to_dict(), "explained": list(e)} for g, e in gad.tasks_],
        "alphas": [a.tolist() for a in gad.alphas_],
        "stats": [[s.to_dict() for s in st] for st in gad.stats_],
    }
    try:
        text = json.dumps(meta, indent=2)
    except TypeError as e:
        raise ConfigError(
            f"the GAD settings are not JSON-serialisable ({e}); base_options holding tensors or callables "
            "cannot be saved: remove them and pass them again to GAD.load(..., base_options=...)"
        ) from e
    tensors = {
        f"task{t}.model{s}.{k}": v.detach().cpu().clone().contiguous()
        for t, models in enumerate(gad.support_models_)
        for s, m in enumerate(models)
        for k, v in m.state_dict().items()
    }
    tags = {"format": FORMAT, "fit_id": fit_id}
    atomic_write(d / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=tags))
    atomic_write(d / SETTINGS_FILE, text)


def _architecture_mismatch(saved: dict[str, list[int]], model: nn.Module) -> str | None:
    now = _shapes(model)
    missing = sorted(set(saved) - set(now))
    extra = sorted(set(now) - set(saved))
    diff = [k for k in saved if k in now and saved[k] != now[k]]
    parts = []
    if missing:
        parts.append(f"missing in the model: {missing[:3]}")
    if extra:
        parts.append(f"not in the saved weights: {extra[:3]}")
    if diff:
        k = diff[0]
        parts.append(f"{len(diff)} shape mismatch(es), e.g. {k}: saved {saved[k]} vs model {now[k]}")
    return "; ".join(parts) or None


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(
            f"{path} cannot be read as a saved GAD ({type(e).__name__}: {e}); fit it again "
            "(`cleargrad gad fit`, or GAD.fit then GAD.save)"
        ) from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(f"{path} is not a cleargrad GAD file of version {VERSION}")
    for key in ("settings", "state_shapes", "stats", "tasks", "alphas", "num_classes"):
        if key not in meta:
            raise DataError(f"{path} lacks {key!r}: not a complete saved GAD; fit it again")
    return meta


def _read_weights(path: Path, device: str, fit_id: str | None) -> dict[str, torch.Tensor]:
    try:
        if fit_id is not None:
            with safe_open(str(path), framework="pt") as f:
                stored = (f.metadata() or {}).get("fit_id")
            if stored != fit_id:
                raise DataError(
                    f"{path} is not the weights file that {path.with_name(SETTINGS_FILE)} was saved with "
                    "(a save interrupted between the two files, or files of two fits mixed); fit it again"
                )
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}); it is damaged: fit the GAD again") from e


def load_gad(
    cls: type, directory: str | Path, model: nn.Module, check_weights: bool = True, **overrides: Any
) -> Any:
    """Rebuild a fitted GAD of class ``cls`` from ``directory`` around ``model``; see :meth:`GAD.load`.

    The class is passed in (not imported) so that this module does not depend on
    :mod:`cleargrad.gad.gad`, which imports it.
    """
    d = Path(directory)
    if not (d / SETTINGS_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
        raise DataError(f"{d} does not hold a saved GAD ({SETTINGS_FILE} and {WEIGHTS_FILE} expected)")
    meta = _read_meta(d / SETTINGS_FILE)
    bad = sorted(set(overrides) - set(ATTRIBUTE_SETTINGS) - {"output"})
    if bad:
        raise ConfigError(f"GAD.load can only override {', '.join(ATTRIBUTE_SETTINGS)} and output, got {bad}")
    mismatch = _architecture_mismatch(meta["state_shapes"], model)
    if mismatch:
        raise DataError(
            f"the saved GAD was fitted on a {meta['model_class']} whose architecture does not match this "
            f"{type(model).__name__}: {mismatch}. Load it with the classifier it was fitted on."
        )
    saved_digest = meta.get("model_digest")
    if check_weights and saved_digest is not None and saved_digest != model_digest(model):
        raise DataError(
            f"the GAD in {d} was fitted on other model weights (digest {saved_digest}, this model "
            f"{model_digest(model)}): load it with the classifier it was fitted on, or fit a new one"
        )
    # files written before the schedule option existed were fitted at a constant rate
    settings = {"schedule": "constant", **meta["settings"], **{k: v for k, v in overrides.items() if k != "output"}}
    gad = cls(model, output=overrides.get("output", meta.get("output")), **settings)
    device = next(model.parameters()).device if any(True for _ in model.parameters()) else torch.device("cpu")
    weights = _read_weights(d / WEIGHTS_FILE, str(device), meta.get("fit_id"))
    support: list[list[nn.Module]] = []
    for t, stats in enumerate(meta["stats"]):
        models = []
        for s in range(len(stats)):
            prefix = f"task{t}.model{s}."
            state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
            m = copy.deepcopy(model)
            try:
                m.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise DataError(f"support model {s} of task {t} does not fit the model: {e}") from e
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
                p.grad = None
            models.append(m)
        support.append(models)
    try:
        gad.tasks_ = [
            (Grouping(tuple(task["grouping"]["first"]), tuple(task["grouping"]["second"])), tuple(task["explained"]))
            for task in meta["tasks"]
        ]
        gad.alphas_ = [torch.tensor(a, dtype=torch.float64).reshape(-1, 2) for a in meta["alphas"]]
        gad.stats_ = [
            [SupportStats.from_dict(s) for s in st]
            for st in meta["stats"]
        ]
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"{d / SETTINGS_FILE} is damaged ({type(e).__name__}: {e}); fit the GAD again") from e
    gad.support_models_ = support
    gad.num_classes_ = meta["num_classes"]
    gad.fit_time_ = meta["fit_time"]
    return gad
