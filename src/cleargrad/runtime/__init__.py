"""Performance machinery below the explanation kernel: chunked batching and the memory
check of chunks, the host allocator's cache, memory layouts (channels-last), batch-norm
folding and compiled forwards, with their process-wide switches.

This package imports nothing from :mod:`cleargrad.core` (the core's guard uses it).
The switches (``set_memory_check``, ``set_host_memory_reuse``, ``set_host_cache_limit``,
``set_memory_format`` and their getters) are exported from here; ``cleargrad.<switch>``
still resolves for old code.
"""

from .batching import CPU_MAX_CHUNK, DEFAULT_CHUNK_ELEMENTS, chunk_slices, default_chunk_size, memory_guard
from .compiled import CompiledForward, compiled_forward
from .fused import FoldedForward, folded_forward, no_hooks_memo
from .hostmem import (
    cached_host_bytes,
    get_host_cache_limit,
    host_memory_reuse,
    release_host_memory,
    resident_bytes,
    set_host_cache_limit,
    set_host_memory_reuse,
)
from .layout import (
    MEMORY_FORMATS,
    channels_last,
    contiguous_result,
    fast_layout,
    fast_layout_call,
    get_memory_format,
    model_input,
    run_model,
    set_memory_format,
)
from .memplan import available_bytes, check_batch, get_memory_check, pass_bytes_per_sample, plan_chunk, set_memory_check

__all__ = [
    "CPU_MAX_CHUNK",
    "DEFAULT_CHUNK_ELEMENTS",
    "MEMORY_FORMATS",
    "CompiledForward",
    "FoldedForward",
    "available_bytes",
    "cached_host_bytes",
    "channels_last",
    "check_batch",
    "chunk_slices",
    "compiled_forward",
    "contiguous_result",
    "default_chunk_size",
    "fast_layout",
    "fast_layout_call",
    "folded_forward",
    "get_host_cache_limit",
    "get_memory_check",
    "get_memory_format",
    "host_memory_reuse",
    "memory_guard",
    "model_input",
    "no_hooks_memo",
    "pass_bytes_per_sample",
    "plan_chunk",
    "release_host_memory",
    "resident_bytes",
    "run_model",
    "set_host_cache_limit",
    "set_host_memory_reuse",
    "set_memory_check",
    "set_memory_format",
]
