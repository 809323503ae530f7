"""Random draws of the stochastic methods, made independent of batching and chunking.

Each image of a batch gets its own random stream: one seed per image is drawn from the
caller's generator (or torch's default one), and every draw for that image (reference
indices, path positions, noise) comes from a generator seeded with it, in a fixed
order. Hence the result for an image does not depend on ``internal_batch_size`` nor on
which other images are in the batch: explaining a batch equals explaining its images
one by one with the same generator passed to each successive call.
"""

from __future__ import annotations

import torch

__all__ = ["image_streams", "standard_normal"]

_SEED_HIGH = 2**62


def image_streams(n: int, generator: torch.Generator | None, device: torch.device) -> list[torch.Generator]:
    """One generator per image on ``device``, seeded from ``generator`` (n seed draws)."""
    seed_dev = generator.device if generator is not None else torch.device("cpu")
    seeds = torch.randint(_SEED_HIGH, (n,), generator=generator, device=seed_dev, dtype=torch.long).tolist()
    streams = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(s))
        streams.append(g)
    return streams


def standard_normal(shape: torch.Size | tuple[int, ...], stream: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise of ``shape`` from ``stream``, on ``like``'s device and dtype."""
    return torch.randn(shape, generator=stream, device=stream.device, dtype=like.dtype).to(like.device)
