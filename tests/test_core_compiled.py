"""Opt-in compiled metric passes: equal to eager, one-line fallback to eager on failure."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch

import cleargrad.runtime.compiled as compiled_mod
from cleargrad.core import CompiledForward, compiled_forward
from cleargrad.metrics import SharedBatch
from cleargrad.models import SmallCNN


def _model_and_maps():
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=4, width=2).eval()
    x = torch.randn(3, 1, 8, 8)
    maps = {"a": torch.rand(3, 1, 8, 8), "b": torch.rand(3, 1, 8, 8)}
    return model, x, maps


def _scores(model, x, maps, scorer=None):
    shared = SharedBatch(model, x, scorer=scorer)
    t = shared.targets(None)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, opts in (("insertion", {"step": 16}), ("deletion", {"step": 16}), ("average_drop", {}),
                           ("infidelity", {"n_perturb": 4})):
            for m, v in shared.score(name, maps, t, opts, torch.Generator().manual_seed(1)).items():
                out[(name, m)] = v
    return out


def test_compile_false_is_the_model_itself():
    model, _, _ = _model_and_maps()
    assert compiled_forward(model, False) is model


def test_failing_compile_falls_back_to_eager_with_one_line(monkeypatch):
    model, x, maps = _model_and_maps()

    def broken(*a, **k):
        raise RuntimeError("no compiler\nsecond line")

    monkeypatch.setattr(compiled_mod.torch, "compile", broken)
    seen = []
    scorer = compiled_forward(model, True, on_fallback=seen.append)
    assert isinstance(scorer, CompiledForward)
    assert len(seen) == 1 and "\n" not in seen[0] and "no compiler" in seen[0]
    eager = _scores(model, x, maps)
    got = _scores(model, x, maps, scorer)
    assert got.keys() == eager.keys()
    for k in eager:
        torch.testing.assert_close(got[k], eager[k], equal_nan=True)
    assert len(seen) == 1


def test_failing_compiled_call_falls_back_once(monkeypatch):
    model, x, _ = _model_and_maps()
    calls = []

    def fake_compile(m, **k):
        def run(*a, **kw):
            calls.append(1)
            raise RuntimeError("backend exploded")

        return run

    monkeypatch.setattr(compiled_mod.torch, "compile", fake_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile failed, running eagerly: RuntimeError: backend exploded"):
        scorer = compiled_forward(model, "inductor")
        y = scorer(x)
    torch.testing.assert_close(y, model(x))
    scorer(x)
    assert len(calls) == 1  # never retried after the first failure


def _inductor_unavailable() -> str | None:
    if not hasattr(torch, "compile"):
        return "this torch has no torch.compile"
    if not any(shutil.which(c) for c in ("cc", "gcc", "g++", "clang")):
        return "no C/C++ compiler on PATH (inductor needs one on CPU)"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_inductor_unavailable() is not None, reason=str(_inductor_unavailable()))
def test_inductor_compiled_metrics_equal_eager():
    """Real compilation (about 2 min on two loaded cores, once per session)."""
    model, x, maps = _model_and_maps()
    seen = []
    scorer = compiled_forward(model, True, on_fallback=seen.append)
    got = _scores(model, x, maps, scorer)
    assert not seen, seen
    eager = _scores(model, x, maps)
    for k in eager:
        torch.testing.assert_close(got[k], eager[k], equal_nan=True, rtol=1e-4, atol=1e-5)
