"""Per-support-model checkpoints of a GAD fit, so that an interrupted fit resumes.

After support model ``s`` of task ``t`` is trained, :class:`FitCheckpoint` writes its
weights (``task{t}.model{s}.safetensors``), its statistics and the random state the next
model starts from (the shuffling generator and the global RNG) beside a fingerprint of
the fit (settings, classifier weights, training data). A rerun with the same fingerprint
loads the finished models instead of training them again and continues with identical
random state, so the resumed fit equals an uninterrupted one; a different fingerprint is
refused, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_write
from ..errors import ConfigError
from .support import SupportStats

__all__ = ["FitCheckpoint", "fingerprint"]

STATE_FILE = "checkpoint.json"


def _update(h: Any, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(str((t.dtype, tuple(t.shape))).encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def fingerprint(settings: dict[str, Any], model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
    """A hash of the fit settings, the classifier's state dict and the training tensors."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        _update(h, t)
    _update(h, x)
    _update(h, y)
    return h.hexdigest()[:32]


class FitCheckpoint:
    """Checkpoints of one GAD fit in ``directory``.

    Args:
        directory: where the checkpoints live (created on the first save).
        log: called with a one-line message when a model is saved or resumed.
    """

    def __init__(self, directory: str | os.PathLike, log: Callable[[str], None] | None = None) -> None:
        self.directory = Path(directory)
        self.log = log or (lambda _msg: None)
        self.key: str | None = None
        self._done: dict[str, Any] = {}

    def bind(self, key: str) -> None:
        """Attach the fit's fingerprint; loads what an earlier run with that fingerprint finished.

        Raises:
            ConfigError: the directory holds checkpoints of another fit.
        """
        self.key = key
        path = self.directory / STATE_FILE
        if not path.is_file():
            self._done = {}
            return
        state = json.loads(path.read_text())
        if state.get("fingerprint") != key:
            raise ConfigError(
                f"{self.directory} holds checkpoints of another GAD fit (other settings, model or data); "
                "delete that folder or choose another output folder"
            )
        self._done = state.get("models", {})

    def _name(self, task: int, model: int) -> str:
        return f"task{task}.model{model}"

    def finished(self, task: int, model: int) -> bool:
        """Whether support model ``model`` of ``task`` was saved by an earlier run."""
        name = self._name(task, model)
        return name in self._done and (self.directory / f"{name}.safetensors").is_file()

    def restore(
        self, task: int, model: int, into: nn.Module, shuffle: torch.Generator, device: torch.device
    ) -> SupportStats:
        """Load the saved weights into ``into`` and the random state after that model; returns its stats."""
        name = self._name(task, model)
        entry = self._done[name]
        into.load_state_dict(load_file(str(self.directory / f"{name}.safetensors"), device=str(device)), strict=True)
        shuffle.set_state(torch.tensor(entry["shuffle_state"], dtype=torch.uint8))
        torch.set_rng_state(torch.tensor(entry["cpu_rng"], dtype=torch.uint8))
        if entry.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state(torch.tensor(entry["cuda_rng"], dtype=torch.uint8), device)
        s = entry["stats"]
        self.log(f"task {task + 1} support model {model + 1}: resumed from {self.directory}")
        return SupportStats.from_dict(s)

    def save(
        self, task: int, model: int, trained: nn.Module, stats: SupportStats, shuffle: torch.Generator,
        device: torch.device,
    ) -> None:
        """Write support model ``model`` of ``task`` and the random state after it (atomically)."""
        if self.key is None:
            raise ConfigError("FitCheckpoint.bind(key) must be called before save")
        self.directory.mkdir(parents=True, exist_ok=True)
        name = self._name(task, model)
        state = {k: v.detach().cpu().contiguous() for k, v in trained.state_dict().items()}
        atomic_write(self.directory / f"{name}.safetensors", lambda tmp: save_file(state, str(tmp)))
        self._done[name] = {
            "stats": stats.to_dict(),
            "shuffle_state": shuffle.get_state().tolist(),
            "cpu_rng": torch.get_rng_state().tolist(),
            "cuda_rng": torch.cuda.get_rng_state(device).tolist() if device.type == "cuda" else None,
        }
        text = json.dumps({"fingerprint": self.key, "models": self._done})
        atomic_write(self.directory / STATE_FILE, text)
        self.log(
            f"task {task + 1} support model {model + 1}: saved (mse {stats.mse:.4g}, "
            f"agreement {stats.agreement:.3f}, margins {stats.margin_first:.3g} / {stats.margin_second:.3g})"
        )
