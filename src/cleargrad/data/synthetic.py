"""A synthetic localisation data set: one bright shape on a noisy background per image,
the class is the shape, and a boolean mask marks exactly the shape's pixels."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..errors import ConfigError

__all__ = ["SHAPE_CLASSES", "SyntheticShapes"]

SHAPE_CLASSES: tuple[str, ...] = ("square", "disk", "triangle", "cross")
"""Class names of :class:`SyntheticShapes`, indexed by label."""


def _shape_masks(kind: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Boolean masks for each image's shape, given pixel offsets from the centre."""
    square = (dx.abs() <= r) & (dy.abs() <= r)
    disk = dx**2 + dy**2 <= r**2
    # apex up, base of width 2r at the bottom: half-width grows linearly from 0 to r
    triangle = (dy.abs() <= r) & (dx.abs() <= (dy + r) / 2)
    arm = r / 3
    cross = ((dx.abs() <= arm) & (dy.abs() <= r)) | ((dy.abs() <= arm) & (dx.abs() <= r))
    k = kind.view(-1, 1, 1)
    return torch.where(k == 0, square, torch.where(k == 1, disk, torch.where(k == 2, triangle, cross)))


class SyntheticShapes(Dataset):
    """Seeded images of a single bright shape (square, disk, triangle or cross) on noise.

    The label is the shape (:data:`SHAPE_CLASSES`), so a classifier can only be right by
    looking at the shape, and ``masks`` marks exactly its pixels: ground truth for
    localisation metrics (pointing game, mask overlap). Pixels are
    ``clamp(background + noise, 0, 1)`` outside the shape and
    ``clamp(foreground + noise, 0, 1)`` inside, where the foreground is ``intensity``
    (grayscale) or a random bright colour (RGB), and ``noise`` is Gaussian.

    Args:
        n: number of images.
        size: image height and width.
        channels: 1 (grayscale) or 3 (RGB).
        noise: standard deviation of the Gaussian pixel noise (0 gives clean images).
        background: background level in [0, 1].
        intensity: foreground level for grayscale images.
        min_radius / max_radius: half-size range of the shapes, as fractions of ``size``.
        num_classes: use the first ``num_classes`` shapes (2 to 4).
        seed: seed of the private generator; the same seed gives the same data.

    Attributes:
        images: float32 ``(n, channels, size, size)`` in [0, 1].
        labels: int64 ``(n,)``.
        masks: bool ``(n, 1, size, size)``, True on the shape.
        classes: the class names in use.

    Indexing returns ``(image, label, mask)``.
    """

    def __init__(
        self,
        n: int = 256,
        size: int = 32,
        channels: int = 1,
        noise: float = 0.1,
        background: float = 0.2,
        intensity: float = 0.9,
        min_radius: float = 0.15,
        max_radius: float = 0.3,
        num_classes: int = 4,
        seed: int = 0,
    ) -> None:
        if n < 1 or size < 8:
            raise ConfigError(f"need n >= 1 and size >= 8, got n={n}, size={size}")
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {channels}")
        if not 2 <= num_classes <= len(SHAPE_CLASSES):
            raise ConfigError(f"num_classes must be in 2..{len(SHAPE_CLASSES)}, got {num_classes}")
        if not 0 < min_radius <= max_radius < 0.5:
            raise ConfigError(f"need 0 < min_radius <= max_radius < 0.5, got {min_radius}, {max_radius}")
        if noise < 0:
            raise ConfigError(f"noise must be >= 0, got {noise}")
        g = torch.Generator().manual_seed(seed)
        self.classes = SHAPE_CLASSES[:num_classes]
        self.labels = torch.randint(num_classes, (n,), generator=g)
        r = (min_radius + (max_radius - min_radius) * torch.rand(n, generator=g)) * size
        r = r.clamp(min=2.0, max=(size - 4) / 2)
        # integer centres (so every shape is rasterised symmetrically) that keep the whole
        # shape and one pixel of margin inside the image
        cmin, cmax = torch.ceil(r + 1), torch.floor(size - 2 - r)
        cx = cmin + torch.floor(torch.rand(n, generator=g) * (cmax - cmin + 1))
        cy = cmin + torch.floor(torch.rand(n, generator=g) * (cmax - cmin + 1))
        grid = torch.arange(size, dtype=torch.float32)
        dx = grid.view(1, 1, -1) - cx.view(-1, 1, 1)
        dy = grid.view(1, -1, 1) - cy.view(-1, 1, 1)
        self.masks = _shape_masks(self.labels, dx, dy, r.view(-1, 1, 1)).unsqueeze(1)
        if channels == 1:
            fg = torch.full((n, 1, 1, 1), float(intensity))
        else:
            fg = 0.6 + 0.4 * torch.rand(n, 3, 1, 1, generator=g)
        clean = torch.where(self.masks, fg, torch.full_like(fg, float(background)))
        self.images = (clean + noise * torch.randn(n, channels, size, size, generator=g)).clamp_(0.0, 1.0)
        self.seed = seed

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i], self.masks[i]
