"""A small on-disk cache of trained weights: safetensors files keyed by a hash of the
training configuration, each with a JSON record (config, accuracy, time). Loading never
unpickles anything."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import DataError

__all__ = ["WeightsCache", "CacheEntry", "cache_root", "config_key"]

ENV_VAR = "CLEARGRAD_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$CLEARGRAD_CACHE``, else ``~/.cache/cleargrad``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path.home() / ".cache" / "cleargrad"


def config_key(config: Mapping[str, Any]) -> str:
    """A short stable hash (16 hex digits) of a JSON-serialisable configuration; the
    order of keys does not matter."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CacheEntry:
    """The two files of one cached model: ``weights`` (safetensors) and ``record`` (JSON)."""

    weights: Path
    record: Path

    def exists(self) -> bool:
        """Both files are present."""
        return self.weights.is_file() and self.record.is_file()


def _atomic_write(path: Path, write: Any) -> None:
    """Write via a temporary file in the same directory and rename, so a concurrent
    reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class WeightsCache:
    """Trained weights under ``<root>/weights/<name>-<config hash>.safetensors`` with a
    ``.json`` record next to them.

    Args:
        root: cache directory (see :func:`cache_root` for the default).
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = cache_root(root)

    def entry(self, name: str, config: Mapping[str, Any]) -> CacheEntry:
        """The file pair for model ``name`` trained with ``config``."""
        stem = f"{name}-{config_key(config)}"
        d = self.root / "weights"
        return CacheEntry(d / f"{stem}.safetensors", d / f"{stem}.json")

    def record(self, name: str, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """The JSON record of a cached model, or None when it is not cached."""
        e = self.entry(name, config)
        if not e.exists():
            return None
        try:
            return json.loads(e.record.read_text())
        except (OSError, ValueError) as err:
            raise DataError(f"corrupt cache record {e.record}: {err}; delete it to retrain") from None

    def load(self, model: nn.Module, name: str, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """Load cached weights into ``model`` (strictly: every key and shape must match)
        on the model's device. Returns the record, or None when nothing is cached.

        Raises:
            DataError: the cached file is corrupt or does not fit the model.
        """
        rec = self.record(name, config)
        if rec is None:
            return None
        e = self.entry(name, config)
        p = next(iter(model.parameters()), None)
        device = str(p.device) if p is not None else "cpu"
        try:
            state = load_file(e.weights, device=device)
            model.load_state_dict(state, strict=True)
        except (SafetensorError, OSError, RuntimeError) as err:
            raise DataError(f"cannot load cached weights {e.weights}: {err}; delete it to retrain") from None
        return rec

    def save(self, model: nn.Module, name: str, config: Mapping[str, Any], record: Mapping[str, Any]) -> CacheEntry:
        """Save ``model``'s state dict (safetensors) and ``record`` plus ``config`` (JSON)."""
        e = self.entry(name, config)
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        _atomic_write(e.weights, lambda tmp: save_file(state, tmp))
        payload = {"name": name, "key": config_key(config), "config": dict(config), **record}
        _atomic_write(e.record, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=2, default=str)))
        return e

