"""Random draws of the stochastic methods: one home, one device rule.

Device rule: a draw is made on the device of the generator it is given and then moved to
the input's device; with ``generator=None`` it is made from torch's default **CPU**
generator (so ``torch.manual_seed`` reproduces a result whatever the input's device).
Per-image streams (:func:`image_streams`) and per-sample seeds (:func:`draw_seeds`,
:func:`seeded_noise`) make a result independent of chunking and of the other images of
the batch: explaining a batch equals explaining its images one by one with the same
generator passed to each successive call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "draw_device",
    "draw_indices",
    "draw_seeds",
    "draw_uniform",
    "image_streams",
    "seeded_noise",
    "standard_normal",
]

_SEED_HIGH = 2**62


def draw_device(generator: torch.Generator | None) -> torch.device:
    """Where a draw from ``generator`` is made: its device, or the CPU for ``None``."""
    return generator.device if generator is not None else torch.device("cpu")


def draw_seeds(count: int, generator: torch.Generator | None) -> list[int]:
    """``count`` seeds in ``[0, 2**62)`` from ``generator`` (or the global RNG); one host transfer."""
    return torch.randint(0, _SEED_HIGH, (count,), generator=generator, device=draw_device(generator)).tolist()


def image_streams(n: int, generator: torch.Generator | None, device: torch.device) -> list[torch.Generator]:
    """One generator per image on ``device``, seeded from ``generator`` (n seed draws)."""
    seeds = torch.randint(_SEED_HIGH, (n,), generator=generator, device=draw_device(generator),
                          dtype=torch.long).tolist()
    streams = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(s))
        streams.append(g)
    return streams


def draw_uniform(count: int, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """``count`` draws of U(0, 1) on ``like``'s device and dtype."""
    dev = draw_device(generator)
    return torch.rand(count, generator=generator, device=dev, dtype=like.dtype).to(like.device)


def draw_indices(high: int, count: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``count`` indices uniform in ``[0, high)``, on ``device``."""
    return torch.randint(high, (count,), generator=generator, device=draw_device(generator)).to(device)


def standard_normal(shape: torch.Size | tuple[int, ...], stream: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise of ``shape`` from ``stream``, on ``like``'s device and dtype."""
    return torch.randn(shape, generator=stream, device=stream.device, dtype=like.dtype).to(like.device)


def seeded_noise(seeds: Sequence[int], like: torch.Tensor, kind: str = "normal") -> torch.Tensor:
    """One noise image per seed, shaped like ``like[0]``: N(0, 1) (``"normal"``) or U(0, 1),
    drawn on ``like``'s device."""
    out = torch.empty((len(seeds), *like.shape[1:]), dtype=like.dtype, device=like.device)
    for i, s in enumerate(seeds):
        g = torch.Generator(device=like.device).manual_seed(int(s))
        if kind == "normal":
            out[i].normal_(generator=g)
        else:
            out[i].uniform_(generator=g)
    return out
