"""The ``cleargrad`` commands in-process (typer's runner) on a tiny model and a few PNGs:
outputs exist and are well formed, bad input gives the documented exit codes."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import SCRIPT_CLASS, make_images, make_model_file
from typer.testing import CliRunner

import cleargrad
from cleargrad.cli import app
from cleargrad.evaluation.images import Preprocess
from cleargrad.evaluation.modelspec import load_model
from cleargrad.metrics import METRICS

runner = CliRunner()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    return {"dir": d, "model": make_model_file(d), "images": make_images(d)}


def invoke(*args: str):
    return runner.invoke(app, list(args))


def spec(ws: dict[str, Path]) -> str:
    return f"{ws['model']}:factory"


def test_methods_lists_every_registered_method_and_metric() -> None:
    r = invoke("methods")
    assert r.exit_code == 0, r.output
    for name in cleargrad.methods():
        assert name in r.stdout
    for name in METRICS:
        assert name in r.stdout
    assert "\u2191" in r.stdout and "\u2193" in r.stdout  # directions shown


def test_help_lists_the_commands() -> None:
    r = invoke("--help")
    assert r.exit_code == 0
    for cmd in ("demo", "explain", "evaluate", "report", "methods"):
        assert cmd in r.stdout


def test_explain_writes_one_png_and_npy_per_image_and_method(workspace: dict[str, Path]) -> None:
    out = workspace["dir"] / "explained"
    r = invoke(
        "explain",
        "--model",
        spec(workspace),
        "--images",
        str(workspace["images"]),
        "--method",
        "saliency,gradcam",
        "--target",
        "1",
        "--out",
        str(out),
        "-q",
    )
    assert r.exit_code == 0, r.output
    pngs = sorted(p.name for p in out.rglob("*.png"))
    npys = sorted(p.name for p in out.rglob("*.npy"))
    assert len(pngs) == len(npys) == 6 * 2  # 6 readable images (bad.png skipped), 2 methods
    assert "skipped 1 unreadable" in r.stderr and "bad.png" in r.stderr
    # the saved saliency equals the library's for the same model, preprocessing and target
    model = load_model(spec(workspace))
    prep = Preprocess(28, True, (cleargrad.data.FASHION_MNIST_MEAN,), (cleargrad.data.FASHION_MNIST_STD,))
    from PIL import Image

    src = workspace["images"] / "boot" / "img0.png"
    x = prep.normalize(torch.from_numpy(np.asarray(Image.open(src), dtype=np.float32) / 255.0)[None])[None]
    expected = cleargrad.Saliency(model).attribute(x, target=1)[0].numpy()
    saved = np.load(out / "boot" / "img0.png__saliency.npy")
    assert saved.shape == (1, 28, 28)
    np.testing.assert_allclose(saved, expected, rtol=1e-5, atol=1e-7)
    assert np.load(out / "boot" / "img0.png__gradcam.npy").shape == (1, 28, 28)
    from PIL import Image as PILImage

    with PILImage.open(out / "boot" / "img0.png__saliency.png") as im:
        assert im.format == "PNG" and im.size[0] >= 112


def test_evaluate_then_report(workspace: dict[str, Path]) -> None:
    store = workspace["dir"] / "eval.sqlite"
    args = [
        "evaluate",
        "--model",
        spec(workspace),
        "--dataset",
        str(workspace["images"]),
        "--methods",
        "saliency,gradcam",
        "--metrics",
        "deletion,sparseness,region_complexity",
        "--reference",
        "saliency",
        "--store",
        str(store),
        "--batch-size",
        "4",
        "-q",
    ]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    con = sqlite3.connect(str(store))
    n, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT image_id || method || metric) FROM results").fetchone()
    assert n == distinct == 6 * 2 * 3
    # region complexity of the reference against itself is exactly 1
    rc = con.execute("SELECT value FROM results WHERE method='saliency' AND metric='region_complexity'").fetchall()
    assert [v for (v,) in rc] == [1.0] * 6
    skipped = con.execute("SELECT source FROM skipped").fetchall()
    assert [Path(s).name for (s,) in skipped] == ["bad.png"]
    classes = {c for (c,) in con.execute("SELECT class_name FROM run_images")}
    assert classes == {"boot", SCRIPT_CLASS}
    con.close()
    # the summary table is printed (one row per method)
    assert "saliency" in r.stdout and "gradcam" in r.stdout and "deletion" in r.stdout
    # a rerun computes nothing new
    r2 = invoke(*args[:-1])
    assert r2.exit_code == 0 and "0 new row(s)" in r2.stderr
    html = workspace["dir"] / "eval.html"
    r3 = invoke("report", str(store), "--out", str(html))
    assert r3.exit_code == 0, r3.output
    text = html.read_text()
    assert str(html) in r3.stdout
    assert "&lt;script&gt;alert(1)&lt;script&gt;" in text and SCRIPT_CLASS not in text
    assert "bad.png" in text
    assert text.count('class="method-row"') == 2


def test_unknown_method_lists_valid_names(workspace: dict[str, Path]) -> None:
    r = invoke(
        "explain",
        "--model",
        spec(workspace),
        "--images",
        str(workspace["images"]),
        "--method",
        "gradcamm",
        "--out",
        str(workspace["dir"] / "x"),
    )
    assert r.exit_code == 2
    assert "gradcamm" in r.stderr and "saliency" in r.stderr and "integrated_gradients" in r.stderr
    assert "Traceback" not in r.output


def test_unknown_metric_lists_valid_names(workspace: dict[str, Path]) -> None:
    r = invoke(
        "evaluate",
        "--model",
        spec(workspace),
        "--dataset",
        str(workspace["images"]),
        "--methods",
        "saliency",
        "--metrics",
        "insertionn",
        "--store",
        str(workspace["dir"] / "u.sqlite"),
    )
    assert r.exit_code == 2
    assert "insertionn" in r.stderr and "deletion" in r.stderr and "sparseness" in r.stderr
    assert not (workspace["dir"] / "u.sqlite").exists()


def test_model_spec_that_does_not_import_is_one_line(workspace: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad_model.py"
    bad.write_text("import definitely_not_a_module_xyz\n")
    r = invoke("explain", "--model", f"{bad}:factory", "--images", str(workspace["images"]), "--method", "saliency")
    assert r.exit_code == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "definitely_not_a_module_xyz" in lines[0] and lines[0].startswith("error:")
    r = invoke(
        "explain", "--model", "no_such_pkg_abc.models:net", "--images", str(workspace["images"]), "--method", "saliency"
    )
    assert r.exit_code == 1 and "no_such_pkg_abc" in r.stderr and "Traceback" not in r.output
    r = invoke(
        "explain",
        "--model",
        f"{workspace['model']}:broken",
        "--images",
        str(workspace["images"]),
        "--method",
        "saliency",
    )
    assert r.exit_code == 1 and "factory exploded" in r.stderr


def test_debug_shows_the_traceback(workspace: dict[str, Path]) -> None:
    r = invoke(
        "explain",
        "--model",
        f"{workspace['model']}:broken",
        "--images",
        str(workspace["images"]),
        "--method",
        "saliency",
        "--debug",
    )
    assert r.exit_code == 1 and isinstance(r.exception, Exception)
    assert "factory exploded" in str(r.exception.__cause__ or r.exception)


def test_usage_errors_exit_2(workspace: dict[str, Path]) -> None:
    assert invoke("explain", "--images", str(workspace["images"]), "--method", "saliency").exit_code == 2
    r = invoke(
        "explain",
        "--model",
        spec(workspace),
        "--images",
        str(workspace["images"]),
        "--method",
        "saliency",
        "--target",
        "banana",
    )
    assert r.exit_code == 2 and "--target" in r.stderr
    assert invoke("report", str(workspace["dir"] / "missing.sqlite")).exit_code == 2


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_weights_are_refused_and_state_dicts_load(workspace: dict[str, Path], tmp_path: Path) -> None:
    model = load_model(spec(workspace))
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"features.0.0.weight": _Evil()}, f, protocol=2)
    args = [
        "explain",
        "--model",
        spec(workspace),
        "--images",
        str(workspace["images"]),
        "--method",
        "saliency",
        "--out",
        str(tmp_path / "o"),
        "-q",
    ]
    r = invoke(*args, "--weights", str(evil))
    assert r.exit_code == 1
    assert "refusing to load" in r.stderr and "weights_only" in r.stderr
    assert "pwned" not in r.output
    assert not (tmp_path / "o").exists()
    # a whole pickled module (not a state dict) is refused too
    whole = tmp_path / "whole.pt"
    torch.save(cleargrad.models.SmallCNN(num_classes=3, width=4), whole)
    r = invoke(*args, "--weights", str(whole))
    assert r.exit_code == 1 and "refusing to load" in r.stderr
    # plain state dicts load, from torch.save and from safetensors, and change the result
    from safetensors.torch import save_file

    other = type(model)(in_channels=1, num_classes=3, width=4)
    torch.manual_seed(5)
    for p in other.parameters():
        torch.nn.init.normal_(p)
    sd = tmp_path / "w.pt"
    torch.save(other.state_dict(), sd)
    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(st))
    outs = []
    for w in (sd, st):
        out = tmp_path / w.suffix.strip(".")
        r = invoke(
            "explain",
            "--model",
            spec(workspace),
            "--images",
            str(workspace["images"] / "boot" / "img0.png"),
            "--method",
            "saliency",
            "--out",
            str(out),
            "--weights",
            str(w),
            "-q",
        )
        assert r.exit_code == 0, r.output
        outs.append(np.load(out / "img0.png__saliency.npy"))
    np.testing.assert_array_equal(outs[0], outs[1])
    base = tmp_path / "base"
    invoke(
        "explain",
        "--model",
        spec(workspace),
        "--images",
        str(workspace["images"] / "boot" / "img0.png"),
        "--method",
        "saliency",
        "--out",
        str(base),
        "-q",
    )
    assert not np.allclose(np.load(base / "img0.png__saliency.npy"), outs[0])


def test_weights_of_another_architecture_are_a_one_line_error(workspace: dict[str, Path], tmp_path: Path) -> None:
    from cleargrad.models import SmallCNN

    w = tmp_path / "big.pt"
    torch.save(SmallCNN(width=8).state_dict(), w)
    r = invoke(
        "explain",
        "--model",
        spec(workspace),
        "--images",
        str(workspace["images"]),
        "--method",
        "saliency",
        "--weights",
        str(w),
    )
    assert r.exit_code == 1 and "do not match the model" in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.strip()]) == 1


def test_method_options_reach_the_method(workspace: dict[str, Path], tmp_path: Path) -> None:
    img = str(workspace["images"] / "boot" / "img0.png")
    outs = {}
    for base in ("0.0", "2.0"):
        out = tmp_path / base
        r = invoke(
            "explain",
            "--model",
            spec(workspace),
            "--images",
            img,
            "--method",
            "integrated_gradients",
            "-o",
            f"integrated_gradients.baselines={base}",
            "--out",
            str(out),
            "-q",
        )
        assert r.exit_code == 0, r.output
        outs[base] = np.load(out / "img0.png__integrated_gradients.npy")
    assert not np.allclose(outs["0.0"], outs["2.0"], rtol=1e-2, atol=0)
    r = invoke("explain", "--model", spec(workspace), "--images", img, "--method", "saliency", "-o", "nonsense")
    assert r.exit_code == 2


def test_missing_listed_file_is_skipped_not_fatal(workspace: dict[str, Path], tmp_path: Path) -> None:
    img = str(workspace["images"] / "boot" / "img0.png")
    r = invoke(
        "explain",
        "--model",
        spec(workspace),
        "--images",
        img,
        "--images",
        str(tmp_path / "gone.png"),
        "--method",
        "saliency",
        "--out",
        str(tmp_path / "o"),
        "-q",
    )
    assert r.exit_code == 0, r.output
    assert "gone.png" in r.stderr
    assert [p.name for p in (tmp_path / "o").glob("*.png")] == ["img0.png__saliency.png"]


def test_a_chunk_too_big_for_memory_is_one_error_line_with_the_size_to_use(
    workspace: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import math

    from cleargrad.runtime import memplan

    per = memplan.pass_bytes_per_sample(load_model(spec(workspace)).eval(), (1, 28, 28), grad=True)
    room = memplan.MARGIN + math.ceil(3.5 * per * memplan.SLACK["cpu"])  # 3 inputs fit, 4 do not
    monkeypatch.setattr(memplan, "available_bytes", lambda device, quick=False: room)
    args = ["explain", "--model", spec(workspace), "--images", str(workspace["images"]), "--method",
            "integrated_gradients", "--target", "1", "-q"]
    out = workspace["dir"] / "too_big"
    r = invoke(*args, "--out", str(out), "-o", "integrated_gradients.internal_batch_size=16")
    assert r.exit_code == 1, r.output
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: a forward and backward pass of 16 inputs")
    assert "set internal_batch_size to at most 3 (on the command line: -o METHOD.internal_batch_size=3" in r.stderr
    assert not list(out.rglob("*.npy"))
    r = invoke(*args, "--out", str(out), "-o", "integrated_gradients.internal_batch_size=3")
    assert r.exit_code == 0, r.output
    assert len(list(out.rglob("*.npy"))) == 6


@pytest.mark.parametrize("flag, folded", [(None, True), ("--no-fold-batchnorm", False)])
def test_evaluate_fold_batchnorm_option_reaches_the_engine(
    workspace: dict[str, Path], monkeypatch: pytest.MonkeyPatch, flag: str | None, folded: bool
) -> None:
    from cleargrad.cam import score
    from cleargrad.evaluation import engine

    seen: list[bool] = []
    masked: list[bool] = []
    real, real_fold = engine.run_evaluation, score.folded_forward

    def spy(plan, ui):
        seen.append(plan.fold_batchnorm)
        return real(plan, ui)

    def spy_fold(model, fold=True):
        masked.append(fold)
        return real_fold(model, fold)

    monkeypatch.setattr(engine, "run_evaluation", spy)
    monkeypatch.setattr(score, "folded_forward", spy_fold)
    args = ["evaluate", "--model", spec(workspace), "--dataset", str(workspace["images"]), "--methods",
            "saliency,scorecam", "--metrics", "deletion", "--store", str(workspace["dir"] / f"fold{folded}.sqlite"),
            "--limit", "2", "-q"]
    r = invoke(*args, *([flag] if flag else []))
    assert r.exit_code == 0, r.output
    assert seen == [folded]
    assert masked and set(masked) == {folded}  # Score-CAM's masked passes follow the flag
