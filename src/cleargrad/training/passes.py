"""Helpers that make a second forward pass of the same weights side-effect free.

:func:`frozen_running_stats` keeps normalisation layers (BatchNorm, and InstanceNorm with
``track_running_stats``) from updating their running statistics: the update inside the
block goes to temporary copies of the buffers. In training mode such a layer normalises
with the statistics of the current batch, so a second forward pass over the same batch
normalises exactly as the first one did; in eval mode both passes use the running
statistics.

:func:`same_randomness` replays the random-number state, so that Dropout (or any other
random op) in the second pass draws the same masks as in the first pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

__all__ = ["frozen_running_stats", "same_randomness"]


@contextmanager
def frozen_running_stats(model: nn.Module) -> Iterator[None]:
    """Keep every running-statistics buffer exactly as it is while the block runs.

    For each module in training mode that tracks running statistics, ``running_mean``,
    ``running_var`` and ``num_batches_tracked`` are swapped for copies during the block
    (those absorb the update) and the original tensors are put back in ``finally``. The
    originals are never written to, so their values and autograd version counters are
    untouched: a graph recorded inside the block (e.g. for double backprop through the
    guided pass) and one recorded outside never see each other's in-place updates.
    """
    swapped: list[tuple[nn.Module, str, torch.Tensor]] = []
    try:
        for m in model.modules():
            if isinstance(m, _NormBase) and m.training and m.track_running_stats:
                for name in ("running_mean", "running_var", "num_batches_tracked"):
                    b = m._buffers.get(name)
                    if isinstance(b, torch.Tensor):
                        swapped.append((m, name, b))
                        m._buffers[name] = b.detach().clone()
        yield
    finally:
        for m, name, b in swapped:
            m._buffers[name] = b


@contextmanager
def same_randomness(device: torch.device) -> Iterator[None]:
    """Run the block on a copy of the RNG state; afterwards the state is as before the block.

    A pass inside the block and a pass after it therefore draw identical random numbers
    (same Dropout masks). Forks the CPU generator and, for an accelerator input, the
    generator of that device.
    """
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            yield
        return
    index = device.index
    if index is None and device.type == "cuda":
        index = torch.cuda.current_device()
    devices = [index] if index is not None else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        yield
