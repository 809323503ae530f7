"""Models named on the command line: ``package.module:factory``, ``file.py:factory`` or a
built-in name, and weights from safetensors or a plain state dict (never unpickled)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pickle
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.names import dashed_key
from ..core.safe_load import pickle_refusal
from ..errors import ConfigError, DataError

__all__ = ["ModelLoadError", "builtin_models", "load_model", "load_weights", "train_run", "weights_file"]


class ModelLoadError(DataError):
    """The model spec or the weights file could not be loaded (the message is one line)."""


def builtin_models() -> list[str]:
    """Names accepted as ``--model NAME`` (those of ``cleargrad.models.build_model``)."""
    from .. import models

    names = getattr(models, "model_names", None) or getattr(models, "MODEL_NAMES", None)
    if callable(names):
        names = names()
    return sorted(names) if names else ["small-cnn"]


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _import_factory(spec: str) -> Any:
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ConfigError(f"model spec {spec!r} must look like 'package.module:factory' or 'file.py:factory'")
    try:
        if target.endswith(".py") or "/" in target or "\\" in target:
            path = Path(target).expanduser().resolve()
            if not path.is_file():
                raise ModelLoadError(f"model file not found: {target}")
            mod_name = "_cleargrad_user_model_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            if module_spec is None or module_spec.loader is None:
                raise ModelLoadError(f"cannot import {target}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ModelLoadError:
        raise
    except Exception as e:  # any import-time failure of user code
        raise ModelLoadError(f"cannot import model spec {spec!r}: {_one_line(e)}") from e
    factory = getattr(module, attr, None)
    if factory is None:
        raise ModelLoadError(f"model spec {spec!r}: module has no attribute {attr!r}")
    return factory


def weights_file(weights: str | Path) -> Path:
    """The weights file ``weights`` names: itself, or ``model.safetensors`` of a
    ``cleargrad train`` run folder."""
    path = Path(weights)
    return path / "model.safetensors" if path.is_dir() else path


def train_run(weights: str | Path | None) -> dict[str, Any] | None:
    """The ``run.json`` of the ``cleargrad train`` run folder ``weights`` is (or lies in),
    else None."""
    if weights is None:
        return None
    path = Path(weights)
    record = path / "run.json" if path.is_dir() else path.parent / "run.json"
    if not record.is_file():
        if path.is_dir():
            raise ModelLoadError(f"--weights {path} is a folder but not a `cleargrad train` run (no run.json there)")
        return None
    import json

    try:
        run = json.loads(record.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {record}: {_one_line(e)}") from e
    return run if isinstance(run, dict) and isinstance(run.get("settings"), dict) else None


def _train_run_kwargs(spec: str, run: dict[str, Any]) -> dict[str, Any]:
    """``build_model`` arguments that rebuild the built-in model a train run saved."""
    settings = run["settings"]
    trained = str(settings.get("model", ""))
    if dashed_key(trained) != dashed_key(spec):
        raise ConfigError(f"--weights come from a `cleargrad train` run of model {trained!r}; pass --model {trained}")
    kw: dict[str, Any] = {}
    mean = run.get("mean")
    if isinstance(mean, list) and len(mean) in (1, 3):
        kw["in_channels"] = len(mean)
    if isinstance(run.get("classes"), list) and run["classes"]:
        kw["num_classes"] = len(run["classes"])
    width = settings.get("width")
    if width is not None:  # as cleargrad train passes it: SmallCNN a channel count, others a multiplier
        kw["width"] = int(width) if float(width).is_integer() else width
    return kw


def _mismatch_message(spec: str, weights: str | Path | None, e: RuntimeError, run: dict[str, Any] | None) -> str:
    """One line for a state dict that does not fit the model (size mismatch, missing keys)."""
    import re

    text = str(e)
    size = re.search(r"size mismatch for ([\w.]+): copying a param with shape (torch.Size\(\[[^\]]*\]\)) from "
                     r"checkpoint, the shape in current model is (torch.Size\(\[[^\]]*\]\))", text)
    if size:
        what = f"size mismatch for {size.group(1)}: file {size.group(2)}, model {size.group(3)}"
    else:
        first = text.strip().splitlines()
        what = " ".join(line.strip() for line in first[:3])
    if run is not None:
        width = run["settings"].get("width")
        hint = f" (the train run used --model {run['settings'].get('model')} --width {width})"
    else:
        hint = (
            f"; they were saved from another architecture or width than {spec!r}: a `cleargrad train --width W` "
            "model loads with --weights RUN_FOLDER (its run.json gives the model and width)"
        )
    return f"weights {weights} do not match the model {spec!r}: {what}{hint}"


def _hf_model(spec: str) -> nn.Module:
    """The HuggingFace model of an ``hf:PATH`` spec (``ModelLoadError`` when it cannot be built)."""
    from ..models.hf import hf_model

    path = spec[3:].strip()
    if not path:
        raise ConfigError("model spec 'hf:' needs a path: hf:path/to/config.json or hf:path/to/folder")
    try:
        return hf_model(path)
    except ConfigError:
        raise
    except DataError as e:
        raise ModelLoadError(str(e)) from e
    except Exception as e:  # any failure of transformers while building the model
        raise ModelLoadError(f"cannot build the HuggingFace model {spec!r}: {_one_line(e)[:300]}") from e


def load_model(spec: str, weights: str | Path | None = None, seed: int = 0) -> nn.Module:
    """Build the model named by ``spec``, load ``weights`` if given, return it in eval mode.

    ``spec`` is ``package.module:factory``, ``path/to/file.py:factory`` (the factory is
    called without arguments, or is an ``nn.Module`` instance), ``hf:PATH`` (a HuggingFace
    image classifier built from the ``config.json`` file PATH or the folder PATH holding
    one, with the folder's ``model.safetensors`` weights when it has them; see
    :func:`cleargrad.models.hf.hf_model`) or a built-in name of
    :func:`cleargrad.models.build_model`. Construction runs under ``torch.manual_seed(seed)``
    so a randomly initialised model is the same in every process. ``weights`` may be a
    ``cleargrad train`` run folder or a file in one: a built-in model is then built as its
    ``run.json`` says (width, input channels, classes).
    """
    run = train_run(weights)
    state = load_weights(weights_file(weights)) if weights is not None else None
    build_kw = _train_run_kwargs(spec, run) if run is not None and ":" not in spec else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.startswith("hf:"):
            model = _hf_model(spec)
        elif ":" in spec:
            factory = _import_factory(spec)
            try:
                model = factory if isinstance(factory, nn.Module) else factory()
            except Exception as e:
                raise ModelLoadError(f"model factory {spec!r} failed: {_one_line(e)}") from e
        else:
            from .. import models

            build = getattr(models, "build_model", None)
            if build is None:
                if dashed_key(spec) != "small-cnn":
                    raise ConfigError(f"unknown model {spec!r}; valid built-in models: small-cnn")
                model = models.SmallCNN()
            else:
                try:
                    model = build(spec, **build_kw)
                except (KeyError, ValueError) as e:
                    raise ConfigError(f"unknown model {spec!r}: {_one_line(e)}") from e
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"model spec {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ModelLoadError(_mismatch_message(spec, weights, e, run)) from e
    return model.eval()


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.safetensors`` file or a ``torch.save`` file.

    ``torch.load`` runs with ``weights_only=True``: a pickle that needs anything beyond
    tensors and plain containers (arbitrary classes, code) is refused, never executed.
    A checkpoint dict holding the weights under ``"state_dict"`` or ``"model"`` works too.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise ModelLoadError(f"cannot read safetensors file {path}: {_one_line(e)}") from e
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise pickle_refusal(
            path, e, "--weights takes a state dict: re-save it with torch.save(model.state_dict(), path) or safetensors"
        ) from e
    except Exception as e:
        raise ModelLoadError(f"cannot read weights file {path}: {_one_line(e)[:200]}") from e
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path} does not hold a state dict of tensors")
    return obj
