"""The reference SmallCNN weights shipped inside the package agree with the training
script's recipe, load without training or data, and are the model the record describes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import cleargrad as cg
from cleargrad.data import load_fashion_mnist
from cleargrad.models import FashionMNISTRecipe, SmallCNN, config_key, evaluate_accuracy, pretrained, shipped_record
from cleargrad.models.pretrained import CHECK_IMAGES, SHIPPED_DIR, small_cnn_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
NAME = "small-cnn-fashion-mnist"


def _record() -> dict:
    return json.loads((SHIPPED_DIR / f"{NAME}.json").read_text())


def test_shipped_record_agrees_with_the_training_script_recipe() -> None:
    # benchmarks/train_reference_cnn.py trains FashionMNISTRecipe() (no --quick): the same recipe
    script = (ROOT / "benchmarks" / "train_reference_cnn.py").read_text()
    assert "recipe = FashionMNISTRecipe()" in script
    rec = _record()
    recipe = FashionMNISTRecipe()
    assert rec["config"] == json.loads(json.dumps(recipe.config()))
    assert rec["recipe"] == asdict(recipe)
    assert rec["key"] == config_key(recipe.config())
    assert rec["test_images"] == 10000 and rec["train_images"] == 60000
    assert 0.85 < rec["test_accuracy"] < 1.0
    data = (SHIPPED_DIR / f"{NAME}.safetensors").read_bytes()
    assert hashlib.sha256(data).hexdigest() == rec["sha256"]
    assert len(data) < 400_000  # a few hundred KB
    assert shipped_record()["source"] == "shipped"
    assert shipped_record(FashionMNISTRecipe(seed=1)) is None  # another recipe is not the shipped one


def test_shipped_files_are_package_data() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = py["tool"]["setuptools"]["package-data"]["cleargrad"]
    assert "models/reference/*.safetensors" in patterns and "models/reference/*.json" in patterns


def test_shipped_weights_load_without_training_and_match_the_record(tmp_path, monkeypatch) -> None:
    def no_training(*a, **k):
        raise AssertionError("trained although the weights ship with the package")

    monkeypatch.setattr(pretrained, "train_classifier", no_training)
    model = small_cnn_fashion_mnist(tmp_path / "empty-cache", quiet=True, device="cpu")
    assert isinstance(model, SmallCNN) and not model.training
    monkeypatch.undo()
    try:
        head = load_fashion_mnist("test", normalize=True, limit=CHECK_IMAGES)
    except Exception as e:  # noqa: BLE001 - the data package is not installed
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    assert evaluate_accuracy(model, head) == _record()[f"test_accuracy_first_{CHECK_IMAGES}"]


def test_tampered_shipped_weights_are_refused(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "reference"
    fake.mkdir()
    (fake / f"{NAME}.json").write_text(json.dumps(_record()))
    (fake / f"{NAME}.safetensors").write_bytes((SHIPPED_DIR / f"{NAME}.safetensors").read_bytes()[:-1] + b" ")
    monkeypatch.setattr(pretrained, "SHIPPED_DIR", fake)
    with pytest.raises(cg.DataError, match="SHA-256"):
        small_cnn_fashion_mnist(tmp_path / "empty-cache", quiet=True, device="cpu")


def test_the_shipped_demo_gad_is_the_default_demo_fit_of_the_shipped_model(tmp_path, monkeypatch) -> None:
    from cleargrad.evaluation import demo
    from cleargrad.evaluation.console import UI
    from cleargrad.gad import GAD

    model = small_cnn_fashion_mnist(tmp_path / "empty-cache", quiet=True, device="cpu")
    settings = demo.DemoSettings()
    key = demo.gad_key(model, settings)
    assert json.loads((demo.SHIPPED_GAD / "record.json").read_text())["key"] == key
    assert demo._shipped_gad(key) == demo.SHIPPED_GAD  # files match their SHA-256
    saved = json.loads((demo.SHIPPED_GAD / "gad.json").read_text())["settings"]
    assert (saved["base"], saved["classes"], saved["n_support"], saved["epochs"], saved["seed"]) == (
        settings.gad_base, list(settings.pair), settings.gad_support, settings.gad_epochs, settings.seed,
    )
    # every other setting (lr, schedule, tau, ...) is what the demo would fit with today
    from cleargrad.gad.persistence import gad_settings

    expected = gad_settings(demo._unfitted_gad(model, settings))
    assert {k: v for k, v in saved.items() if k != "progress"} == {k: v for k, v in expected.items() if k != "progress"}
    monkeypatch.setenv("CLEARGRAD_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(GAD, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("fitted")))
    gad = demo.fit_or_load_gad(model, settings, UI(quiet=True))
    assert gad.is_fitted and gad.n_support == settings.gad_support
    # another model (or other settings) does not get the shipped fit
    assert demo._shipped_gad(demo.gad_key(model, demo.DemoSettings(seed=1))) is None
