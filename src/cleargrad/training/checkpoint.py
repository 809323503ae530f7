"""Per-epoch training checkpoints that can be resumed after an interruption.

A checkpoint directory holds, for the last finished epoch ``k``:

* ``epoch_{k:04d}.safetensors``: the model's weights and buffers (safetensors);
* ``epoch_{k:04d}.state.pt``: optimizer and LR-scheduler state dicts and the RNG states,
  written with :func:`torch.save` and read back with ``weights_only=True`` (no arbitrary
  unpickling);
* ``checkpoint.json``: the epoch, the file names, the training configuration and the
  per-epoch metrics. It is written last, atomically, so it always points to a complete
  pair of files; files of older epochs are deleted afterwards unless ``keep_all``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from ..core.safe_load import load_plain
from ..errors import DataError

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "MANIFEST"]

MANIFEST = "checkpoint.json"


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read: the finished epoch, the config and the history."""

    epoch: int
    config: dict[str, Any]
    history: list[dict[str, Any]]


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_write(path: Path, write: Any) -> None:
    """``write(tmp)`` then an fsync'd rename over ``path`` (:mod:`cleargrad.atomic`)."""
    from ..atomic import atomic_write

    atomic_write(path, write)


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    config: dict[str, Any],
    history: list[dict[str, Any]],
    keep_all: bool = False,
) -> Path:
    """Write the checkpoint of finished epoch ``epoch`` (1-based) into ``directory``.

    Returns the path of the manifest. Only the last epoch's files are kept unless
    ``keep_all``.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    stem = f"epoch_{epoch:04d}"
    weights, state = d / f"{stem}.safetensors", d / f"{stem}.state.pt"
    _atomic_write(weights, lambda p: save_model(model, str(p)))
    payload = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": _rng_state(),
    }
    _atomic_write(state, lambda p: torch.save(payload, p))
    manifest = {
        "epoch": epoch,
        "weights": weights.name,
        "state": state.name,
        "config": config,
        "history": history,
    }
    _atomic_write(d / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2)))
    if not keep_all:
        for old in d.glob("epoch_*"):
            if old.name not in (weights.name, state.name) and not old.name.endswith(".tmp"):
                old.unlink(missing_ok=True)
    return d / MANIFEST


def read_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed ``checkpoint.json`` of ``directory``, or None when there is none."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}); delete the directory or pass resume=False") from e


def _file_name(manifest: dict[str, Any], key: str, d: Path) -> str:
    """The manifest's ``key`` entry, which must name a file directly inside ``d``."""
    name = manifest.get(key)
    if not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise DataError(
            f"{d / MANIFEST} names {key} file {name!r}, which is not a plain file name inside {d}; a checkpoint "
            "only reads files from its own folder. Delete the folder or pass resume=False"
        )
    return name


def load_checkpoint(
    directory: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    restore_rng: bool = True,
) -> Checkpoint | None:
    """Load the last checkpoint of ``directory`` into ``model`` (and optimizer/scheduler).

    Returns None when the directory holds no checkpoint. Weights are read with
    safetensors onto the model's device; the optimizer/scheduler/RNG state with
    ``torch.load(weights_only=True)``. The manifest's file names must be plain names
    of files in ``directory`` (``../x.pt`` or an absolute path: :class:`DataError`).
    """
    manifest = read_manifest(directory)
    if manifest is None:
        return None
    d = Path(directory)
    weights, state = (d / _file_name(manifest, key, d) for key in ("weights", "state"))
    for f in (weights, state):
        if not f.exists():
            raise DataError(f"checkpoint file {f} named in {d / MANIFEST} is missing; pass resume=False")
    p = next(iter(model.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    try:
        load_model(model, str(weights), strict=True, device=str(device))
    except (SafetensorError, OSError) as e:
        raise DataError(f"checkpoint file {weights} cannot be read ({type(e).__name__}: {e}); pass resume=False") from e
    except RuntimeError as e:
        raise DataError(
            f"checkpoint file {weights} does not fit this model (another architecture or width): "
            f"{str(e).splitlines()[0][:200]}; use another checkpoint folder or pass resume=False"
        ) from e
    payload = load_plain(state, fix="Delete the checkpoint folder (or pass resume=False) if you did not write it.")
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload.get("scheduler") is not None:
        scheduler.load_state_dict(payload["scheduler"])
    if restore_rng:
        _set_rng_state(payload["rng"])
    return Checkpoint(epoch=int(manifest["epoch"]), config=manifest.get("config", {}), history=manifest["history"])
