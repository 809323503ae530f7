"""HuggingFace ``transformers`` image classifiers built from a local config (no download).

cleargrad explains a HuggingFace model as it is: ``output=None`` selects the ``logits`` of
the ``ImageClassifierOutput`` it returns (:func:`cleargrad.core.targets.default_output`),
``layer="auto"`` reads its token layers, and the attention methods read its attention
probabilities under the default ``"sdpa"`` and the ``"eager"`` implementation. This module
only builds such a model from a ``config.json`` (the command line's ``--model hf:PATH``):

>>> model = hf_model("my-vit/config.json")       # random init from the config
>>> model = hf_model("my-vit")                    # a save_pretrained folder: its weights too

``transformers`` is optional: ``pip install cleargrad[hf]``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from ..errors import ConfigError, DataError

__all__ = ["hf_model", "hf_has_weights", "hf_image_size", "hf_normalization"]

_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def _transformers() -> ModuleType:
    try:
        import transformers
    except ImportError as e:
        raise ConfigError(
            "HuggingFace models need the transformers package: pip install 'cleargrad[hf]'"
        ) from e
    return transformers


def _config_file(source: str | Path) -> Path:
    path = Path(source).expanduser()
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        where = f"{path} has no config.json" if path.is_dir() else f"{path} does not exist"
        raise DataError(
            f"HuggingFace model config not found: {where}; give a config.json file or a folder holding one "
            "(config.save_pretrained(folder) writes it)"
        )
    return file


def _model_class(transformers: ModuleType, config: Any) -> Any:
    """The class named by the config's ``architectures`` when it is an image classifier of
    ``transformers``, else the image-classification auto class."""
    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, str(name), None)
        if isinstance(cls, type) and issubclass(cls, nn.Module) and "ImageClassification" in name:
            return cls
    return transformers.AutoModelForImageClassification


def hf_model(source: str | Path | Any, *, attn_implementation: str | None = None) -> nn.Module:
    """A HuggingFace image classifier in eval mode, from a config or a local folder.

    Args:
        source: a ``transformers`` config object (e.g. ``ViTConfig(...)``), a ``config.json``
            file, or a folder holding one (``save_pretrained``); a folder that also holds
            ``model.safetensors`` gives the model with those weights (read locally, never
            downloaded), anything else a randomly initialised model (seed it with
            ``torch.manual_seed`` first).
        attn_implementation: ``"sdpa"``, ``"eager"``, ...; None keeps the library's default
            (``"sdpa"``, which the attention methods read as well as ``"eager"``).

    The class is the config's ``architectures`` entry when it is an image classifier of
    ``transformers`` (``ViTForImageClassification``, ``SwinForImageClassification``, ...),
    else ``AutoModelForImageClassification``.

    Raises:
        ConfigError: transformers is not installed, or the config is no image classifier's.
        DataError: the config file does not exist or cannot be read.
    """
    transformers = _transformers()
    kw: dict[str, Any] = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    if isinstance(source, transformers.PretrainedConfig):
        config, folder = source, None
    else:
        file = _config_file(source)
        folder = file.parent if Path(source).expanduser().is_dir() else None
        try:
            config = transformers.AutoConfig.from_pretrained(str(file))
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"cannot read the HuggingFace config {file}: {' '.join(str(e).split())[:300]}") from e
    cls = _model_class(transformers, config)
    try:
        if folder is not None and hf_has_weights(folder):
            model = _quiet_from_pretrained(transformers, cls, folder, config, kw)
        elif cls is transformers.AutoModelForImageClassification:
            model = cls.from_config(copy.deepcopy(config), **kw)
        else:
            model = cls(copy.deepcopy(config))  # the caller's config object stays as it was
            if attn_implementation is not None:
                model.set_attn_implementation(attn_implementation)
    except ValueError as e:  # e.g. "Unrecognized configuration class ... for AutoModelForImageClassification"
        raise ConfigError(
            f"{type(config).__name__} does not describe an image classifier transformers can build: "
            f"{' '.join(str(e).split())[:300]}"
        ) from e
    return model.eval()


def hf_has_weights(source: str | Path) -> bool:
    """Whether ``source`` is a folder holding HuggingFace weights (``model.safetensors``),
    which :func:`hf_model` loads."""
    path = Path(source).expanduser()
    return path.is_dir() and any((path / w).is_file() for w in _WEIGHTS)


def _quiet_from_pretrained(transformers: ModuleType, cls: Any, folder: Path, config: Any, kw: dict[str, Any]) -> Any:
    """``cls.from_pretrained`` of a local folder, without its progress bar (restored after)."""
    logging = transformers.utils.logging
    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        return cls.from_pretrained(str(folder), config=config, local_files_only=True, **kw)
    finally:
        if shown:
            logging.enable_progress_bar()


def hf_normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(image_mean, image_std)`` of the ``preprocessor_config.json`` beside the local
    config a HuggingFace model was built from (``config.name_or_path``), else None. Only a
    local file is read."""
    source = getattr(getattr(model, "config", None), "name_or_path", None)
    if not isinstance(source, str) or not source:
        return None
    path = Path(source).expanduser()
    folder = path if path.is_dir() else path.parent if path.is_file() else None
    file = folder / "preprocessor_config.json" if folder is not None else None
    if file is None or not file.is_file():
        return None
    import json

    try:
        pre = json.loads(file.read_text(encoding="utf-8"))
        mean, std = pre["image_mean"], pre["image_std"]
        out = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return out if len(out[0]) == len(out[1]) and len(out[0]) in (1, 3) else None


def hf_image_size(model: nn.Module) -> int | None:
    """The square input size a HuggingFace model's config names (``config.image_size``),
    else None."""
    size = getattr(getattr(model, "config", None), "image_size", None)
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    return int(size) if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None
