"""Built-in architectures by name, for the command line and configuration files."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from torch import nn

from ..core.names import dashed_key
from ..errors import ConfigError
from .mobilenet import cifar_mobilenet_v2
from .resnet import cifar_resnet18
from .small_cnn import SmallCNN
from .vgg import SmallVGG

__all__ = ["build_model", "model_names"]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "small-cnn": SmallCNN,
    "small-vgg": SmallVGG,
    "cifar-resnet18": cifar_resnet18,
    "cifar-mobilenet-v2": cifar_mobilenet_v2,
}


def model_names() -> list[str]:
    """The names :func:`build_model` accepts."""
    return sorted(_BUILDERS)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a randomly initialised built-in model by name.

    Names: ``"small-cnn"`` (:class:`SmallCNN`), ``"small-vgg"`` (:class:`SmallVGG`), ``"cifar-resnet18"``
    (:func:`cifar_resnet18`), ``"cifar-mobilenet-v2"`` (:func:`cifar_mobilenet_v2`);
    underscores are accepted for hyphens and case is ignored. Keyword arguments go to
    the builder (``in_channels``, ``num_classes``, ``width``).

    Raises:
        ConfigError: unknown name (the message lists the known ones), or an argument the
            builder does not take.
    """
    key = dashed_key(name)
    if key not in _BUILDERS:
        close = difflib.get_close_matches(key, list(_BUILDERS), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown model {name!r}.{hint} Built-in models: {', '.join(model_names())}.")
    try:
        return _BUILDERS[key](**kwargs)
    except TypeError as e:
        raise ConfigError(f"bad arguments for model {key!r}: {e}") from None
