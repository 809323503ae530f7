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

from ..core.safe_load import pickle_refusal
from ..errors import ConfigError, DataError

__all__ = ["ModelLoadError", "builtin_models", "load_model", "load_weights"]


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


def load_model(spec: str, weights: str | Path | None = None, seed: int = 0) -> nn.Module:
    """Build the model named by ``spec``, load ``weights`` if given, return it in eval mode.

    ``spec`` is ``package.module:factory``, ``path/to/file.py:factory`` (the factory is
    called without arguments, or is an ``nn.Module`` instance) or a built-in name of
    :func:`cleargrad.models.build_model`. Construction runs under ``torch.manual_seed(seed)``
    so a randomly initialised model is the same in every process.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if ":" in spec:
            factory = _import_factory(spec)
            try:
                model = factory if isinstance(factory, nn.Module) else factory()
            except Exception as e:
                raise ModelLoadError(f"model factory {spec!r} failed: {_one_line(e)}") from e
        else:
            from .. import models

            build = getattr(models, "build_model", None)
            if build is None:
                if spec.replace("_", "-").lower() != "small-cnn":
                    raise ConfigError(f"unknown model {spec!r}; valid built-in models: small-cnn")
                model = models.SmallCNN()
            else:
                try:
                    model = build(spec)
                except (KeyError, ValueError) as e:
                    raise ConfigError(f"unknown model {spec!r}: {_one_line(e)}") from e
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"model spec {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        state = load_weights(weights)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise ModelLoadError(
                f"weights {weights} do not match the model: {' '.join(l.strip() for l in first[:3])}"
            ) from e
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
