"""The host allocator's cache of freed memory is handed back above the limit, between chunks."""

from __future__ import annotations

import pytest
import torch

import cleargrad as cg
import cleargrad.core.batching as batching
import cleargrad.core.hostmem as hostmem
from cleargrad.errors import ConfigError


@pytest.fixture
def limit():
    """Restore the module's limit and level after the test."""
    saved = hostmem._limit, hostmem._floor
    yield
    hostmem._limit, hostmem._floor = saved


class _FakeLibc:
    def __init__(self):
        self.trims = 0

    def malloc_trim(self, pad):
        self.trims += 1
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


def test_trims_only_when_resident_memory_grew_beyond_the_limit(limit, monkeypatch):
    fake = _FakeLibc()
    rss = [1000 * 2**20]
    monkeypatch.setattr(hostmem, "_libc", fake)
    monkeypatch.setattr(hostmem, "resident_bytes", lambda: rss[0])
    hostmem._floor = None
    cg.set_host_cache_limit(100)
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
    import cleargrad.cli.engine as engine
    from cleargrad.cli.console import UI
    from cleargrad.cli.explainers import build_explainer, load_registries
    from cleargrad.cli.images import ImageRecord, ImageSet, Preprocess
    from cleargrad.cli.metric_runner import metric_runner
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
