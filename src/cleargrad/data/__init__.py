"""Data sets: Fashion-MNIST from local IDX files, folders of images, and synthetic
shapes with object masks for localisation tests."""

from .fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    FashionMNIST,
    denormalize_fashion_mnist,
    download_fashion_mnist,
    fashion_mnist_dir,
    load_fashion_mnist,
    normalize_fashion_mnist,
)
from .idx import read_idx, write_idx
from .image_folder import IMAGE_EXTENSIONS, ImageFolder, SkippedFile, list_images, load_image_folder
from .presets import IMAGENET_MEAN, IMAGENET_STD, PRESETS, get_preset
from .synthetic import SHAPE_CLASSES, SyntheticShapes

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "IMAGE_EXTENSIONS",
    "SHAPE_CLASSES",
    "FashionMNIST",
    "ImageFolder",
    "SkippedFile",
    "SyntheticShapes",
    "denormalize_fashion_mnist",
    "download_fashion_mnist",
    "fashion_mnist_dir",
    "list_images",
    "load_fashion_mnist",
    "load_image_folder",
    "normalize_fashion_mnist",
    "read_idx",
    "write_idx",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRESETS",
    "get_preset",
]
