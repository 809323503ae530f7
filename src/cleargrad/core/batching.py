"""Chunked batching: expand samples or steps along the batch and run them in chunks."""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["DEFAULT_CHUNK_ELEMENTS", "default_chunk_size", "chunk_slices"]

#: Default memory budget of one chunk, in input elements (about 2.4 million floats,
#: e.g. 16 images of 3x224x224 or ~3000 of 1x28x28). Moderate chunks are faster than
#: one huge batch on CPUs (cache) and bound peak memory on GPUs.
DEFAULT_CHUNK_ELEMENTS = 16 * 3 * 224 * 224


def default_chunk_size(sample_shape: torch.Size | tuple[int, ...], total: int) -> int:
    """How many expanded samples of ``sample_shape`` to run per chunk by default."""
    per = 1
    for s in sample_shape:
        per *= int(s)
    return max(1, min(total, DEFAULT_CHUNK_ELEMENTS // max(per, 1)))


def chunk_slices(total: int, chunk: int | None) -> Iterator[slice]:
    """Consecutive slices of ``range(total)`` of length ``chunk`` (all at once if None)."""
    if chunk is None or chunk <= 0 or chunk >= total:
        yield slice(0, total)
        return
    for start in range(0, total, chunk):
        yield slice(start, min(start + chunk, total))
