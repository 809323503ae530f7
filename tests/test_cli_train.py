"""`cleargrad train`: trains and writes its run folder, resumes after an interrupt to the
weights of an uninterrupted run, compares with a baseline, refuses bad options (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import one_thread
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

import cleargrad.training.loop as loop
from cleargrad.cli.app import app


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two classes of 16x16 grayscale images: a bright square top-left or bottom-right, on noise."""
    root = tmp_path_factory.mktemp("train") / "shapes"
    rng = np.random.default_rng(0)
    for c, (r, s) in enumerate([(2, 2), (9, 9)]):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(20):
            a = rng.random((16, 16)) * 0.3
            a[r : r + 5, s : s + 5] = 1.0
            Image.fromarray((a * 255).astype(np.uint8)).save(root / f"class{c}" / f"{i}.png")
    return root


def _args(folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--model", "small-cnn", "--width", "2", "--dataset", str(folder), "--grayscale", "--size", "16",
        "--epochs", "3", "--batch-size", "8", "--lr", "0.05", "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


def _invoke(args: list[str]):
    with one_thread():
        return CliRunner().invoke(app, args)


def test_train_writes_the_run_folder_and_compares_with_a_baseline(folder: Path, tmp_path: Path) -> None:
    base = _invoke(_args(folder, tmp_path / "base", "--loss", "ce"))
    assert base.exit_code == 0, base.output
    run = json.loads((tmp_path / "base" / "run.json").read_text())
    history = json.loads((tmp_path / "base" / "history.json").read_text())
    assert len(history) == 3 and run["epochs_done"] == 3
    assert run["test_accuracy"] == history[-1]["test_accuracy"]
    assert all(h["train_regulariser"] == 0.0 for h in history)  # cross-entropy baseline

    cos = _invoke(_args(folder, tmp_path / "cos", "--loss", "cosine", "--lam", "0.5", "--baseline",
                        str(tmp_path / "base"), "--evaluate", "--eval-images", "4"))  # fmt: skip
    assert cos.exit_code == 0, cos.output
    hist = json.loads((tmp_path / "cos" / "history.json").read_text())
    assert all(h["train_regulariser"] > 0 for h in hist)  # the gradient term was trained
    # the comparison table names both runs, and the CAM table has the five CAMs
    assert "cross-entropy" in cos.output and "cosine λ=0.5" in cos.output
    for cam in ("Grad-CAM", "Grad-CAM++", "Score-CAM", "Ablation-CAM", "XGrad-CAM"):
        assert cam in cos.output
    cams = json.loads((tmp_path / "cos" / "cam_metrics.json").read_text())
    assert cams["images"] == 4 and set(cams["cams"]["Grad-CAM"]) >= {"AD", "AG", "AI", "INS", "DEL"}

    # the saved weights are the trained model: they reproduce the recorded test accuracy
    from cleargrad.cli.train import TrainSettings, _build_model, _load_data

    s = TrainSettings(model="small-cnn", dataset=str(folder), out=tmp_path / "cos", width=2, grayscale=True, size=16)
    data = _load_data(s)
    model = _build_model(s, data)
    model.load_state_dict(load_file(str(tmp_path / "cos" / "model.safetensors")))
    x, y = data.test
    with torch.no_grad():
        acc = (model.eval()(x).argmax(1) == y).double().mean().item()
    assert acc == pytest.approx(json.loads((tmp_path / "cos" / "run.json").read_text())["test_accuracy"])


def test_interrupted_run_resumes_to_the_uninterrupted_weights(folder: Path, tmp_path: Path, monkeypatch) -> None:
    full = _invoke(_args(folder, tmp_path / "full", "--loss", "cosine", "--lam", "0.5"))
    assert full.exit_code == 0, full.output

    original = loop._train_epoch

    def interrupted(*args, **kwargs):
        if args[5] == 2:  # the epoch number: Ctrl-C during the second epoch
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_epoch", interrupted)
    cut = _invoke(_args(folder, tmp_path / "cut", "--loss", "cosine", "--lam", "0.5"))
    assert cut.exit_code == 130
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    monkeypatch.setattr(loop, "_train_epoch", original)

    resumed = _invoke(_args(folder, tmp_path / "cut", "--loss", "cosine", "--lam", "0.5"))
    assert resumed.exit_code == 0, resumed.output
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a different setting on the same folder is refused, not mixed into the run
    other = _invoke(_args(folder, tmp_path / "cut", "--loss", "cosine", "--lam", "0.1"))
    assert other.exit_code == 2 and "different configuration" in other.output


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--loss", "l3"], "--loss must be one of"),
        (["--lam", "-1"], "--lam must be"),
        (["--epochs", "0"], "--epochs must be"),
        (["--holdout", "1.5"], "--holdout"),
        (["--schedule", "linear"], "schedule"),
        (["--baseline", "nowhere"], "not a finished"),
    ],
)
def test_bad_options_exit_2_with_one_line(folder: Path, tmp_path: Path, extra: list[str], match: str) -> None:
    r = _invoke(_args(folder, tmp_path / "x", *extra))
    assert r.exit_code == 2, r.output
    assert match in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_folder_without_classes_is_refused(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(flat / f"{i}.png")
    r = _invoke(_args(flat, tmp_path / "x"))
    assert r.exit_code == 2 and "class sub-folders" in r.output
