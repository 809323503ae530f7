"""Clear errors, one line naming the file or value, for the cases a second audit found
raw: damaged stores, ``--store /dev/null``, huge targets, ``std=0``, a GAD support model
with NaN weights, a broken saved GAD folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import cleargrad as cg
from cleargrad import DataError, ExplanationError
from cleargrad.cli import app
from cleargrad.models import SmallCNN
from cleargrad.store import ResultRow, ResultStore

runner = CliRunner()


def _store(path: Path, n: int = 3000) -> Path:
    with ResultStore(path) as st:
        h = st.record_run({"run": 1}, {})
        st.add_metric_info([("ins", "higher", "faithfulness", "")])
        st.add_results([ResultRow(f"image-{k:06d}", "saliency", "ins", k / n, 0) for k in range(n)], h)
    return path


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2 + 100]))
    else:  # garbage over data pages, the header left intact
        for off in range(3 * 4096, len(data) - 4096, 4096):
            data[off + 10 : off + 200] = os.urandom(190)
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "pages"])
def test_a_damaged_store_is_named_by_every_verb(tmp_path: Path, how: str) -> None:
    store = _store(tmp_path / "s.sqlite")
    _damage(store, how)
    for args in (["report", str(store), "--out", str(tmp_path / "r.html")],
                 ["export", str(store), "--out", str(tmp_path / "e.csv")]):  # fmt: skip
        r = runner.invoke(app, args)
        assert r.exit_code != 0, (args, r.output)
        assert "damaged or truncated" in r.output and "s.sqlite" in r.output.replace("\n", "")
        assert "Traceback" not in r.output
    with pytest.raises(DataError, match="damaged or truncated"):  # evaluate's writer
        ResultStore(store)


def test_a_store_that_is_a_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(cg.ConfigError, match="not a regular file"):
        ResultStore("/dev/null")


def test_a_store_on_a_read_only_folder_is_refused_for_writing(tmp_path: Path, monkeypatch) -> None:
    folder = (tmp_path / "ro").resolve()
    folder.mkdir()
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, *a, **k: False if mode & os.W_OK and Path(p).resolve() == folder
        else real(p, mode, *a, **k)
    )  # fmt: skip
    with pytest.raises(cg.ConfigError, match="cannot be written"):
        ResultStore(folder / "s.sqlite")


def _model() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN(in_channels=1, num_classes=3, width=4).eval()


def test_a_huge_target_is_a_target_error() -> None:
    x = torch.randn(1, 1, 28, 28)
    for t in (2**70, [2**70], -(2**64)):
        with pytest.raises(cg.TargetError, match="not a class index"):
            cg.Saliency(_model()).attribute(x, target=t)


def test_a_huge_cli_target_is_one_line(tmp_path: Path) -> None:
    from cli_support import make_images, make_model_file

    images = make_images(tmp_path, per_class=1, corrupt=False)
    model = make_model_file(tmp_path)
    r = runner.invoke(app, ["explain", "--model", f"{model}:factory", "--images", str(images), "--method",
                            "saliency", "--target", "99999999999999999999", "--out", str(tmp_path / "x")])  # fmt: skip
    assert r.exit_code == 2 and "not a class index" in r.output and "Traceback" not in r.output


def test_average_drop_with_a_zero_std_says_so() -> None:
    model, x = _model(), torch.randn(2, 1, 28, 28)
    with pytest.raises(cg.InputError, match="std must be positive"):
        cg.metrics.average_drop(model, x, torch.rand(2, 1, 28, 28), target=0, mean=0.5, std=0.0)


def _fitted_gad(model: SmallCNN, n_support: int = 2) -> cg.GAD:
    x, y = torch.randn(8, 1, 28, 28), torch.tensor([0, 1] * 4)
    gad = cg.GAD(model, base="saliency", classes=(0, 1), n_support=n_support, epochs=1, batch_size=4, progress=False)
    gad.fit((x, y))
    return gad


@pytest.mark.parametrize("stack", [True, False])
def test_a_support_model_with_nan_weights_names_itself_and_the_right_images(stack: bool) -> None:
    model = _model()
    gad = _fitted_gad(model)
    gad.batch_models = stack
    with torch.no_grad():
        next(gad.support_models_[0][1].parameters()).fill_(float("nan"))
    with pytest.raises(cg.ModelStateError) as e:
        gad.attribute(torch.randn(4, 1, 28, 28), target=0)
    msg = str(e.value)
    assert "support model 2 of task 0" in msg and "non-finite weights" in msg
    assert "[0, 1, 2, 3] of the batch of 4" in msg


@pytest.mark.parametrize("damage", ["json", "json_missing_key", "weights", "weights_other_fit"])
def test_gad_load_on_a_broken_folder_is_an_explanation_error_naming_the_file(tmp_path: Path, damage: str) -> None:
    model = _model()
    gad = _fitted_gad(model, n_support=1)
    d = tmp_path / "g"
    gad.save(str(d))
    if damage == "json":
        (d / "gad.json").write_text((d / "gad.json").read_text()[:50])
        name = "gad.json"
    elif damage == "json_missing_key":
        meta = json.loads((d / "gad.json").read_text())
        del meta["stats"]
        (d / "gad.json").write_text(json.dumps(meta))
        name = "gad.json"
    elif damage == "weights":
        (d / "support.safetensors").write_bytes((d / "support.safetensors").read_bytes()[:100])
        name = "support.safetensors"
    else:  # the weights of another fit beside this gad.json (a save torn between the two files)
        _fitted_gad(model, n_support=1).save(str(tmp_path / "h"))
        (d / "support.safetensors").write_bytes((tmp_path / "h" / "support.safetensors").read_bytes())
        name = "support.safetensors"
    with pytest.raises(ExplanationError, match=name):
        cg.GAD.load(str(d), model)
