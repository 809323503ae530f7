"""Building a run from the command's words: numbers, targets, the model, images, explainers.

What ``cleargrad explain``, ``evaluate`` and ``gad fit`` share before the engine runs:
parsing option values, loading the model named by a spec, choosing reference images,
restricting an image set, building the explainers (``gad:BASE`` ones share one fitted
GAD). The command line (:mod:`cleargrad.cli`) parses arguments and prints; everything
here is usable from Python.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .console import UI
from .targets import parse_target

__all__ = [
    "builtin_class_names",
    "build_explainers",
    "file_digest",
    "first_images",
    "gad_identity",
    "load_run_model",
    "only_classes",
    "param_names",
    "parse_floats",
    "parse_metric_options",
    "parse_target",
    "reference_images",
    "report_skipped",
    "resolve_run_device",
    "subset",
]


def parse_floats(text: str | None, name: str) -> tuple[float, ...] | None:
    """``"0.5,0.5"`` -> ``(0.5, 0.5)`` (None stays None); ``name`` is the option, for the message."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--{name} must be comma-separated numbers, got {text!r}") from None


def file_digest(path: Path | None) -> str | None:
    """SHA-256 (16 hex digits) of a file's bytes (of ``model.safetensors`` for a
    ``cleargrad train`` run folder); None for no file."""
    if path is None:
        return None
    from .modelspec import weights_file

    path = weights_file(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def resolve_run_device(text: str) -> Any:
    """``--device`` as a torch device (``auto``: CUDA when available, else CPU)."""
    from .devices import resolve_device

    return resolve_device(text)


def load_run_model(spec: str, weights: Path | None, seed: int, device: Any, ui: UI) -> Any:
    """The model named by ``spec`` (with ``weights``), on ``device``, in eval mode."""
    import torch

    from ..core.names import dashed_key
    from .modelspec import load_model

    if dashed_key(spec) == "small-cnn-fashion-mnist" and weights is None:
        from ..models import small_cnn_fashion_mnist

        ui.info("loading the reference SmallCNN (its Fashion-MNIST weights ship with cleargrad)")
        model: torch.nn.Module = small_cnn_fashion_mnist(device="cpu", quiet=ui.quiet)
    else:
        model = load_model(spec, weights, seed=seed)
        if weights is None and spec.startswith("hf:"):
            from ..models.hf import hf_has_weights

            if not hf_has_weights(spec[3:].strip()):
                ui.warn(f"HuggingFace model {spec!r} is built from its config with random weights (no "
                        "model.safetensors beside the config.json; pass --weights FILE or a save_pretrained folder)")
        elif weights is None:
            kind = "model factory" if ":" in spec else "built-in model"
            ui.warn(f"{kind} {spec!r} without --weights has random weights (pass --weights FILE or a train run folder)")
    return model.to(torch.device(device)).eval()


def gad_identity(gad: Path | None) -> dict[str, Any] | None:
    """The ``--gad`` folder and its fit's key (so a refit folder is a new run, not a resumed one)."""
    if gad is None:
        return None
    import json

    record = gad / "fit.json"
    key = json.loads(record.read_text()).get("key") if record.is_file() else None
    return {"path": str(gad), "fit_key": key or file_digest(gad / "support.safetensors")}


def builtin_class_names(spec: str, weights: Path | None = None) -> list[str] | None:
    """Class names of a built-in model trained on Fashion-MNIST, or of the ``cleargrad
    train`` run whose folder ``weights`` is (or lies in)."""
    from .modelspec import train_run

    run = train_run(weights)
    if run is not None and isinstance(run.get("classes"), list) and run["classes"]:
        return [str(c) for c in run["classes"]]
    from ..core.names import dashed_key

    if dashed_key(spec) == "small-cnn-fashion-mnist":
        from ..data import FASHION_MNIST_CLASSES

        return list(FASHION_MNIST_CLASSES)
    return None


def build_explainers(
    net: Any, names: list[str], gad_dir: Path | None, layer: str, reshape: str, opts: Any, refs: Any,
    output: Any = None,
) -> list[Any]:
    """The explainers of ``names``; ``gad:BASE`` ones share the GAD loaded from ``gad_dir``;
    ``output``: the output selector of every method that takes one (``--output``)."""
    from .explainers import build_explainer, build_gad_explainer, is_gad

    fitted = None
    if any(is_gad(n) for n in names):
        if gad_dir is None:
            raise ConfigError(
                "methods gad:BASE need --gad DIR, a folder written by `cleargrad gad fit --out DIR`"
            )
        from .gad_fit import load_fitted_gad

        fitted = load_fitted_gad(gad_dir, net)
    elif gad_dir is not None:
        raise ConfigError("--gad is only used by methods gad:BASE (e.g. --method gad:saliency)")
    out = []
    for n in names:
        if is_gad(n):
            out.append(
                build_gad_explainer(
                    net, n, fitted, layer=layer, reshape=reshape, options=opts, references=refs, output=output
                )
            )
        else:
            out.append(
                build_explainer(net, n, layer=layer, reshape=reshape, options=opts, references=refs, output=output)
            )
    return out


def reference_images(data: Any, prep: Any, k: int = 16) -> Any:
    """A fixed set of reference images for methods that sample baselines."""
    import torch

    x, _ = data.load(list(range(min(k, len(data)))))
    if x is None:
        return torch.zeros(1, 1 if prep.grayscale else 3, prep.size, prep.size)
    return x


def report_skipped(ui: UI, skipped: dict[str, str]) -> None:
    """List the unreadable or non-image files an image set skipped (stderr)."""
    if skipped:
        ui.err.print(f"skipped {len(skipped)} unreadable or non-image file(s):", markup=False)
        for src, reason in sorted(skipped.items()):
            ui.err.print(f"  {src}: {reason}", markup=False)


def only_classes(data: Any, text: str) -> Any:
    """``data`` restricted to images whose label is one of ``text`` (indices or class names)."""
    from .explain_run import class_names_from
    from .gad_fit import parse_classes

    wanted = set(parse_classes(text, class_names_from(data)) or ())
    keep = [i for i, r in enumerate(data.records) if r.label in wanted]
    if not keep:
        raise ConfigError(f"--classes {text}: no image of those classes in {data.description}")
    return subset(data, keep, f"{data.description}, classes {text}")


def first_images(data: Any, n: int) -> Any:
    """The first ``n`` images of ``data``."""
    return subset(data, list(range(min(n, len(data)))), data.description)


def subset(data: Any, keep: list[int], description: str) -> Any:
    """The images ``keep`` (indices) of ``data``, described as ``description``."""
    import dataclasses

    import torch

    tensors = None if data.tensors is None else data.tensors[torch.tensor(keep, dtype=torch.long)]
    return dataclasses.replace(
        data, records=[data.records[i] for i in keep], tensors=tensors, description=description
    )


def param_names(fn: Callable[..., Any]) -> set[str]:
    """The parameter names of ``fn``."""
    import inspect

    return set(inspect.signature(fn).parameters)


def parse_metric_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["insertion.step=7"]`` -> ``{"insertion": {"step": 7}}`` (values parsed as JSON, else strings)."""
    import json

    from ..core.names import snake_key

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        metric, dot, name = key.strip().rpartition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--metric-option {item!r} must look like METRIC.KEY=VALUE")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(snake_key(metric), {})[name] = parsed
    return out

