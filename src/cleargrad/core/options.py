"""Checks shared by every public call: option names, generators, chunk sizes, and the
diagnosis of a model that cannot take the given input or returns non-finite values.

These turn what would otherwise surface as a raw ``TypeError``/``RuntimeError`` from
deep inside torch into an :class:`~cleargrad.ExplanationError` that says what to do.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, InputError, ModelStateError
from ..runtime.callargs import call_arg
from .targets import _score_watch

__all__ = [
    "call_arg",
    "signature_options",
    "check_options",
    "check_generator",
    "check_chunk_size",
    "check_common_options",
    "diagnose_model_error",
    "check_finite_result",
    "watch_scores",
]

#: options that give a chunk size (``None`` = automatic, else a positive int)
_CHUNK_OPTIONS = ("internal_batch_size", "batch_size")


def signature_options(fn: Callable[..., Any], skip: int) -> tuple[list[str], bool]:
    """Keyword option names of ``fn`` after its first ``skip`` parameters, and whether it
    also takes ``**options``."""
    params = list(inspect.signature(fn).parameters.values())[skip:]
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def check_options(owner: str, given: Iterable[str], valid: Iterable[str]) -> None:
    """Refuse option names that ``owner`` does not take, listing the valid ones.

    Raises:
        ConfigError: an unknown name, with the closest valid name and the full list.
    """
    valid = sorted(set(valid))
    unknown = [k for k in given if k not in valid]
    if not unknown:
        return
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(k, valid, n=1, cutoff=0.5)
        hints.append(f"{k!r} (did you mean {close[0]!r}?)" if close else repr(k))
    listed = ", ".join(valid) if valid else "none"
    raise ConfigError(f"{owner} got unknown option(s) {', '.join(hints)}; valid options: {listed}")


def check_generator(generator: object, name: str = "generator") -> torch.Generator | None:
    """``None`` or a ``torch.Generator``; anything else (e.g. an int seed) is refused.

    A generator may live on any device: draws are made on its device and moved to the
    input's, so a CPU generator gives the same numbers for CPU and CUDA inputs.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    raise ConfigError(
        f"{name} must be a torch.Generator or None, got {type(generator).__name__} {generator!r}; "
        f"to seed, pass {name}=torch.Generator().manual_seed({generator if isinstance(generator, int) else 0})"
    )


def check_chunk_size(name: str, value: object) -> int | None:
    """``None`` (automatic) or a positive int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int (images per chunk) or None for automatic, got {value!r}")
    return value


def check_common_options(options: Mapping[str, Any]) -> None:
    """Validate the options many methods share (``generator``, chunk sizes)."""
    if "generator" in options:
        check_generator(options["generator"])
    for name in _CHUNK_OPTIONS:
        if name in options:
            check_chunk_size(name, options[name])


def _param_dtypes(model: nn.Module) -> set[torch.dtype]:
    return {p.dtype for p in model.parameters() if p.is_floating_point()}


def _first_conv(model: nn.Module) -> nn.modules.conv._ConvNd | None:
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m
    return None


def diagnose_model_error(model: nn.Module, x: torch.Tensor, error: BaseException) -> InputError | None:
    """After ``model`` failed on ``x``: an :class:`InputError` naming the likely cause
    (dtype or channel count that the model does not take), or ``None`` if neither applies.

    Only called once the forward has failed, so a model that converts its input itself
    (e.g. repeats a grayscale channel) is never refused.
    """
    if not isinstance(error, RuntimeError) or not isinstance(x, torch.Tensor):
        return None
    dtypes = _param_dtypes(model)
    if len(dtypes) == 1:
        (want,) = dtypes
        if x.dtype != want:
            cast = {torch.float32: "x.float()", torch.float16: "x.half()", torch.float64: "x.double()"}.get(
                want, f"x.to({want})"
            )
            return InputError(
                f"x is {x.dtype} but the model's parameters are {want}; cast the input with {cast} "
                f"(or convert the model, e.g. model.to({x.dtype}), or run under torch.autocast)"
            )
    conv = _first_conv(model)
    if conv is not None and x.dim() >= 2 and x.shape[1] != conv.in_channels and "channels" in str(error):
        hint = (
            "load the images as grayscale (channels=1, or --grayscale in the CLI)"
            if conv.in_channels == 1
            else "load the images as RGB (channels=3, or --rgb in the CLI)"
            if conv.in_channels == 3
            else f"give {conv.in_channels}-channel inputs"
        )
        return InputError(
            f"x has {x.shape[1]} channel(s) but the model's first convolution takes {conv.in_channels}; {hint}"
        )
    return None


@contextmanager
def watch_scores() -> Iterator[list[torch.Tensor]]:
    """Collect, without synchronising, whether every class-score tensor selected by
    :func:`~cleargrad.core.select_output` inside the block was finite."""
    flags: list[torch.Tensor] = []
    token = _score_watch.set(flags)
    try:
        yield flags
    finally:
        _score_watch.reset(token)


def check_finite_result(out: Any, owner: str, score_flags: Sequence[torch.Tensor] = ()) -> Any:
    """Refuse a result with NaN/Inf values, or computed from NaN/Inf class scores (the
    input was checked finite, so the model's scores or gradients were not).

    Raises:
        ModelStateError: naming the images whose result is not finite.
    """
    t = out[0] if isinstance(out, (tuple, list)) else out
    bad_set: set[int] = set()
    n = t.shape[0] if isinstance(t, torch.Tensor) and t.dim() >= 1 else -1
    if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() and t.dim() >= 1:
        bad_set |= set((~torch.isfinite(t.reshape(n, -1))).any(dim=1).nonzero().flatten().tolist())
    scores_ok = True
    if score_flags:  # one device-to-host copy for all the call's forward passes
        sizes = [int(f.numel()) for f in score_flags]
        dev = score_flags[0].device
        flat = torch.cat([f.reshape(-1).to(dev) for f in score_flags]).cpu()
        scores_ok = bool(flat.all())
        if not scores_ok:
            for f in flat.split(sizes):  # a forward of the batch itself (rows = images) names the images
                if f.numel() == n:
                    bad_set |= set((~f).nonzero().flatten().tolist())
    bad = sorted(bad_set)
    if bad or not scores_ok:
        where = f" for image(s) {bad[:10]} of the batch" if bad else ""
        raise ModelStateError(
            f"{owner}: the model produced NaN or Inf scores or gradients{where} (the input is finite); the "
            "explanation would be meaningless. Check the model's weights and its output, e.g. "
            "torch.isfinite(model(x)).all()"
        )
    return out
