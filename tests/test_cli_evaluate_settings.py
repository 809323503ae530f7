"""``cleargrad evaluate`` is one settings object: every option is a field with the same default."""

from __future__ import annotations

import dataclasses
import inspect

from cleargrad.cli.app import evaluate_cmd
from cleargrad.evaluation.run import EvaluateSettings

RENAMED = {"compile_": "compile"}  # a Python keyword-like clash on the command's side
NOT_SETTINGS = {"quiet", "debug"}  # how the command prints, not what it computes


def test_every_evaluate_option_is_a_settings_field_with_the_same_default():
    fields = {f.name: f for f in dataclasses.fields(EvaluateSettings)}
    params = inspect.signature(evaluate_cmd).parameters
    seen = set()
    for name, p in params.items():
        if name in NOT_SETTINGS:
            continue
        key = RENAMED.get(name, name)
        assert key in fields, f"--{name} has no EvaluateSettings field"
        seen.add(key)
        f = fields[key]
        if p.default is inspect.Parameter.empty:
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, key
        elif f.default_factory is not dataclasses.MISSING:
            assert p.default is None and f.default_factory() == [], key  # repeatable options: None on the CLI
        else:
            assert f.default == p.default, key
    assert seen == set(fields), f"fields without an option: {set(fields) - seen}"
