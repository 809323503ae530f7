"""Error functions between the standard and the guided input gradient (spec § 4.2).

Each function takes two tensors of the same shape ``(N, ...)`` (a batch of input
gradients) and returns one error per image, shape ``(N,)``. ``m`` is the number of
elements of one image's gradient (``C * H * W``). All functions are symmetric in their
two arguments and attain their minimum over the first argument at ``a = b``.

* ``"mae"``: ``(1/m) ||a - b||_1``, minimum 0.
* ``"mse"``: ``(1/m) ||a - b||_2^2``, minimum 0.
* ``"cosine"``: ``1 - <a, b> / (||a||_2 ||b||_2 + eps)``, minimum 0 (up to ``eps``);
  invariant to positive scaling of either argument.
* ``"hi"``: histogram intersection exactly as on the paper's slides,
  ``-sum_j min(|a_j|, |b_j|) / (||a||_1 ||b||_1 + eps)``. Its value at ``a = b`` is
  ``-1 / ||a||_1``, so its scale depends on the gradient magnitude (the denominator is
  a product of two norms): compare values only between gradients of similar size.
* ``"hi_normalized"``: scale-free variant,
  ``-sum_j min(|a_j| / (||a||_1 + eps), |b_j| / (||b||_1 + eps))`` in ``[-1, 0]``,
  minimum -1 at ``a = b``.

``eps = 1e-12`` only guards all-zero gradients (no NaN, error 1 for cosine, 0 for the
histogram intersections).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import ConfigError

__all__ = ["EPS", "ERRORS", "mae", "mse", "cosine", "hi", "hi_normalized", "gradient_error"]

EPS = 1e-12

ErrorFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _flat(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"gradients must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() < 1:
        raise ValueError("gradients must have a leading batch dimension")
    return a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)


def mae(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image: ``(1/m) ||a - b||_1``."""
    a, b = _flat(a, b)
    return (a - b).abs().mean(dim=1)


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: ``(1/m) ||a - b||_2^2``."""
    a, b = _flat(a, b)
    return (a - b).square().mean(dim=1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine error per image: ``1 - <a, b> / (||a||_2 ||b||_2 + eps)``."""
    a, b = _flat(a, b)
    dot = (a * b).sum(dim=1)
    norms = torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
    return 1.0 - dot / (norms + EPS)


def hi(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Histogram intersection as on the slides: ``-sum min(|a|, |b|) / (||a||_1 ||b||_1 + eps)``."""
    a, b = _flat(a, b)
    a, b = a.abs(), b.abs()
    inter = torch.minimum(a, b).sum(dim=1)
    return -inter / (a.sum(dim=1) * b.sum(dim=1) + EPS)


def hi_normalized(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Scale-free histogram intersection: ``-sum min(|a|/||a||_1, |b|/||b||_1)`` in ``[-1, 0]``."""
    a, b = _flat(a, b)
    a, b = a.abs(), b.abs()
    p = a / (a.sum(dim=1, keepdim=True) + EPS)
    q = b / (b.sum(dim=1, keepdim=True) + EPS)
    return -torch.minimum(p, q).sum(dim=1)


#: name -> error function ``(a, b) -> (N,)``
ERRORS: dict[str, ErrorFn] = {
    "mae": mae,
    "mse": mse,
    "cosine": cosine,
    "hi": hi,
    "hi_normalized": hi_normalized,
}


def gradient_error(name: str) -> ErrorFn:
    """The error function registered under ``name`` (see :data:`ERRORS`)."""
    try:
        return ERRORS[name]
    except KeyError:
        raise ConfigError(f"unknown gradient error {name!r}; valid: {', '.join(ERRORS)}") from None
