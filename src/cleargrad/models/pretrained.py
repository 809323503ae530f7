"""Reference weights trained locally (no download): the SmallCNN, a VGG-style CNN and a
CIFAR-style ResNet-18 on Fashion-MNIST, each trained once and then loaded from the
weights cache.

The SmallCNN weights of the default recipe also ship inside the package
(``models/reference/``, written by ``benchmarks/train_reference_cnn.py --ship`` from the
project's own training run, with the recipe, test accuracy, config hash and a SHA-256 of
the file beside them), so that model loads at once without training."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch

from ..data.fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD, load_fashion_mnist
from ..errors import ConfigError
from .resnet import cifar_resnet18
from .small_cnn import SmallCNN
from .training import evaluate_accuracy, train_classifier
from .vgg import SmallVGG
from .weights_cache import WeightsCache, config_key

__all__ = [
    "FashionMNISTRecipe",
    "VGG_RECIPE",
    "RESNET_RECIPE",
    "SHIPPED_DIR",
    "fashion_mnist_model",
    "fashion_mnist_model_record",
    "shipped_record",
    "small_cnn_fashion_mnist",
    "small_cnn_fashion_mnist_record",
    "write_shipped",
]

_NAME = "small-cnn-fashion-mnist"
#: the folder of the SmallCNN weights that ship with the package
SHIPPED_DIR = Path(__file__).with_name("reference")
#: the shipped record also holds the accuracy on this many first test images (a quick check)
CHECK_IMAGES = 500


@dataclass(frozen=True)
class FashionMNISTRecipe:
    """How the reference SmallCNN is trained; every field is part of the cache key.

    The model sees images normalised with the Fashion-MNIST mean/std
    (:func:`cleargrad.data.normalize_fashion_mnist`, or
    ``load_fashion_mnist(..., normalize=True)``).

    Attributes:
        width: SmallCNN/SmallVGG width (channels of the first block); for the ResNet-18
            the channel multiplier of 64-128-256-512.
        epochs: passes over the training set.
        batch_size: batch size.
        lr: peak Adam learning rate (cosine decay to 0).
        weight_decay: Adam weight decay.
        seed: seed of initialisation and shuffling.
        train_limit / test_limit: use only the first images of each split (tests, smoke runs).
        max_steps: stop after this many optimiser steps (tests, smoke runs).
    """

    width: float = 16
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    seed: int = 0
    train_limit: int | None = None
    test_limit: int | None = None
    max_steps: int | None = None

    def config(self, model: str = "small-cnn") -> dict[str, Any]:
        """The JSON configuration hashed into the cache key (``model``: the architecture)."""
        return {
            "model": model,
            "data": "fashion-mnist",
            "normalize": [FASHION_MNIST_MEAN, FASHION_MNIST_STD],
            "in_channels": 1,
            "num_classes": 10,
            **asdict(self),
        }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_record(recipe: FashionMNISTRecipe | None = None) -> dict[str, Any] | None:
    """The JSON record of the SmallCNN weights shipped in the package when they were
    trained with ``recipe`` (default: the reference recipe), else None.

    The record holds ``config`` (the recipe's :meth:`FashionMNISTRecipe.config`), ``key``
    (its :func:`~cleargrad.models.config_key`), ``test_accuracy``, ``sha256`` of the
    safetensors file and how it was trained; ``"source": "shipped"`` marks it.
    """
    rec_path = SHIPPED_DIR / f"{_NAME}.json"
    if not rec_path.is_file() or not (SHIPPED_DIR / f"{_NAME}.safetensors").is_file():
        return None
    rec = json.loads(rec_path.read_text())
    if rec.get("key") != config_key((recipe or FashionMNISTRecipe()).config()):
        return None
    return {**rec, "source": "shipped"}


def _load_shipped(model: torch.nn.Module, recipe: FashionMNISTRecipe) -> dict[str, Any] | None:
    """Load the shipped SmallCNN weights into ``model`` when they match ``recipe`` (strict
    keys and shapes, file checked against its SHA-256); None when there are none for it."""
    from safetensors.torch import load_file

    from ..errors import DataError

    rec = shipped_record(recipe)
    if rec is None:
        return None
    path = SHIPPED_DIR / f"{_NAME}.safetensors"
    if _sha256(path) != rec.get("sha256"):
        raise DataError(f"the shipped weights {path} do not match their record (SHA-256); reinstall cleargrad")
    p = next(iter(model.parameters()), None)
    model.load_state_dict(load_file(path, device=str(p.device) if p is not None else "cpu"), strict=True)
    return rec


def write_shipped(
    cache_dir: str | os.PathLike | None = None, dest: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Copy the cached SmallCNN weights of the reference recipe (trained by
    :func:`small_cnn_fashion_mnist`) into ``dest`` (default :data:`SHIPPED_DIR`) with their
    record, SHA-256 and the accuracy on the first :data:`CHECK_IMAGES` test images.
    Returns the record written.

    Raises:
        DataError: the reference recipe has not been trained into the cache yet.
    """
    from ..errors import DataError

    recipe = FashionMNISTRecipe()
    cache = WeightsCache(cache_dir)
    entry = cache.entry(_NAME, recipe.config())
    rec = cache.record(_NAME, recipe.config())
    if rec is None:
        raise DataError("the reference SmallCNN is not cached: train it first (benchmarks/train_reference_cnn.py)")
    out = Path(dest) if dest is not None else SHIPPED_DIR
    out.mkdir(parents=True, exist_ok=True)
    data = entry.weights.read_bytes()
    (out / f"{_NAME}.safetensors").write_bytes(data)
    model = SmallCNN(in_channels=1, num_classes=10, width=int(recipe.width))
    cache.load(model, _NAME, recipe.config())
    head = load_fashion_mnist("test", normalize=True, limit=CHECK_IMAGES)
    rec = {
        **rec,
        "sha256": hashlib.sha256(data).hexdigest(),
        "recipe": asdict(recipe),
        f"test_accuracy_first_{CHECK_IMAGES}": evaluate_accuracy(model.eval(), head),
    }
    (out / f"{_NAME}.json").write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    return rec


def small_cnn_fashion_mnist_record(
    cache_dir: str | os.PathLike | None = None, recipe: FashionMNISTRecipe | None = None
) -> dict[str, Any] | None:
    """The JSON record (config, test accuracy, training time) of the model that
    :func:`small_cnn_fashion_mnist` returns for ``recipe``: the cached one, else the
    shipped one (``"source": "shipped"``), or None when it is not trained yet."""
    recipe = recipe or FashionMNISTRecipe()
    return WeightsCache(cache_dir).record(_NAME, recipe.config()) or shipped_record(recipe)


def small_cnn_fashion_mnist(
    cache_dir: str | os.PathLike | None = None,
    recipe: FashionMNISTRecipe | None = None,
    *,
    data_root: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    retrain: bool = False,
    quiet: bool = False,
) -> SmallCNN:
    """A :class:`SmallCNN` trained on Fashion-MNIST, in eval mode.

    The default recipe's weights ship with the package (90.35 % test accuracy; see
    :func:`shipped_record`) and load at once. For another recipe (or with
    ``retrain=True``) the first call trains the model (the default recipe takes a few
    minutes on two CPU cores; Adam, cosine schedule, seeded) and saves the weights with
    safetensors under ``<cache>/weights/`` with a JSON record of the config and test
    accuracy; later calls with the same recipe load them (milliseconds). Lookup order:
    the cache, then the shipped weights, then training. Inputs must be normalised with
    the Fashion-MNIST mean/std (``load_fashion_mnist(..., normalize=True)``).

    Args:
        cache_dir: cache directory (default ``$CLEARGRAD_CACHE`` or ``~/.cache/cleargrad``).
        recipe: training configuration (default :class:`FashionMNISTRecipe()`).
        data_root: directory of the Fashion-MNIST IDX files (default search order of
            :func:`cleargrad.data.fashion_mnist_dir`); only read when training.
        device: where to train and return the model (default: CUDA when available, else CPU).
        retrain: train even when cached or shipped weights exist (the result goes to the
            cache, which is read before the shipped weights from then on).
        quiet: no progress bar.

    Raises:
        DataError: Fashion-MNIST is needed for training but not installed, or the cached
            or shipped files are corrupt.
    """
    model = _trained("small-cnn", recipe or FashionMNISTRecipe(), cache_dir, data_root, device, retrain, quiet)
    return cast(SmallCNN, model)  # _BUILD["small-cnn"] builds a SmallCNN


#: default recipe of the VGG-style reference model: 1 epoch on the first 20000 training images
#: (84.3 % test accuracy; kept short for 2-core machines; images 55000.. stay unseen for validation)
VGG_RECIPE = FashionMNISTRecipe(width=16, epochs=1, train_limit=20000)
#: default recipe of the reference ResNet-18: width 0.125 (8-16-32-64 channels), 1 epoch on the
#: first 12000 training images (80.7 % test accuracy; short for 2-core machines)
RESNET_RECIPE = FashionMNISTRecipe(width=0.125, epochs=1, train_limit=12000)

_BUILD = {
    "small-cnn": lambda r: SmallCNN(in_channels=1, num_classes=10, width=int(r.width)),
    "small-vgg": lambda r: SmallVGG(in_channels=1, num_classes=10, width=int(r.width)),
    "cifar-resnet18": lambda r: cifar_resnet18(in_channels=1, num_classes=10, width=r.width),
}
_DEFAULT_RECIPES = {"small-cnn": FashionMNISTRecipe(), "small-vgg": VGG_RECIPE, "cifar-resnet18": RESNET_RECIPE}


def _check_arch(arch: str) -> str:
    if arch not in _BUILD:
        raise ConfigError(f"unknown reference model {arch!r}; choose from {sorted(_BUILD)}")
    return arch


def fashion_mnist_model_record(
    arch: str, cache_dir: str | os.PathLike | None = None, recipe: FashionMNISTRecipe | None = None
) -> dict[str, Any] | None:
    """The cached JSON record of the model :func:`fashion_mnist_model` returns, or None."""
    arch = _check_arch(arch)
    recipe = recipe or _DEFAULT_RECIPES[arch]
    return WeightsCache(cache_dir).record(_name(arch), recipe.config(arch))


def fashion_mnist_model(
    arch: str,
    cache_dir: str | os.PathLike | None = None,
    recipe: FashionMNISTRecipe | None = None,
    *,
    data_root: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    retrain: bool = False,
    quiet: bool = False,
) -> torch.nn.Module:
    """A reference model trained on Fashion-MNIST (trained on first use, then cached), in eval mode.

    Args:
        arch: ``"small-cnn"`` (:class:`SmallCNN`, GAP-linear; same weights as
            :func:`small_cnn_fashion_mnist`), ``"small-vgg"`` (:class:`SmallVGG`, nonlinear
            fully connected head; default :data:`VGG_RECIPE`) or ``"cifar-resnet18"``
            (:func:`cifar_resnet18` with one input channel; default :data:`RESNET_RECIPE`).
        cache_dir, recipe, data_root, device, retrain, quiet: as in
            :func:`small_cnn_fashion_mnist`.

    The record (:func:`fashion_mnist_model_record`) holds the test accuracy. Inputs must be
    normalised with the Fashion-MNIST mean/std.
    """
    arch = _check_arch(arch)
    return _trained(arch, recipe or _DEFAULT_RECIPES[arch], cache_dir, data_root, device, retrain, quiet)


def _name(arch: str) -> str:
    return f"{arch}-fashion-mnist"


def _trained(
    arch: str,
    recipe: FashionMNISTRecipe,
    cache_dir: str | os.PathLike | None,
    data_root: str | os.PathLike | None,
    device: torch.device | str | None,
    retrain: bool,
    quiet: bool,
) -> torch.nn.Module:
    config = recipe.config(arch)
    name = _name(arch)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cache = WeightsCache(cache_dir)
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, caller's RNG untouched
        torch.manual_seed(recipe.seed)
        model = _BUILD[arch](recipe).to(dev)
    if not retrain and cache.load(model, name, config) is not None:
        return model.eval()
    if not retrain and arch == "small-cnn" and _load_shipped(model, recipe) is not None:
        return model.eval()
    train = load_fashion_mnist("train", data_root, normalize=True, limit=recipe.train_limit)
    test = load_fashion_mnist("test", data_root, normalize=True, limit=recipe.test_limit)
    if dev.type != "cpu":
        train, test = train.to(dev), test.to(dev)
    result = train_classifier(
        model,
        train,
        recipe.epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        max_steps=recipe.max_steps,
        seed=recipe.seed,
        quiet=quiet,
    )
    accuracy = evaluate_accuracy(model, test, quiet=quiet)
    cache.save(
        model,
        name,
        config,
        {
            "test_accuracy": accuracy,
            "test_images": len(test),
            "train_images": len(train),
            "steps": result.steps,
            "train_seconds": round(result.seconds, 2),
            "epoch_losses": result.losses,
            "device": str(dev),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    return model.eval()
