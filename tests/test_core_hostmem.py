"""The host allocator's cache of freed memory is handed back above the limit, between chunks."""

from __future__ import annotations

import pytest
import torch

import cleargrad as cg
import cleargrad.runtime.batching as batching
import cleargrad.runtime.hostmem as hostmem
from cleargrad.errors import ConfigError


@pytest.fixture
def limit():
    """Restore the module's limit, level and reuse state after the test."""
    saved = hostmem._limit, hostmem._floor, hostmem._reuse, hostmem._working_set
    yield
    hostmem._limit, hostmem._floor, hostmem._reuse, hostmem._working_set = saved


class _FakeLibc:
    def __init__(self):
        self.trims = 0
        self.options: list[tuple[int, int]] = []

    def malloc_trim(self, pad):
        self.trims += 1
        return 1

    def mallopt(self, param, value):
        self.options.append((param, value))
        return 1


def test_limit_setting_and_bad_values(limit):
    cg.set_host_cache_limit(64)
    assert cg.get_host_cache_limit() == 64
    cg.set_host_cache_limit(None)
    assert cg.get_host_cache_limit() is None
    for bad in (-1, "64", True):
        with pytest.raises(ConfigError, match="host cache limit"):
            cg.set_host_cache_limit(bad)


def test_environment_value_parsing():
    assert hostmem._parse_limit("off") is None
    assert hostmem._parse_limit("64") == 64 * 2**20
    assert hostmem._parse_limit("0.5") == 2**19
    for bad in ("lots", "-3"):
        with pytest.raises(ConfigError, match="CLEARGRAD_HOST_CACHE_MB"):
            hostmem._parse_limit(bad)


def _fake_process(monkeypatch, rss_mib: int) -> tuple[_FakeLibc, list[int]]:
    """A fake glibc and a settable resident size; limit 100 MiB, no level yet."""
    fake = _FakeLibc()
    rss = [rss_mib * 2**20]
    monkeypatch.setattr(hostmem, "_libc", fake)
    monkeypatch.setattr(hostmem, "resident_bytes", lambda: rss[0])
    hostmem._floor = None
    cg.set_host_cache_limit(100)
    return fake, rss


def test_trims_only_when_resident_memory_grew_beyond_the_limit(limit, monkeypatch):
    fake, rss = _fake_process(monkeypatch, 1000)
    assert not hostmem.release_host_memory()  # the first look sets the level
    rss[0] += 100 * 2**20  # exactly the limit: kept
    assert not hostmem.release_host_memory()
    rss[0] += 1
    assert hostmem.release_host_memory() and fake.trims == 1
    assert hostmem._floor == rss[0]  # the new level is what stayed resident
    rss[0] -= 300 * 2**20  # memory went back by itself: the level follows it down
    assert not hostmem.release_host_memory()
    assert hostmem._floor == rss[0]
    rss[0] += 150 * 2**20
    assert hostmem.release_host_memory() and fake.trims == 2
    assert hostmem.release_host_memory(force=True) and fake.trims == 3
    cg.set_host_cache_limit(None)  # off: never, even forced
    rss[0] += 10**12
    assert not hostmem.release_host_memory() and not hostmem.release_host_memory(force=True)
    assert fake.trims == 3


def test_chunk_slices_release_between_chunks(monkeypatch):
    calls = []
    monkeypatch.setattr(batching, "release_host_memory", lambda: calls.append(1))
    seen = []
    for sl in batching.chunk_slices(10, 3):
        seen.append((sl.start, sl.stop, len(calls)))
    assert seen == [(0, 3, 0), (3, 6, 1), (6, 9, 2), (9, 10, 3)]  # after each chunk, not before
    assert len(calls) == 4
    calls.clear()
    assert list(batching.chunk_slices(5, None)) == [slice(0, 5)]
    assert len(calls) == 1


@pytest.mark.skipif(hostmem._libc is None, reason="needs glibc's malloc_trim and /proc (Linux)")
def test_freed_pages_go_back_to_the_system(limit):
    """Real glibc: 20,000 tensors of 16 KiB, every other one freed, leave about 160 MiB of
    holes in the heap that glibc keeps resident; the release hands most of them back."""
    hostmem.release_host_memory(force=True)
    xs = [torch.ones(4096) for _ in range(20000)]
    keep = xs[::2]
    del xs
    before = hostmem.resident_bytes()
    cg.set_host_cache_limit(1)
    assert hostmem.release_host_memory()
    after = hostmem.resident_bytes()
    assert before - after > 60 * 2**20, (before / 2**20, after / 2**20)
    assert len(keep) == 10000 and float(keep[-1][0]) == 1.0  # the live tensors are untouched


def test_evaluation_engine_releases_after_every_method_and_metric(tmp_path, monkeypatch):
    """2 batches x (2 methods + 2 metrics) steps: one look after each step (chunk loops
    inside the steps look on their own, through chunk_slices)."""
    import cleargrad.evaluation.engine as engine
    from cleargrad.evaluation.console import UI
    from cleargrad.evaluation.explainers import build_explainer, load_registries
    from cleargrad.evaluation.images import ImageRecord, ImageSet, Preprocess
    from cleargrad.evaluation.metric_runner import metric_runner
    from cleargrad.models import SmallCNN
    from cleargrad.store import ResultStore

    load_registries()
    calls = []
    monkeypatch.setattr(engine, "release_host_memory", lambda: calls.append(1))
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=3, width=2).eval()
    x = torch.randn(6, 1, 8, 8)
    recs = [ImageRecord(f"img{i}", f"mem/{i}", None, None) for i in range(6)]
    data = ImageSet(recs, Preprocess(8, True, (0.5,), (0.5,)), tensors=x, description="t")
    with ResultStore(tmp_path / "r.sqlite") as st:
        plan = engine.EvalPlan(
            model=model, images=data, store=st, settings=st.record_run({"x": 1}, {}), preprocess=data.preprocess,
            explainers=[build_explainer(model, m) for m in ("saliency", "gradcam")],
            metrics=[metric_runner("sparseness", None), metric_runner("average_drop", None)],
            batch_size=3, gallery=0,
        )
        assert engine.run_evaluation(plan, UI(quiet=True)) == 6 * 2 * 2
    assert len(calls) == 2 * (2 + 2)


def test_reuse_mode_sets_glibc_options_and_back(limit, monkeypatch):
    fake = _FakeLibc()
    monkeypatch.setattr(hostmem, "_libc", fake)
    assert cg.set_host_memory_reuse(True) and cg.host_memory_reuse()
    # M_MMAP_MAX (-4) = 0: no block is unmapped on free; M_TRIM_THRESHOLD (-1): the heap's top stays
    assert fake.options == [(-4, 0), (-1, 2**31 - 1)]
    assert cg.set_host_memory_reuse(False) and not cg.host_memory_reuse()
    assert fake.options[2:] == [(-4, 65536), (-1, 128 * 1024)]  # glibc's documented defaults
    monkeypatch.setattr(hostmem, "_libc", None)  # not glibc: nothing to set
    assert not cg.set_host_memory_reuse(True) and not cg.host_memory_reuse()


def test_reuse_mode_keeps_the_largest_working_set_between_releases(limit, monkeypatch):
    """A pass that needs 1000 MiB is trimmed once; later passes of that size keep their
    memory (no trim, so no new page faults); growth beyond it plus the limit is trimmed."""
    fake, rss = _fake_process(monkeypatch, 500)
    cg.set_host_memory_reuse(True)
    assert not hostmem.release_host_memory()  # the level
    rss[0] += 1000 * 2**20
    assert hostmem.release_host_memory() and fake.trims == 1  # first time: as without reuse
    assert hostmem._working_set == 1000 * 2**20
    rss[0] -= 1000 * 2**20  # the trim handed the freed pages back
    assert not hostmem.release_host_memory()
    for _ in range(3):  # the same pass again: it faults its pages in once, then reuses them
        rss[0] = 500 * 2**20 + 1000 * 2**20
        assert not hostmem.release_host_memory()
    assert fake.trims == 1
    rss[0] = 500 * 2**20 + 1100 * 2**20 + 1  # beyond working set + limit: trimmed
    assert hostmem.release_host_memory() and fake.trims == 2
    assert hostmem._working_set == 1100 * 2**20 + 1
    cg.set_host_memory_reuse(False)  # without reuse the working set no longer counts
    rss[0] = hostmem._floor + 100 * 2**20 + 1
    assert hostmem.release_host_memory() and fake.trims == 3


_REUSE_CHILD = """
import resource, sys, torch
import cleargrad as cg
if sys.argv[1] == "on":
    assert cg.set_host_memory_reuse(True)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    torch.ones(2**24).sum()  # 64 MiB, freed at once
f0 = faults()
for _ in range(5):
    torch.ones(2**24).sum()
print((faults() - f0) / 5)
"""


@pytest.mark.skipif(hostmem._libc is None or not hasattr(hostmem._libc, "mallopt"), reason="needs glibc (Linux)")
def test_reuse_mode_reuses_freed_large_blocks_without_page_faults():
    """Real glibc, in fresh processes (the setting is process-wide): a freed 64 MiB tensor is
    unmapped by default, so the next one faults its 16,384 pages in again; in reuse mode the
    next one reuses them."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CLEARGRAD_HOST_REUSE"}  # glibc's defaults unless asked

    def per_tensor(mode: str) -> float:
        r = subprocess.run([sys.executable, "-c", _REUSE_CHILD, mode], capture_output=True, text=True, timeout=120,
                           env=env)
        assert r.returncode == 0, r.stderr
        return float(r.stdout.split()[-1])

    default, reuse = per_tensor("off"), per_tensor("on")
    # with 4 KiB pages: about 16,384 faults per tensor by default (every page, every time);
    # relative, so that transparent huge pages (2 MiB: about 32) keep the test meaningful
    assert default >= 30, default
    assert reuse * 10 < default, (reuse, default)


@pytest.mark.parametrize("env, expected", [(None, "on"), ("off", "off"), ("on", "on")])
def test_the_command_asks_for_reuse_unless_told_not_to(monkeypatch, env, expected):
    import importlib

    cli_app = importlib.import_module("cleargrad.cli.app")  # the module (cleargrad.cli.app is also the Typer app)
    monkeypatch.setattr(cli_app, "app", lambda **kw: None)
    if env is None:
        monkeypatch.delenv("CLEARGRAD_HOST_REUSE", raising=False)
    else:
        monkeypatch.setenv("CLEARGRAD_HOST_REUSE", env)
    cli_app.main(["methods"])
    import os

    assert os.environ["CLEARGRAD_HOST_REUSE"] == expected


@pytest.mark.skipif(hostmem._libc is None or not hasattr(hostmem._libc, "mallopt"), reason="needs glibc (Linux)")
@pytest.mark.parametrize("env, on", [(None, False), ("on", True), ("off", False)])
def test_the_environment_turns_reuse_on_at_import(env, on):
    import os
    import subprocess
    import sys

    e = {k: v for k, v in os.environ.items() if k != "CLEARGRAD_HOST_REUSE"}
    if env is not None:
        e["CLEARGRAD_HOST_REUSE"] = env
    code = "import cleargrad.runtime.hostmem as h; print(h.host_memory_reuse())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == str(on)


def test_reuse_environment_values():
    assert hostmem._reuse_from_environment("on") and hostmem._reuse_from_environment(" TRUE ")
    assert not hostmem._reuse_from_environment(None) and not hostmem._reuse_from_environment("off")
    with pytest.raises(ConfigError, match="CLEARGRAD_HOST_REUSE"):
        hostmem._reuse_from_environment("sometimes")
