"""Fashion-MNIST (Xiao et al. 2017) from local IDX files: the Debian package
``dataset-fashion-mnist``, a directory named by ``CLEARGRAD_FASHION_MNIST``, or a cache
filled once with torchvision's downloader. Nothing is downloaded at run time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .idx import read_idx

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "FashionMNIST",
    "load_fashion_mnist",
    "fashion_mnist_dir",
    "download_fashion_mnist",
    "normalize_fashion_mnist",
    "denormalize_fashion_mnist",
]

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Class names, indexed by label."""

FASHION_MNIST_MEAN: float = 0.2860
"""Mean pixel value of the training images in [0, 1]."""
FASHION_MNIST_STD: float = 0.3530
"""Standard deviation of the training pixels in [0, 1]."""

ENV_VAR = "CLEARGRAD_FASHION_MNIST"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
Split = Literal["train", "test"]


def default_cache_dir() -> Path:
    """``~/.cache/cleargrad/fashion-mnist`` (or under ``$CLEARGRAD_CACHE`` when set)."""
    root = os.environ.get("CLEARGRAD_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "cleargrad") / "fashion-mnist"


def _find_file(directory: Path, stem: str) -> Path | None:
    # torchvision's downloader puts the files under <root>/FashionMNIST/raw/
    for d in (directory, directory / "FashionMNIST" / "raw", directory / "raw"):
        for name in (stem + ".gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def _has_split(directory: Path, split: str) -> bool:
    return all(_find_file(directory, stem) is not None for stem in _FILES[split])


def _missing_message(tried: list[Path]) -> str:
    where = ", ".join(str(p) for p in tried)
    return (
        f"Fashion-MNIST IDX files not found (looked in: {where}). Install the Debian package: "
        "`sudo apt-get install dataset-fashion-mnist` (files go to /usr/share/datasets/fashion-mnist), "
        f"or set {ENV_VAR}=<directory with the *-ubyte.gz files>, or, on a machine with internet, "
        "fill the cache once with torchvision's downloader: "
        "`python -c \"import cleargrad.data as d; d.download_fashion_mnist()\"`."
    )


def fashion_mnist_dir(root: str | os.PathLike | None = None, split: Split | None = None) -> Path:
    """The directory holding the Fashion-MNIST IDX files.

    Looks, in order, in ``root`` (when given, and only there), ``$CLEARGRAD_FASHION_MNIST``,
    ``/usr/share/datasets/fashion-mnist`` and the cache ``~/.cache/cleargrad/fashion-mnist``
    (see :func:`download_fashion_mnist`). A directory counts when it has both files of
    ``split`` (of both splits when ``split`` is None).

    Raises:
        DataError: no such directory; the message says how to install the data. Also when
            ``$CLEARGRAD_FASHION_MNIST`` is set but lacks the files (a set variable is
            never passed over for the other places).
    """
    if root is not None:
        candidates = [Path(root)]
    else:
        env = os.environ.get(ENV_VAR)
        if env:
            missing = [s for s in ([split] if split else list(_FILES)) if not _has_split(Path(env), s)]
            if missing:
                what = "is not a folder" if not Path(env).is_dir() else f"has no {'/'.join(missing)} IDX files"
                raise DataError(
                    f"{ENV_VAR}={env} {what}: point it at the folder of the IDX files or unset it. "
                    + _missing_message([Path(env)])
                )
        candidates = ([Path(env)] if env else []) + [SYSTEM_DIR, default_cache_dir()]
    splits = [split] if split else list(_FILES)
    for c in candidates:
        if all(_has_split(c, s) for s in splits):
            return c
    raise DataError(_missing_message(candidates))


def download_fashion_mnist(dest: str | os.PathLike | None = None) -> Path:
    """Fill the cache with torchvision's downloader (needs internet; never called by the
    library itself). Returns the directory that :func:`fashion_mnist_dir` then finds.

    Args:
        dest: target directory (default ``~/.cache/cleargrad/fashion-mnist``).
    """
    from torchvision.datasets import FashionMNIST as _TVFashionMNIST

    d = Path(dest) if dest is not None else default_cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        _TVFashionMNIST(str(d), train=train, download=True)
    return d


def normalize_fashion_mnist(images: torch.Tensor) -> torch.Tensor:
    """``(images - mean) / std`` with the Fashion-MNIST training statistics (new tensor)."""
    return (images - FASHION_MNIST_MEAN) / FASHION_MNIST_STD


def denormalize_fashion_mnist(images: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_fashion_mnist`: back to pixel values in [0, 1]."""
    return images * FASHION_MNIST_STD + FASHION_MNIST_MEAN


class FashionMNIST(Dataset):
    """One split of Fashion-MNIST held in memory as tensors.

    Attributes:
        images: float32 ``(N, 1, 28, 28)``; pixel values in [0, 1], or normalised with
            :data:`FASHION_MNIST_MEAN` / :data:`FASHION_MNIST_STD` when ``normalized``.
        labels: int64 ``(N,)`` in ``0..9``; names in :data:`FASHION_MNIST_CLASSES`.
        normalized: whether ``images`` are normalised.
        classes: the class names.

    Indexing returns ``(image, label)``.
    """

    classes = FASHION_MNIST_CLASSES

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, normalized: bool = False) -> None:
        if images.dim() != 4 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
            raise DataError(
                f"images (N,1,H,W) and labels (N,) do not match: {tuple(images.shape)} vs {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels
        self.normalized = normalized

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def normalize(self) -> FashionMNIST:
        """A copy with normalised images (returns ``self`` when already normalised)."""
        if self.normalized:
            return self
        return FashionMNIST(normalize_fashion_mnist(self.images), self.labels, normalized=True)

    def to(self, device: torch.device | str) -> FashionMNIST:
        """A copy with images and labels on ``device``."""
        return FashionMNIST(self.images.to(device), self.labels.to(device), self.normalized)


def load_fashion_mnist(
    split: Split = "train",
    root: str | os.PathLike | None = None,
    *,
    normalize: bool = False,
    limit: int | None = None,
) -> FashionMNIST:
    """Load one split of Fashion-MNIST.

    Args:
        split: ``"train"`` (60000 images) or ``"test"`` (10000 images).
        root: directory with the IDX files (see :func:`fashion_mnist_dir` for the default
            search order).
        normalize: normalise with the training mean/std instead of returning [0, 1] pixels.
        limit: keep only the first ``limit`` images.

    Raises:
        DataError: files missing (message says how to install them), corrupt, or with
            inconsistent image/label counts; unknown split.
    """
    if split not in _FILES:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    d = fashion_mnist_dir(root, split)
    img_path, lbl_path = (_find_file(d, stem) for stem in _FILES[split])
    assert img_path is not None and lbl_path is not None
    imgs, lbls = read_idx(img_path), read_idx(lbl_path)
    if imgs.ndim != 3 or lbls.ndim != 1 or imgs.shape[0] != lbls.shape[0]:
        raise DataError(
            f"inconsistent Fashion-MNIST files in {d}: images {imgs.shape}, labels {lbls.shape}; "
            "expected (N, 28, 28) and (N,)"
        )
    if limit is not None:
        imgs, lbls = imgs[:limit], lbls[:limit]
    images = torch.from_numpy(imgs.astype("float32")).div_(255.0).unsqueeze(1)
    labels = torch.from_numpy(lbls.astype("int64"))
    ds = FashionMNIST(images, labels)
    return ds.normalize() if normalize else ds
