"""Validation of input batches."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError

__all__ = ["broadcast_like", "check_input", "conv_input_ndim"]

_CONV_RANK = ((nn.Conv1d, 3), (nn.Conv2d, 4), (nn.Conv3d, 5))
_SHAPES = {3: "(N, C, L)", 4: "(N, C, H, W)", 5: "(N, C, D, H, W)"}


def conv_input_ndim(model: nn.Module) -> int | None:
    """Batch rank a convolutional model expects (4 for Conv2d, 5 for Conv3d), from its first
    convolution.

    ``None`` when the model has no convolution (any rank >= 2 is accepted then). Used to
    refuse e.g. a ``(C, H, W)`` image without its batch dimension, which ``Conv2d`` would
    otherwise silently treat as an unbatched input.
    """
    for m in model.modules():
        for cls, rank in _CONV_RANK:
            if isinstance(m, cls):
                return rank
    return None


def check_input(x: object, *, ndim: int | None = None, name: str = "x") -> torch.Tensor:
    """Validate an input batch and return it unchanged.

    Args:
        x: the batch, a floating-point tensor whose first dimension is the batch.
        ndim: the exact rank required (4 for image methods such as CAMs); ``None``
            accepts any rank >= 2.
        name: the argument's name, used in error messages.

    Raises:
        InputError: not a tensor, wrong rank, non-float dtype, empty batch, NaN/Inf.
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(
            f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}; "
            "convert numpy arrays with torch.as_tensor(arr).float()."
        )
    if ndim is not None and x.dim() != ndim:
        shape = _SHAPES.get(ndim, f"rank {ndim}")
        hint = " Add a batch dimension with x.unsqueeze(0)." if x.dim() == ndim - 1 else ""
        raise InputError(f"{name} must have shape {shape}, got shape {tuple(x.shape)}.{hint}")
    if ndim is None and x.dim() < 2:
        raise InputError(
            f"{name} must be a batch with at least 2 dimensions (N, ...), got shape "
            f"{tuple(x.shape)}; add a batch dimension with x.unsqueeze(0)."
        )
    if not x.is_floating_point():
        raise InputError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; "
            "convert with x.float() (and normalise it the way the model expects)."
        )
    if x.shape[0] == 0:
        raise InputError(f"{name} is an empty batch (shape {tuple(x.shape)}).")
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{name} contains NaN or Inf values; clean the input before explaining it.")
    return x


def broadcast_like(value: object, x: torch.Tensor, name: str, hint: str = "") -> torch.Tensor:
    """``value`` (a number or a tensor broadcastable to ``x``) as a tensor of x's shape,
    device and dtype (a broadcast view: clone it before writing into it).

    Raises:
        InputError: ``value`` does not broadcast to ``x``'s shape (``hint`` is appended
            to the message, e.g. what to give instead).
    """
    b = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    try:
        return torch.broadcast_to(b, x.shape)
    except RuntimeError as e:
        raise InputError(
            f"{name} of shape {tuple(b.shape)} does not broadcast to x's shape {tuple(x.shape)}{hint}"
        ) from e
