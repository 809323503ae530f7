"""Opt-in compiled metric passes: equal to eager, one-line fallback to eager on failure."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch

import cleargrad.core.compiled as compiled_mod
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



def test_score_cam_masked_passes_go_through_the_hook_free_runner_and_equal_eager():
    from cleargrad import ScoreCAM
    from cleargrad.core import hook_free_passes, hook_free_runner

    model, x, _ = _model_and_maps()
    cam = ScoreCAM(model)

    class Counting(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.images = inner, 0

        def forward(self, z):
            self.images += z.shape[0]
            return self.inner(z)

    cam.attribute(x, target=1)  # the first call also probes the layer once (one image)
    seen: list[int] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    eager = cam.attribute(x, target=1)
    eager_images = sum(seen)
    seen.clear()
    runner = Counting(model)
    with hook_free_passes(model, runner):
        assert hook_free_runner(model) is runner and hook_free_runner(torch.nn.Linear(1, 1)) is not runner
        got = cam.attribute(x, target=1)
    assert hook_free_runner(model) is model  # the scope ended
    torch.testing.assert_close(got, eager)
    # the same passes ran; all but the one clean pass of the 3 images (with hooks) through the runner
    assert sum(seen) == eager_images and runner.images == eager_images - 3 > 0


@pytest.mark.slow
@pytest.mark.skipif(_inductor_unavailable() is not None, reason=str(_inductor_unavailable()))
def test_inductor_compiled_score_cam_equals_eager():
    from cleargrad import ScoreCAM
    from cleargrad.core import hook_free_passes

    model, x, _ = _model_and_maps()
    seen = []
    runner = compiled_forward(model, True, on_fallback=seen.append)
    eager = ScoreCAM(model).attribute(x, target=1)
    with hook_free_passes(model, runner):
        got = ScoreCAM(model).attribute(x, target=1)
    assert not seen, seen
    torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-5)


def test_evaluation_with_compile_runs_score_cam_masked_passes_through_the_compiled_runner(tmp_path, monkeypatch):
    """The engine hands its compiled runner to Score-CAM's masked passes (a counting stand-in
    for the compiled module here) and the rows equal an eager run's."""
    import cleargrad.cli.engine as engine
    from cleargrad.cli.console import UI
    from cleargrad.cli.explainers import build_explainer, load_registries
    from cleargrad.cli.images import ImageRecord, ImageSet, Preprocess
    from cleargrad.cli.metric_runner import metric_runner
    from cleargrad.store import ResultStore

    load_registries()
    model, _, _ = _model_and_maps()
    x = torch.randn(4, 1, 8, 8)
    runners = []

    class Counting(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.images = inner, 0

        def forward(self, z):
            self.images += z.shape[0]
            return self.inner(z)

    def fake_compile(m, compile, **kw):
        if not compile:
            return m
        runners.append(Counting(m))
        return runners[-1]

    monkeypatch.setattr(engine, "compiled_forward", fake_compile)
    rows = {}
    for compile in (False, True):
        recs = [ImageRecord(f"img{i}", f"mem/{i}", None, None) for i in range(4)]
        data = ImageSet(recs, Preprocess(8, True, (0.5,), (0.5,)), tensors=x, description="t")
        with ResultStore(tmp_path / f"r{compile}.sqlite") as st:
            plan = engine.EvalPlan(
                model=model, images=data, store=st, settings=st.record_run({"c": compile}, {}),
                preprocess=data.preprocess, explainers=[build_explainer(model, "scorecam")],
                metrics=[metric_runner("sparseness", None)], batch_size=2, gallery=0, compile=compile,
            )
            engine.run_evaluation(plan, UI(quiet=True))
            rows[compile] = sorted((r.image_id, r.method, r.metric, r.value) for r in st.results())
    (runner,) = runners
    assert runner.images > 4  # Score-CAM's masked images (the metric, sparseness, runs no pass)
    assert rows[True] == rows[False] and len(rows[True]) == 4
