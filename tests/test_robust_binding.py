"""Stores and run folders are bound to their inputs: a folder is its resolved path and
file list, ``train`` refuses another dataset or architecture with one line, a saved GAD
refuses other weights."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import make_images, make_model_file, one_thread
from PIL import Image
from typer.testing import CliRunner

from cleargrad.cli import app


def _invoke(args: list[str]):
    with one_thread():
        return CliRunner().invoke(app, args)


def _runs(store: Path) -> int:
    con = sqlite3.connect(store)
    try:
        return int(con.execute("SELECT COUNT(DISTINCT settings_hash) FROM results").fetchone()[0])
    finally:
        con.close()


def _evaluate(model: Path, dataset: str, store: Path) -> list[str]:
    return ["evaluate", "--model", f"{model}:factory", "--dataset", dataset, "--methods", "saliency",
            "--metrics", "sparseness", "--store", str(store), "-q"]  # fmt: skip


def test_a_folder_of_the_same_name_elsewhere_is_another_run(tmp_path: Path, monkeypatch) -> None:
    model = make_model_file(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    make_images(a, per_class=2, corrupt=False)
    make_images(b, per_class=3, corrupt=False)
    store = tmp_path / "s.sqlite"
    monkeypatch.chdir(a)
    assert _invoke(_evaluate(model, "images", store)).exit_code == 0
    monkeypatch.chdir(b)
    r = _invoke(_evaluate(model, "images", store))
    assert r.exit_code == 0, r.output
    assert _runs(store) == 2  # not "0 new row(s)" with the first folder's values


def test_an_image_added_to_the_folder_is_another_run(tmp_path: Path) -> None:
    model = make_model_file(tmp_path)
    images = make_images(tmp_path, per_class=2, corrupt=False)
    store = tmp_path / "s.sqlite"
    assert _invoke(_evaluate(model, str(images), store)).exit_code == 0
    Image.fromarray(np.full((28, 28), 7, np.uint8)).save(images / "boot" / "new.png")
    r = _invoke(_evaluate(model, str(images), store))
    assert r.exit_code == 0, r.output
    assert _runs(store) == 2


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    out = []
    for k in range(2):
        root = tmp_path_factory.mktemp(f"train{k}") / "shapes"
        rng = np.random.default_rng(k)
        for c in range(2):
            (root / f"class{c}").mkdir(parents=True)
            for i in range(6):
                Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(root / f"class{c}" / f"{i}.png")
        out.append(root)
    return out[0], out[1]


def _train(folder: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", "small-cnn", "--width", "2", "--dataset", str(folder), "--grayscale", "--size", "16",
            "--epochs", "1", "--batch-size", "4", "--lr", "0.05", "--out", str(out), "--quiet", *extra]  # fmt: skip


def test_train_refuses_an_out_folder_of_another_dataset_or_width(folders, tmp_path: Path) -> None:
    one, two = folders
    out = tmp_path / "run"
    assert _invoke(_train(one, out)).exit_code == 0
    weights = (out / "model.safetensors").read_bytes()
    r = _invoke(_train(two, out))
    assert r.exit_code == 2
    assert "holds a run of other inputs" in r.output and "dataset" in r.output
    r = _invoke([*_train(one, out)[:4], "3", *_train(one, out)[5:]])  # --width 3
    assert r.exit_code == 2 and "width" in r.output
    assert len(r.output.strip().splitlines()) <= 3 and len(r.output) < 600  # one line, no state-dict dump
    assert (out / "model.safetensors").read_bytes() == weights
    assert json.loads((out / "run.json").read_text())["settings"]["dataset"] == str(one)


def test_a_checkpoint_of_another_width_gives_one_line(folders, tmp_path: Path) -> None:
    """A folder of an older version (no inputs.json) whose checkpoint does not fit the model."""
    one, _ = folders
    out = tmp_path / "run"
    assert _invoke(_train(one, out, "--epochs", "1")).exit_code == 0
    (out / "inputs.json").unlink()
    (out / "run.json").unlink()
    r = _invoke([*_train(one, out)[:4], "3", *_train(one, out)[5:]])
    assert r.exit_code != 0
    assert "does not fit this model" in r.output and len(r.output) < 800


def test_gad_load_refuses_other_weights(tmp_path: Path) -> None:
    from cleargrad import GAD, DataError
    from cleargrad.models import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=3, width=4).eval()
    x, y = torch.randn(8, 1, 28, 28), torch.tensor([0, 1] * 4)
    gad = GAD(model, base="saliency", classes=(0, 1), n_support=1, epochs=1, batch_size=4, progress=False)
    gad.fit((x, y))
    gad.save(str(tmp_path / "g"))
    assert json.loads((tmp_path / "g" / "gad.json").read_text())["model_digest"]
    GAD.load(str(tmp_path / "g"), model)  # the same weights: fine
    other = SmallCNN(in_channels=1, num_classes=3, width=4).eval()
    with pytest.raises(DataError, match="fitted on other model weights"):
        GAD.load(str(tmp_path / "g"), other)
    GAD.load(str(tmp_path / "g"), other, check_weights=False)  # asked for explicitly
    shutil.rmtree(tmp_path / "g")
