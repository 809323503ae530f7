"""One settings object for an evaluation: what ``cleargrad evaluate`` takes, field for field.

The command line, the demo, ``cleargrad train --evaluate`` and the benchmarks build an
:class:`EvaluationSettings` and pass it down; the engine reads its options from it
(:attr:`cleargrad.evaluation.engine.EvalPlan.run`). An option is declared twice: once as
the command's flag (``cli/app.py``) and once here, as a field whose ``record`` metadata
says how it enters the run's record, the dict hashed into the results store's settings
hash (so a rerun with the same settings resumes the same rows):

- ``"value"``: recorded under the field's name (a path as its string);
- ``"unless_default"``: recorded only when it differs from the default (options added
  after stores existed: older stores keep their hash);
- absent: not recorded as given, because it does not change a value (``device``,
  ``gallery``, ``compile`` ...) or because the run records what it resolved to instead
  (``dataset`` -> the image set's description, ``option`` -> every method's options,
  ``size``/``mean``/... -> the preprocessing, ``target`` -> the parsed rule).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["EvaluationSettings"]

_VALUE = {"record": "value"}
_UNLESS_DEFAULT = {"record": "unless_default"}


@dataclass(kw_only=True)
class EvaluationSettings:
    """Everything an evaluation takes (field = ``cleargrad evaluate`` option without the dashes).

    ``model``: a model spec (``package.module:factory``, ``file.py:factory`` or a built-in
    name); ``dataset``: ``fashion-mnist`` or an image folder; ``methods`` / ``metrics``:
    comma-separated names; ``option`` and ``metric_option`` hold ``METHOD.KEY=VALUE`` /
    ``METRIC.KEY=VALUE`` strings; ``target``: ``"auto"`` (the prediction), ``"label"``, a
    class index or a target spec (``softmax:3``, ``seg:15``, ``box:0``, ...; see
    :func:`cleargrad.evaluation.targets.parse_target`); ``output``: the key, index or
    attribute of the model's output that is scored (None: the output as it is);
    ``device``: ``auto``, ``cpu``, ``cuda``, ``cuda:K`` (under ``torchrun`` on several GPUs,
    ``auto``/``cuda`` mean ``cuda:LOCAL_RANK``); ``gallery``: images (the
    first by id) whose overlays are stored for the report; ``overlays``: a folder where
    every overlay is also written; ``compile`` runs the metrics' forward passes through
    ``torch.compile`` (True or a backend name); ``metric_batch_size`` bounds the images
    per metric forward pass (memory); ``fold_batchnorm`` runs the metrics' passes, and
    Score-CAM's masked passes, on a copy with eval-mode batch norms folded into the layers
    before them (faster, equal to float rounding); False also sets Score-CAM's
    ``fold_batchnorm`` option unless given; ``class_names``: a text file of class names,
    one per line (line i names class i), for images whose label has no name or a
    different one; ``random_control`` adds the random-map control (the method
    ``random``: uniform noise shaped like the image, drawn per batch from a generator
    seeded by ``(seed, batch, "random")``, the same map for every metric) to the compared
    methods, so that the report and the summary can say which metrics cannot tell the
    methods from a random map (:func:`cleargrad.evaluation.verdict_table`).

    Code that builds the model, images and explainers itself (the demo, the benchmarks)
    still fills ``model`` ... ``store`` with what it runs; the engine reads only the
    options.
    """

    model: str = field(metadata=_VALUE)
    dataset: str
    methods: str
    metrics: str
    store: Path
    weights: Path | None = field(default=None, metadata=_VALUE)
    limit: int | None = field(default=None, metadata=_VALUE)
    target: str | int = "auto"
    layer: str = field(default="auto", metadata=_VALUE)
    reshape: str = field(default="auto", metadata=_UNLESS_DEFAULT)
    reference: str | None = field(default=None, metadata=_VALUE)
    option: list[str] = field(default_factory=list)
    metric_option: list[str] = field(default_factory=list)
    gallery: int = 8
    overlays: Path | None = None
    gad: Path | None = None
    classes: str | None = field(default=None, metadata=_VALUE)
    size: int | None = None
    resize: str = "crop"
    crop_fraction: float | None = None
    grayscale: bool | None = None
    mean: str | None = None
    std: str | None = None
    batch_size: int = field(default=16, metadata=_VALUE)
    seed: int = field(default=0, metadata=_VALUE)
    device: str = "auto"
    compile: bool | str = False
    metric_batch_size: int | None = field(default=None, metadata=_UNLESS_DEFAULT)
    fold_batchnorm: bool = True
    class_names: Path | None = field(default=None, metadata=_UNLESS_DEFAULT)
    output: str | None = field(default=None, metadata=_UNLESS_DEFAULT)
    #: not recorded: the control adds its own rows (method ``random``, no user option reaches
    #: it) and changes no other value, so its rows join the run's settings hash; adding it to
    #: a finished run computes only the control's rows.
    random_control: bool = False

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_command(cls, params: Mapping[str, Any], ignore: Iterable[str] = ()) -> EvaluationSettings:
        """The settings from a command's parameters by name (a trailing ``_``, as in
        ``compile_``, is dropped; a repeatable option's None is an empty list). Names in
        ``ignore`` (how the command prints) are skipped; any other unknown name is an error."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        skip = set(ignore)
        kw: dict[str, Any] = {}
        for name, value in params.items():
            if name in skip:
                continue
            key = name.rstrip("_")
            if key not in names:
                raise ConfigError(f"{name!r} is not an evaluation setting; valid: {', '.join(names)}")
            if value is None and names[key].default_factory is list:
                value = []
            kw[key] = list(value) if isinstance(value, tuple | list) else value
        return cls(**kw)

    def with_options(self, **options: Any) -> EvaluationSettings:
        """A copy with ``options`` (field names) replaced; an unknown name lists the valid ones."""
        unknown = sorted(set(options) - set(self.field_names()))
        if unknown:
            raise ConfigError(
                f"unknown evaluation setting(s) {', '.join(unknown)}; valid: {', '.join(self.field_names())}"
            )
        return dataclasses.replace(self, **options)

    def record(self, command: str = "evaluate", **resolved: Any) -> dict[str, Any]:
        """The run's record (hashed into the store's settings hash): ``command``, every field
        by its ``record`` metadata, then ``resolved`` (what the run resolved options to)."""
        out: dict[str, Any] = {"command": command}
        for f in dataclasses.fields(self):
            how = f.metadata.get("record")
            value = getattr(self, f.name)
            if how is None or (how == "unless_default" and value == f.default):
                continue
            out[f.name] = str(value) if isinstance(value, Path) else value
        out.update(resolved)
        return out
