"""Image inputs of the command: files and folders, preprocessing, Fashion-MNIST.

Unreadable files (missing, corrupt, not an image) are skipped and reported, never fatal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from ..data.fashion_mnist import Split
from ..data.presets import IMAGENET_CROP_FRACTION, IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError, DataError

__all__ = [
    "ImageRecord",
    "ImageSet",
    "Preprocess",
    "check_model_takes",
    "default_preprocess",
    "fashion_mnist_set",
    "image_set",
]

# the ImageNet constants live in cleargrad.data.presets (shared with load_image_folder(preset="imagenet"))


@dataclass(frozen=True)
class Preprocess:
    """How image files become model inputs: bring to ``size``×``size`` (bilinear; by
    ``resize``), scale to [0, 1], convert to grayscale or RGB, then ``(x - mean) / std``
    per channel.

    ``resize="crop"`` (default) scales the shorter side to ``size / crop_fraction`` and
    cuts the central ``size``×``size`` (torchvision's ``Resize`` + ``CenterCrop``; the
    aspect ratio is kept); ``"squash"`` scales both sides to ``size`` (the aspect ratio
    changes).
    """

    size: int
    grayscale: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str = "crop"
    crop_fraction: float = 1.0

    def __post_init__(self) -> None:
        channels = 1 if self.grayscale else 3
        for name, v in (("mean", self.mean), ("std", self.std)):
            if len(v) not in (1, channels):
                raise ConfigError(f"--{name} needs 1 or {channels} values, got {len(v)}")
        if any(s <= 0 for s in self.std):
            raise ConfigError("--std values must be positive")
        if self.size <= 0:
            raise ConfigError("--size must be positive")
        if self.resize not in ("crop", "squash"):
            raise ConfigError(f"--resize must be crop or squash, got {self.resize!r}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ConfigError(f"--crop-fraction must be in (0, 1], got {self.crop_fraction}")
        from ..data.image_folder import check_crop_fraction

        check_crop_fraction(self.size, self.crop_fraction, "--crop-fraction")

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (part of the run settings)."""
        return asdict(self)

    def normalize(self, t: torch.Tensor) -> torch.Tensor:
        """``(t - mean) / std`` over the channel axis of a ``(C, H, W)`` or ``(N, C, H, W)`` tensor."""
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=t.dtype).view(shape)
        std = torch.tensor(self.std, dtype=t.dtype).view(shape)
        return (t - mean) / std

    def denormalize(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize` (for display)."""
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=t.dtype, device=t.device).view(shape)
        std = torch.tensor(self.std, dtype=t.dtype, device=t.device).view(shape)
        return t * std + mean


def model_in_channels(model: nn.Module) -> int | None:
    """Input channels of the first convolution, if the model has one."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.in_channels)
    return None


def default_preprocess(
    model: nn.Module,
    size: int | None = None,
    grayscale: bool | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resize: str = "crop",
    crop_fraction: float | None = None,
) -> Preprocess:
    """Preprocessing with defaults read from the model.

    A model whose first convolution takes one channel gets grayscale 28×28 inputs with the
    Fashion-MNIST mean/std; any other gets RGB 224×224 with the ImageNet mean/std (a
    HuggingFace model the ``config.image_size`` its position embeddings were built for, and
    the mean/std of the ``preprocessor_config.json`` beside its local config when there is one). RGB
    inputs of 224 pixels get torchvision's ImageNet evaluation crop (shorter side 256,
    centre 224: crop fraction 0.875); every other size a crop fraction of 1 (the shorter
    side becomes ``size``). Every value given explicitly wins.
    """
    if grayscale is None:
        grayscale = model_in_channels(model) == 1
    from ..models.hf import hf_image_size, hf_normalization

    if size is None:
        size = hf_image_size(model) or (28 if grayscale else 224)
    hf_norm = hf_normalization(model) if mean is None or std is None else None
    if mean is None:
        mean = hf_norm[0] if hf_norm else (FASHION_MNIST_MEAN,) if grayscale else IMAGENET_MEAN
    if std is None:
        std = hf_norm[1] if hf_norm else (FASHION_MNIST_STD,) if grayscale else IMAGENET_STD
    if crop_fraction is None:
        crop_fraction = IMAGENET_CROP_FRACTION if not grayscale and int(size) == 224 else 1.0
    return Preprocess(
        int(size), bool(grayscale), tuple(float(m) for m in mean), tuple(float(s) for s in std),
        resize, float(crop_fraction),
    )


def check_model_takes(model: nn.Module, x: torch.Tensor) -> None:
    """One no-grad forward of ``x[:1]``: a model that cannot take the preprocessed images
    (channel count, dtype) fails here with an :class:`~cleargrad.InputError` saying why,
    before any work starts."""
    from ..core.options import diagnose_model_error

    p = next(model.parameters(), None)
    xi = x[:1].to(p.device if p is not None else x.device)
    try:
        with torch.no_grad():
            model(xi)
    except RuntimeError as e:
        diagnosed = diagnose_model_error(model, xi, e)
        if diagnosed is None:
            raise
        raise diagnosed from e
    except ValueError as e:  # e.g. a HuggingFace ViT built for another image size
        from ..errors import InputError

        h, w = xi.shape[-2:]
        why = " ".join(str(e).split()).rstrip(".")
        raise InputError(
            f"the model refused the {h}x{w} input images: {why}; pass --size to match the size the model was built for"
        ) from e


@dataclass(frozen=True)
class ImageRecord:
    """One input image: a stable id, where it comes from, and its class if known."""

    image_id: str
    source: str
    label: int | None = None
    class_name: str | None = None


@dataclass
class ImageSet:
    """An ordered list of images, loaded batch by batch.

    ``tensors`` holds preprocessed images for in-memory data sets (Fashion-MNIST); file
    based sets read and preprocess on :meth:`load`. Files listed but missing are in
    ``missing`` from the start; files that fail to decode are added to ``skipped`` by
    :meth:`load`.
    """

    records: list[ImageRecord]
    preprocess: Preprocess | None = None
    tensors: torch.Tensor | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def __len__(self) -> int:
        return len(self.records)

    def check_labels(self) -> None:
        """Refuse ``--target label`` when some image has no class (no class sub-folder).

        Raises:
            ConfigError: naming how many images lack a class and an example.
        """
        missing = [r for r in self.records if r.label is None]
        if missing:
            raise ConfigError(
                f"--target label needs a class for every image, from class sub-folders "
                f"(FOLDER/<class>/<image>); {len(missing)} of {len(self.records)} image(s) in "
                f"{self.description} have none (e.g. {missing[0].source}). Arrange them in class "
                "sub-folders, or use --target auto (the prediction) or a class index"
            )

    def load(self, indices: Sequence[int]) -> tuple[torch.Tensor | None, list[ImageRecord]]:
        """Images ``indices`` as one batch; unreadable ones are dropped and recorded."""
        if self.tensors is not None:
            idx = torch.as_tensor(list(indices), dtype=torch.long)
            return self.tensors[idx], [self.records[i] for i in indices]
        assert self.preprocess is not None
        from ..data import load_image_folder

        recs = [self.records[i] for i in indices if self.records[i].source not in self.skipped]
        if not recs:
            return None, []
        p = self.preprocess
        try:
            folder = load_image_folder(
                [r.source for r in recs], size=p.size, channels=1 if p.grayscale else 3, mean=p.mean, std=p.std,
                resize=p.resize, crop_fraction=p.crop_fraction,
            )
        except DataError:  # none of them readable
            folder = None
        kept = set() if folder is None else {str(q) for q in folder.paths}
        for r in recs:
            if r.source not in kept:
                reason = "unreadable"
                if folder is not None:
                    reason = next((s.reason for s in folder.skipped if str(s.path) == r.source), reason)
                elif not Path(r.source).is_file():
                    reason = "missing"
                self.skipped[r.source] = " ".join(reason.split())[:300]
        if folder is None:
            return None, []
        return folder.images, [r for r in recs if r.source in kept]


def image_set(paths: Sequence[str | Path], preprocess: Preprocess) -> ImageSet:
    """The images under ``paths`` (files, or folders searched recursively, sorted).

    In a folder of class subfolders (``root/<class>/<image>``) the subfolder name is the
    class and its index in the sorted list of subfolders the label. A listed file that does
    not exist is skipped and recorded; a missing folder is an error.
    """
    from ..data.image_folder import list_images, non_image_files, not_image_reason

    records: list[ImageRecord] = []
    skipped: dict[str, str] = {}
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files = list_images(path)
            skipped.update({str(f): not_image_reason(f) for f in non_image_files(path)})
            rel = {f: f.relative_to(path) for f in files}
            classes = sorted({r.parts[0] for r in rel.values() if len(r.parts) > 1})
            index = {c: i for i, c in enumerate(classes)}
            for f in files:
                cls = rel[f].parts[0] if len(rel[f].parts) > 1 else None
                records.append(ImageRecord(rel[f].as_posix(), str(f), index[cls] if cls else None, cls))
        elif path.is_file():
            records.append(ImageRecord(path.name, str(path)))
        elif len(paths) == 1:
            raise DataError(f"image file or folder not found: {path}")
        else:
            skipped[str(path)] = "missing"
    ids = [r.image_id for r in records]
    if len(set(ids)) != len(ids):  # same file name in two places: use the full path
        records = [ImageRecord(r.source, r.source, r.label, r.class_name) for r in records]
    records = [r for r in records if r.source not in skipped]
    if not records:
        raise DataError(f"no readable image files in {', '.join(str(p) for p in paths)}")
    return ImageSet(records, preprocess, skipped=skipped, description=", ".join(str(p) for p in paths))


def fashion_mnist_set(limit: int | None = None, split: Split = "test") -> ImageSet:
    """The first ``limit`` images of a Fashion-MNIST split, normalised as the reference
    SmallCNN expects; ids ``fashion-mnist-<split>-<index>``, classes by name."""
    from ..data import FASHION_MNIST_CLASSES, load_fashion_mnist

    ds = load_fashion_mnist(split, normalize=True, limit=limit)
    records = [
        ImageRecord(
            f"fashion-mnist-{split}-{i:05d}", f"fashion-mnist/{split}/{i}", int(y), FASHION_MNIST_CLASSES[int(y)]
        )
        for i, y in enumerate(ds.labels.tolist())
    ]
    prep = Preprocess(28, True, (FASHION_MNIST_MEAN,), (FASHION_MNIST_STD,))
    return ImageSet(records, prep, tensors=ds.images, description=f"fashion-mnist {split}")
