"""Random draws for the sampling CAMs, reproducible and independent of the chunk size.

Small draws (indices, interpolation points) are taken up front from the caller's
generator. Noise images are drawn per sample from a seed that the caller's generator
gives each sample, so a sample's noise does not depend on how the work is chunked and
no big tensor of noise is ever materialised.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..core import chunk_slices, default_chunk_size
from ..core.sampling import draw_indices, draw_seeds, draw_uniform, seeded_noise
from ..errors import ConfigError

__all__ = [
    "check_positive_int",
    "draw_seeds",
    "draw_uniform",
    "draw_indices",
    "seeded_noise",
    "noise_scale",
    "per_image",
    "sample_chunks",
    "default_batch",
]


def check_positive_int(name: str, value: object) -> int:
    """Validate a count option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return value


def noise_scale(x: torch.Tensor, stdevs: float | None, default_fraction: float) -> torch.Tensor:
    """Per-image noise std ``(N,)``: ``stdevs`` if given, else ``default_fraction * (max - min)`` of each image."""
    if stdevs is None:
        flat = x.detach().flatten(1)
        return default_fraction * (flat.amax(dim=1) - flat.amin(dim=1))
    if not isinstance(stdevs, (int, float)) or isinstance(stdevs, bool) or stdevs < 0:
        raise ConfigError(f"stdevs must be a non-negative number or None, got {stdevs!r}")
    return torch.full((x.shape[0],), float(stdevs), dtype=x.dtype, device=x.device)


def per_image(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One value per image ``(B,)`` shaped to broadcast over images like ``x``'s
    (``(B, 1, 1, 1)``, or ``(B, 1, 1, 1, 1)`` for volumes)."""
    return v.view(-1, *([1] * (x.dim() - 1)))


def sample_chunks(
    n_images: int, n_samples: int, chunk: int, device: torch.device
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """Chunks of the image-major flattened work ``j = image * n_samples + sample``.

    Yields ``(slice, image_index, sample_index)`` with index tensors on ``device``.
    """
    for sl in chunk_slices(n_images * n_samples, chunk):
        j = torch.arange(sl.start, sl.stop, device=device)
        yield sl, j // n_samples, j % n_samples



def default_batch(sample_shape: torch.Size | tuple[int, ...], total: int, device: torch.device) -> int:
    """Default number of images per pass on ``device``: :func:`cleargrad.core.default_chunk_size`
    (a memory budget, capped on CPUs where large batches get slower per image)."""
    return default_chunk_size(sample_shape, max(1, total), device)
