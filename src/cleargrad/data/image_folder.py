"""Loading a folder (or a list) of image files into one normalised batch tensor.
Unreadable files are skipped and reported, never fatal."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..core.progress import track
from ..errors import ConfigError, DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "RESIZE_MODES",
    "ImageFolder",
    "SkippedFile",
    "crop_resize",
    "MAX_IMAGE_PIXELS",
    "OversizedImage",
    "UnsupportedImage",
    "check_crop_fraction",
    "load_image_folder",
    "list_images",
    "non_image_files",
    "not_image_reason",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
"""File suffixes (lower case) treated as images when a folder is scanned."""

_MODES = {1: "L", 3: "RGB"}

MAX_IMAGE_PIXELS = 89_478_485
"""The most pixels an image may declare, and the most an intermediate resize may produce
(PIL's own decompression-bomb bound, about 9459×9459; at most a few hundred MB per image).
An image beyond it is skipped with the reason, never decoded: a 99-byte PNG can declare
20000×20000 pixels, and an extreme aspect ratio makes the aspect-keeping resize huge."""


@dataclass(frozen=True)
class SkippedFile:
    """A file that could not be loaded, and why."""

    path: Path
    reason: str


@dataclass
class ImageFolder(Dataset):
    """Images loaded by :func:`load_image_folder`.

    Attributes:
        images: float32 ``(N, C, H, W)``: pixels in [0, 1], then ``(x - mean) / std`` per
            channel if mean/std were given.
        paths: the file of each image, in the same order.
        labels: int64 ``(N,)`` class indices from sub-folder names, or None when the images
            are not arranged in class sub-folders.
        classes: sorted sub-folder names (empty without labels).
        skipped: files that were missing or unreadable, with the reason.

    Indexing returns ``(image, label)`` (label -1 without labels).
    """

    images: torch.Tensor
    paths: list[Path]
    labels: torch.Tensor | None = None
    classes: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        label = self.labels[i] if self.labels is not None else torch.tensor(-1)
        return self.images[i], label

    @property
    def skipped_paths(self) -> list[Path]:
        """The paths of the skipped files."""
        return [s.path for s in self.skipped]


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files (by suffix, see :data:`IMAGE_EXTENSIONS`) under ``folder``, sorted.

    Raises:
        DataError: ``folder`` is not a directory.
    """
    root = Path(folder)
    if not root.exists():
        raise DataError(f"image folder {root} does not exist; give an existing folder or image file")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass a folder of images (load_image_folder also takes one file)")
    files = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in files if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def non_image_files(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Files under ``folder`` that :func:`list_images` leaves out (suffix not in
    :data:`IMAGE_EXTENSIONS`), sorted; they are reported as skipped, never read."""
    root = Path(folder)
    files = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in files if p.is_file() and p.suffix.lower() not in IMAGE_EXTENSIONS)


def not_image_reason(path: Path) -> str:
    """The skip reason of a file that is not an image by its suffix."""
    return f"not an image file (suffix {path.suffix or 'none'!r}; read: {', '.join(IMAGE_EXTENSIONS)})"


def _size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ConfigError(f"size must be positive, got {size}")
    return int(h), int(w)


def _stats(v: float | Sequence[float] | None, channels: int, name: str) -> torch.Tensor | None:
    if v is None:
        return None
    t = torch.as_tensor(v, dtype=torch.float32).flatten()
    if t.numel() not in (1, channels):
        raise ConfigError(f"{name} must have 1 or {channels} values, got {t.numel()}")
    if name == "std" and bool((t <= 0).any()):
        raise ConfigError(f"std must be positive, got {v}")
    return t.expand(channels).view(1, channels, 1, 1)


RESIZE_MODES: tuple[str, ...] = ("crop", "squash")
"""``crop``: scale (aspect ratio kept) so the image covers the target, then cut the centre
(torchvision's ``Resize`` + ``CenterCrop``); ``squash``: scale each side to the target."""


def check_crop_fraction(size: int, crop_fraction: float, option: str = "crop_fraction") -> None:
    """Refuse a crop fraction whose scaled square (``size / crop_fraction`` per side) is over
    :data:`MAX_IMAGE_PIXELS` (every image would need a giant intermediate).

    Raises:
        ConfigError: naming the smallest value that fits.
    """
    side = size / crop_fraction
    if side * side > MAX_IMAGE_PIXELS:
        least = size / (MAX_IMAGE_PIXELS**0.5)
        raise ConfigError(
            f"{option} {crop_fraction:g} would scale every image to {side:,.0f} pixels a side before the "
            f"{size}-pixel crop; give a value of at least {least:.3g} (ImageNet models: 0.875)"
        )


def crop_resize(im: Image.Image, size: tuple[int, int], crop_fraction: float = 1.0) -> Image.Image:
    """Scale ``im`` (bilinear, aspect ratio kept) so that it covers ``size / crop_fraction``
    (``(height, width)``), then cut the central ``size``.

    For a square ``size`` this is torchvision's ``Resize(round(size / crop_fraction))``
    followed by ``CenterCrop(size)`` (shorter side scaled, longer side truncated as
    torchvision does); ``crop_fraction=0.875`` at 224 gives the usual ImageNet 256 -> 224.
    """
    h, w = size
    W, H = im.size
    if h == w:
        short = int(round(h / crop_fraction))
        if W <= H:
            new_w, new_h = short, int(short * H / W)
        else:
            new_h, new_w = short, int(short * W / H)
    else:
        scale = max(h / H, w / W) / crop_fraction
        new_w, new_h = max(w, int(round(W * scale))), max(h, int(round(H * scale)))
    if new_w * new_h > MAX_IMAGE_PIXELS:
        raise OversizedImage(
            f"scaling its {W}x{H} pixels to {new_w}x{new_h} before the centre crop would exceed the "
            f"{MAX_IMAGE_PIXELS:,}-pixel bound (an extreme aspect ratio or crop fraction); crop the file "
            "first, or use --resize squash"
        )
    if (new_w, new_h) != (W, H):
        im = im.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top, left = int(round((new_h - h) / 2.0)), int(round((new_w - w) / 2.0))
    return im.crop((left, top, left + w, top + h))


#: PIL modes of one-channel images with more than 8 bits (read at full range)
_WIDE_UINT16 = ("I;16", "I;16L", "I;16B", "I;16N")


class UnsupportedImage(ValueError):
    """An image that cannot be read without distorting it (skipped, with this reason)."""


class OversizedImage(UnsupportedImage):
    """An image that cannot be decoded or resized within :data:`MAX_IMAGE_PIXELS`."""


def _wide_values(im: Image.Image, path: Path) -> np.ndarray:
    """A one-channel image of more than 8 bits as float32 in [0, 1], or UnsupportedImage."""
    if im.mode in _WIDE_UINT16 or (im.mode == "I" and im.format == "PNG"):  # PNG is at most 16 bits
        return np.asarray(im).astype(np.float32) / 65535.0
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float32)
        if not np.isfinite(a).all():
            raise UnsupportedImage("32-bit float image with NaN/Inf pixels")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise UnsupportedImage(
                f"32-bit float image with values in [{lo:.4g}, {hi:.4g}], not [0, 1]; its intensity "
                "scale is unknown, so rescale it to [0, 1] (or save it as 8/16-bit) first"
            )
        return a
    raise UnsupportedImage(
        f"{im.mode!r} image ({im.format or 'unknown format'}): 32-bit integer pixels have no known "
        "intensity scale; save it as 8- or 16-bit first"
    )


def _fit(im: Image.Image, size: tuple[int, int] | None, resize: str, crop_fraction: float) -> Image.Image:
    """``im`` brought to ``size`` (``(height, width)``) as ``resize`` says (any PIL mode, "F" too)."""
    if size is not None and im.size != (size[1], size[0]):
        if resize == "crop":
            return crop_resize(im, size, crop_fraction)
        return im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    if size is not None and resize == "crop" and crop_fraction != 1.0:
        return crop_resize(im, size, crop_fraction)
    return im


def _read(
    path: Path, mode: str, size: tuple[int, int] | None, resize: str = "crop", crop_fraction: float = 1.0
) -> np.ndarray:
    """``(H, W, C)`` float32 pixels in [0, 1] (C = 1 for ``"L"``, 3 for ``"RGB"``).

    8-bit images of any PIL mode (L, RGB, RGBA, P palette, CMYK, YCbCr, 1-bit) are
    converted by PIL; 16-bit integer and [0, 1] float images are read at full range
    (not clipped to 8 bits); 32-bit integer images and floats outside [0, 1] raise
    :class:`UnsupportedImage`."""
    with Image.open(path) as im:
        w, h = im.size
        if w * h > MAX_IMAGE_PIXELS:
            raise OversizedImage(
                f"it declares {w}x{h} pixels, over the {MAX_IMAGE_PIXELS:,}-pixel bound (a possible "
                "decompression bomb); not decoded"
            )
        im.load()
        if im.mode in _WIDE_UINT16 or im.mode in ("I", "F"):
            wide = Image.fromarray(np.ascontiguousarray(_wide_values(im, path), dtype=np.float32))  # mode "F"
            plane = np.clip(np.asarray(_fit(wide, size, resize, crop_fraction), dtype=np.float32), 0.0, 1.0)
            return plane[..., None] if mode == "L" else np.repeat(plane[..., None], 3, axis=2)
        fitted = _fit(im.convert(mode), size, resize, crop_fraction)
        arr = np.asarray(fitted, dtype=np.uint8).astype(np.float32) / 255.0
        return arr[..., None] if arr.ndim == 2 else arr


def load_image_folder(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    size: int | Sequence[int] | None = None,
    channels: int | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    recursive: bool = True,
    quiet: bool = True,
    resize: str = "crop",
    crop_fraction: float | None = None,
    preset: str | None = None,
) -> ImageFolder:
    """Load images into one batch tensor.

    Args:
        source: a folder (scanned for image files, see :func:`list_images`; other files
            are listed in ``skipped``), one image file, or a list of file paths. In a
            folder whose images all sit in first-level sub-folders, the sub-folder names
            are the classes and give ``labels``.
        size: bring every image to ``size`` (int, or ``(height, width)``) with bilinear
            filtering, as ``resize`` says; None keeps the size of the first readable image
            and brings the others to it.
        channels: 3 (RGB, default) or 1 (grayscale).
        mean, std: per-channel (or scalar) normalisation applied after scaling to [0, 1].
        recursive: scan sub-folders.
        quiet: no progress bar or report of skipped files on the console.
        resize: ``"crop"`` (default: scale keeping the aspect ratio so that the image
            covers ``size / crop_fraction``, then cut the centre ``size``, torchvision's
            resize-then-centre-crop) or ``"squash"`` (scale each side to ``size``; the
            aspect ratio changes).
        crop_fraction: with ``"crop"``, the share of the scaled image the crop keeps
            (1.0, default: the shorter side is scaled to ``size``; ImageNet models: 0.875).
        preset: a named preprocessing of :mod:`cleargrad.data.presets` (``"imagenet"``:
            224², RGB, crop fraction 0.875, ImageNet mean/std, exactly what the command
            line gives an RGB model; ``"fashion-mnist"``); it fills ``size``, ``channels``,
            ``mean``, ``std`` and ``crop_fraction`` where they are not given.

    Pixels are read at their full range: 8-bit images (grayscale, RGB, RGBA, palette,
    CMYK, ...) are converted by PIL and divided by 255, 16-bit images (``I;16`` PNG/TIFF)
    divided by 65535, 32-bit float images used as they are when their values lie in
    [0, 1]. Images whose scale is unknown (32-bit integer, floats outside [0, 1]) are
    skipped with the reason rather than clipped or rescaled.

    Returns:
        An :class:`ImageFolder`; files that are missing, not images, corrupt, or of an
        unknown intensity scale are left out and listed in ``skipped`` (with the reason)
        instead of raising.

    Raises:
        DataError: ``source`` is neither a folder nor a file, or no image could be loaded.
        ConfigError: bad ``size``, ``channels``, ``mean`` or ``std``.
    """
    if preset is not None:
        from .presets import get_preset

        p = get_preset(preset)
        size = p.size if size is None else size
        channels = p.channels if channels is None else channels
        mean = p.mean if mean is None else mean
        std = p.std if std is None else std
        crop_fraction = p.crop_fraction if crop_fraction is None else crop_fraction
    channels = 3 if channels is None else channels
    crop_fraction = 1.0 if crop_fraction is None else crop_fraction
    if channels not in _MODES:
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if not 0.0 < crop_fraction <= 1.0:
        raise ConfigError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    target = _size(size)
    if target is not None:
        check_crop_fraction(max(target), crop_fraction)
    mean_t, std_t = _stats(mean, channels, "mean"), _stats(std, channels, "std")
    root: Path | None = None
    skipped: list[SkippedFile] = []
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        files = [Path(source)]  # one image file: a batch of one, no labels
    elif isinstance(source, (str, os.PathLike)):
        root = Path(source)
        files = list_images(root, recursive)
        skipped = [SkippedFile(p, not_image_reason(p)) for p in non_image_files(root, recursive)]
    else:
        files = [Path(p) for p in source]
    arrays: list[np.ndarray] = []
    kept: list[Path] = []
    for path in track(files, "loading images", quiet):
        if not path.is_file():
            skipped.append(SkippedFile(path, "missing"))
            continue
        try:
            arr = _read(path, _MODES[channels], target, resize, crop_fraction)
        except OversizedImage as e:
            skipped.append(SkippedFile(path, f"not read (too large): {e}"))
            continue
        except UnsupportedImage as e:
            skipped.append(SkippedFile(path, f"not read (would be distorted): {e}"))
            continue
        except Image.DecompressionBombError as e:
            skipped.append(SkippedFile(path, f"not read (too large): decompression bomb ({e})"))
            continue
        except MemoryError:
            skipped.append(SkippedFile(path, "not read (too large): decoding it ran out of memory"))
            continue
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
            skipped.append(SkippedFile(path, f"unreadable: {type(e).__name__}: {e}"))
            continue
        if target is None:
            target = arr.shape[:2]
        arrays.append(arr)
        kept.append(path)
    if skipped and not quiet:
        from rich.console import Console

        Console(stderr=True).print(f"[yellow]skipped {len(skipped)} file(s):[/yellow]")
        for s in skipped:
            Console(stderr=True).print(f"  {s.path}: {s.reason}")
    if not arrays:
        where = root if root is not None else f"{len(files)} given paths"
        raise DataError(f"no readable image in {where} ({len(skipped)} skipped)")
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    if mean_t is not None:
        batch = batch - mean_t
    if std_t is not None:
        batch = batch / std_t
    labels, classes = _folder_labels(root, kept)
    return ImageFolder(batch, kept, labels, classes, skipped)


def _folder_labels(root: Path | None, paths: list[Path]) -> tuple[torch.Tensor | None, list[str]]:
    """Labels from first-level sub-folders when every image lives in one."""
    if root is None:
        return None, []
    rel = [p.relative_to(root).parts for p in paths]
    if any(len(parts) < 2 for parts in rel):
        return None, []
    classes = sorted({parts[0] for parts in rel})
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index[parts[0]] for parts in rel], dtype=torch.long), classes
