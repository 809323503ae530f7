"""`cleargrad gad fit` builds one :class:`GadFitSettings` and passes it to ``run_gad_fit``:
the settings' fields are the command's options (same defaults), and ``run_gad_fit``
takes the settings object instead of a flat list of option keywords."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from cleargrad.cli.app import gad_fit_cmd
from cleargrad.evaluation.gad_fit import GadFitSettings, run_gad_fit

#: settings field -> the command's parameter, where the names differ
_CLI_NAME = {"n_support": "support"}


def test_every_field_is_an_option_of_the_command_with_its_default() -> None:
    cli = inspect.signature(gad_fit_cmd).parameters
    for f in dataclasses.fields(GadFitSettings):
        param = cli[_CLI_NAME.get(f.name, f.name)]
        if f.default is dataclasses.MISSING:  # a required option
            assert param.default is inspect.Parameter.empty, f.name
        else:
            assert param.default == f.default, f.name


def test_run_gad_fit_takes_the_settings_object() -> None:
    params = inspect.signature(run_gad_fit).parameters
    assert list(params)[0] == "settings"
    fields = {f.name for f in dataclasses.fields(GadFitSettings)}
    # no option travels beside the settings object (only resolved objects: model, prep, names, ui)
    assert not (set(params) - {"settings"}) & (fields | {"classes_text", "groups_text"})
    with pytest.raises(TypeError):
        run_gad_fit(dataset="fashion-mnist", out=Path("x"), model=None, model_spec={}, prep=None,
                    class_names=None, ui=None)

