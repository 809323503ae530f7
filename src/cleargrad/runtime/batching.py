"""Chunked batching: expand samples or steps along the batch and run them in chunks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from ..errors import ResourceError
from .hostmem import release_host_memory

__all__ = ["DEFAULT_CHUNK_ELEMENTS", "CPU_MAX_CHUNK", "chunk_slices", "default_chunk_size", "memory_guard"]

#: Default memory budget of one chunk, in input elements (about 2.4 million floats,
#: e.g. 16 images of 3x224x224). Moderate chunks are faster than one huge batch on
#: CPUs (cache) and bound peak memory on accelerators.
DEFAULT_CHUNK_ELEMENTS = 16 * 3 * 224 * 224

#: Cap on the samples of one chunk on CPUs, whatever the memory budget allows: beyond a
#: few dozen images a batch gets slower per image (measured:
#: benchmarks/results/evaluate_pipeline.md, section "Chunk size on CPUs").
CPU_MAX_CHUNK = 64


def default_chunk_size(
    sample_shape: torch.Size | tuple[int, ...], total: int, device: torch.device | str | None = "cpu"
) -> int:
    """How many expanded samples of ``sample_shape`` to run per chunk by default.

    The memory budget :data:`DEFAULT_CHUNK_ELEMENTS`, capped at :data:`CPU_MAX_CHUNK`
    samples when ``device`` is a CPU; ``device=None`` applies the budget alone.
    """
    per = 1
    for s in sample_shape:
        per *= int(s)
    n = max(1, min(total, DEFAULT_CHUNK_ELEMENTS // max(per, 1)))
    if device is not None and torch.device(device).type == "cpu":
        n = min(n, CPU_MAX_CHUNK)
    return n


def chunk_slices(total: int, chunk: int | None) -> Iterator[slice]:
    """Consecutive slices of ``range(total)`` of length ``chunk`` (all at once if None).

    Between two chunks (and after the last) the C allocator's freed host memory is handed
    back once resident memory has grown by more than its limit since the last release
    (:func:`~cleargrad.runtime.hostmem.release_host_memory`), so that peak memory follows the
    chunk size instead of the heap's fragmentation."""
    if chunk is None or chunk <= 0 or chunk >= total:
        yield slice(0, total)
        release_host_memory()
        return
    for start in range(0, total, chunk):
        yield slice(start, min(start + chunk, total))
        release_host_memory()


_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, (torch.OutOfMemoryError, MemoryError)) and not isinstance(e, ResourceError):
        return True
    return isinstance(e, RuntimeError) and any(t in str(e).lower() for t in _OOM_TEXT)


@contextmanager
def memory_guard(chunk: int, sample_shape: Sequence[int], device: torch.device | str) -> Iterator[None]:
    """Turn an allocation failure inside the block into a :class:`~cleargrad.errors.ResourceError`
    that names the chunk and the ``batch_size`` setting to lower (instead of a bare
    allocator error). The kernel's out-of-memory killer cannot be caught: keep chunks
    bounded with ``batch_size`` (see docs/guides/evaluating-datasets.md, "Memory check")."""
    try:
        yield
    except Exception as e:
        if not _is_oom(e):
            raise
        shape = "x".join(str(int(s)) for s in sample_shape)
        gib = chunk * max(1, torch.Size(sample_shape).numel()) * 4 / 2**30
        raise ResourceError(
            f"a chunk of {chunk} inputs of shape {shape} ({gib:.2f} GiB of input alone) does not fit in the "
            f"memory of {device}: set a smaller batch_size (e.g. {max(1, chunk // 4)}; on the command line "
            "--metric-option METRIC.batch_size=K or -o METHOD.batch_size=K, or evaluate --metric-batch-size K)"
        ) from e
