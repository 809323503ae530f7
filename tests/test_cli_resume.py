"""``cleargrad evaluate`` killed with SIGKILL resumes to the same rows, and two torchrun
processes give the same table as one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_support import count_rows, env, make_images, make_model_file, one_thread, rows
from typer.testing import CliRunner

from cleargrad.cli import app

N_IMAGES = 8  # readable images (4 per class)
METHODS = "saliency,integrated_gradients,gradcam"
METRICS = "deletion,infidelity,sparseness"
TOTAL = N_IMAGES * 3 * 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("resume")
    return {"dir": d, "model": make_model_file(d), "images": make_images(d, per_class=4, corrupt=False)}


def evaluate_args(s: dict[str, Path], store: Path) -> list[str]:
    # batch size 1: one batch per image, so a kill can land between any two images
    return [
        "evaluate",
        "--model",
        f"{s['model']}:factory",
        "--dataset",
        str(s["images"]),
        "--methods",
        METHODS,
        "--metrics",
        METRICS,
        "--store",
        str(store),
        "--batch-size",
        "1",
        "--seed",
        "3",
        "-q",
    ]


@pytest.fixture(scope="module")
def reference(setup: dict[str, Path]) -> list[tuple[str, str, str, float | None]]:
    """An uninterrupted single-process run (in-process, one thread like the subprocesses)."""
    store = setup["dir"] / "reference.sqlite"
    with one_thread():
        r = CliRunner().invoke(app, evaluate_args(setup, store))
    assert r.exit_code == 0, r.output
    out = rows(store)
    assert len(out) == TOTAL
    assert all(v is not None for *_, v in out)
    return out


def test_sigkill_then_rerun_gives_the_uninterrupted_rows(setup: dict[str, Path], reference: list) -> None:
    store = setup["dir"] / "killed.sqlite"
    # each forward pass sleeps, so the run is slow enough to be killed in the middle
    proc = subprocess.Popen(
        [sys.executable, "-m", "cleargrad", *evaluate_args(setup, store)],
        env=env(CLEARGRAD_TEST_SLEEP="0.01"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while count_rows(store) < 10:
            assert proc.poll() is None, f"evaluate ended before it could be killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no rows appeared"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = rows(store)
    assert 10 <= len(partial) < TOTAL, len(partial)
    assert proc.returncode == -signal.SIGKILL
    with one_thread():  # the rerun in-process (saves a process start), same thread count
        r = CliRunner().invoke(app, evaluate_args(setup, store)[:-1])
    assert r.exit_code == 0, r.output
    assert f"{TOTAL - len(partial)} new row(s)" in r.stderr  # only the missing rows were computed
    final = rows(store)
    keys = [k[:3] for k in final]
    assert len(keys) == len(set(keys)) == TOTAL  # no duplicates
    assert final == reference
    assert set(partial) <= set(final)  # rows written before the kill are kept unchanged


def test_torchrun_two_processes_equal_one(setup: dict[str, Path], reference: list) -> None:
    store = setup["dir"] / "torchrun.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "cleargrad",
        *evaluate_args(setup, store),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env())
    assert r.returncode == 0, r.stderr[-3000:]
    assert rows(store) == reference
    # the table is printed once (by rank 0)
    assert r.stdout.count("mean over") == 1
