"""The explanation kernel: the Method root and its guard, inputs, targets, layers, hooks,
model state, ReLU rules, maps, sampling, 2-D reduction and the method registry.

The runtime names used by the methods (chunking, memory planning, layouts, folding,
compiling) are re-exported from :mod:`cleargrad.runtime`, their home."""

from ..runtime.batching import CPU_MAX_CHUNK, DEFAULT_CHUNK_ELEMENTS, chunk_slices, default_chunk_size, memory_guard
from ..runtime.compiled import CompiledForward, compiled_forward
from ..runtime.fused import FoldedForward, folded_forward
from ..runtime.hostmem import (
    cached_host_bytes,
    get_host_cache_limit,
    host_memory_reuse,
    release_host_memory,
    set_host_cache_limit,
    set_host_memory_reuse,
)
from ..runtime.layout import (
    MEMORY_FORMATS,
    contiguous_result,
    fast_layout,
    fast_layout_call,
    get_memory_format,
    model_input,
    run_model,
    set_memory_format,
)
from ..runtime.memplan import available_bytes, get_memory_check, plan_chunk, set_memory_check
from .gradmode import gradient_call, normal_options, normal_tensor
from .hooks import capture_activations, forward_hooks
from .inputs import check_input
from .layers import auto_layer, find_layer, layer_name
from .reduce import REDUCTIONS, to_2d
from .registry import get_method, list_methods, register
from .relu_rules import relu_rule
from .state import check_eval_mode, preserved_state
from .targets import gather_scores, resolve_targets, select_output

__all__ = [
    "CPU_MAX_CHUNK",
    "DEFAULT_CHUNK_ELEMENTS",
    "MEMORY_FORMATS",
    "REDUCTIONS",
    "CompiledForward",
    "auto_layer",
    "available_bytes",
    "cached_host_bytes",
    "capture_activations",
    "check_eval_mode",
    "check_input",
    "chunk_slices",
    "compiled_forward",
    "folded_forward",
    "FoldedForward",
    "contiguous_result",
    "default_chunk_size",
    "fast_layout",
    "fast_layout_call",
    "find_layer",
    "forward_hooks",
    "gather_scores",
    "gradient_call",
    "get_memory_check",
    "get_memory_format",
    "get_host_cache_limit",
    "get_method",
    "layer_name",
    "list_methods",
    "memory_guard",
    "model_input",
    "normal_options",
    "normal_tensor",
    "plan_chunk",
    "preserved_state",
    "register",
    "release_host_memory",
    "relu_rule",
    "resolve_targets",
    "run_model",
    "select_output",
    "set_host_cache_limit",
    "set_host_memory_reuse",
    "host_memory_reuse",
    "set_memory_check",
    "set_memory_format",
    "to_2d",
]
