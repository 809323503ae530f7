"""The explanation kernel: the Method root and its guard, inputs, targets, layers, hooks,
model state, ReLU rules, maps, sampling, 2-D reduction and the method registry.

The runtime names used by the methods (chunking, memory planning, layouts, folding,
compiling) are re-exported from :mod:`cleargrad.runtime`, their home."""

from ..runtime import (  # the runtime names the methods use (their home: cleargrad.runtime)
    CPU_MAX_CHUNK,
    DEFAULT_CHUNK_ELEMENTS,
    CompiledForward,
    FoldedForward,
    chunk_slices,
    compiled_forward,
    contiguous_result,
    default_chunk_size,
    fast_layout,
    fast_layout_call,
    folded_forward,
    memory_guard,
    model_input,
    plan_chunk,
    release_host_memory,
    run_model,
)
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
    "REDUCTIONS",
    "CompiledForward",
    "auto_layer",
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
    "to_2d",
]
