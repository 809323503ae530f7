"""Bad inputs found by the issue-16 audit: each gets a specific ExplanationError (library)
or a one-line message and exit code (command line) that says what to do.

The docs page docs/guides/errors.md ("Bad input and the error it gets") lists these cases; the original
table of input/target/option errors is ``BAD`` in ``test_attribution_errors.py``.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import make_images, make_model_file
from helpers import tiny_cnn
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import cleargrad as cg
from cleargrad.cli import app

X = torch.randn(2, 1, 12, 12)
REFS = torch.randn(3, 1, 12, 12)


class NaNNet(nn.Module):
    """tiny_cnn whose scores are NaN for the images whose first pixel is negative."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_cnn(num_classes=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.net(x)
        bad = (x[:, 0, 0, 0] < 0).view(-1, 1)
        return torch.where(bad, torch.full_like(s, float("nan")), s)


def _nan_x() -> torch.Tensor:
    x = X.clone()
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.5, -0.5  # image 1 gives NaN scores
    return x


def _nan_weight_model(m: nn.Module) -> nn.Module:
    with torch.no_grad():
        m.classifier.weight[0, 0] = float("nan")
    return m


def _gen0(method: str) -> Callable[[nn.Module], object]:
    kw = {"references": REFS} if method.startswith("expected") else {}
    return lambda m: cg.explain(m, X, method=method, target=0, n_samples=2, generator=0, **kw)


# (id, call(model) -> anything, error class, regex the message must match: what to do)
LIBRARY = [
    ("float16_input", lambda m: cg.Saliency(m).attribute(X.half(), target=0), cg.InputError,
     r"torch\.float16 but the model's parameters are torch\.float32; cast the input with x\.float\(\)"),
    ("bfloat16_input", lambda m: cg.IntegratedGradients(m).attribute(X.bfloat16(), target=0, n_steps=2),
     cg.InputError, r"bfloat16.*x\.float\(\)"),
    ("float64_input", lambda m: cg.Saliency(m).attribute(X.double(), target=0), cg.InputError,
     r"float64.*x\.float\(\).*model\.to\(torch\.float64\)"),
    ("float64_input_cam", lambda m: cg.GradCAM(m).attribute(X.double(), target=0), cg.InputError,
     r"float64.*x\.float\(\)"),
    ("rgb_to_gray_model", lambda m: cg.Saliency(m).attribute(torch.randn(2, 3, 12, 12), target=0), cg.InputError,
     r"3 channel\(s\) but the model's first convolution takes 1; load the images as grayscale"),
    ("rgb_to_gray_model_cam", lambda m: cg.GradCAMPlusPlus(m).attribute(torch.randn(2, 3, 12, 12), target=0),
     cg.InputError, r"3 channel\(s\).*takes 1"),
    ("rgb_to_gray_model_smoothgrad", lambda m: cg.SmoothGrad(m).attribute(torch.randn(2, 3, 12, 12), target=0,
                                                                          n_samples=2), cg.InputError, r"takes 1"),
    ("generator_int_smoothgrad", _gen0("smoothgrad"), cg.ConfigError,
     r"generator must be a torch\.Generator or None, got int 0; to seed, pass generator=torch\.Generator\(\)"
     r"\.manual_seed\(0\)"),
    ("generator_int_expected_gradients", _gen0("expected_gradients"), cg.ConfigError, r"manual_seed\(0\)"),
    ("generator_int_expected_gradcam", _gen0("expected_gradcam"), cg.ConfigError, r"manual_seed\(0\)"),
    ("generator_str_smooth_gradcam_pp", lambda m: cg.SmoothGradCAMPlusPlus(m).attribute(
        X, target=0, n_samples=2, generator="cpu"), cg.ConfigError, r"torch\.Generator or None, got str"),
    ("generator_int_layer_gradient", lambda m: cg.ExpectedGradCAM(m).layer_gradient(
        X, target=0, n_samples=2, generator=3), cg.ConfigError, r"manual_seed\(3\)"),
    ("option_typo_n_step", lambda m: cg.IntegratedGradients(m).attribute(X, target=0, n_step=3), cg.ConfigError,
     r"unknown option\(s\) 'n_step' \(did you mean 'n_steps'\?\); valid options: baselines, internal_batch_size, "
     r"method, n_steps, return_convergence_delta"),
    ("option_typo_via_explain", lambda m: cg.explain(m, X, method="integrated_gradients", target=0, n_step=3),
     cg.ConfigError, r"did you mean 'n_steps'"),
    ("option_unknown_cam", lambda m: cg.GradCAM(m).attribute(X, target=0, normalise=True), cg.ConfigError,
     r"'normalise' \(did you mean 'normalize'\?\); valid options: aug_smooth, eigen_smooth, normalize, relu, upsample"),
    ("option_typo_wrapped_method", lambda m: cg.SmoothGrad(m).attribute(X, target=0, n_samples=2, ab=False),
     cg.ConfigError, r"'ab' \(did you mean 'abs'\?\).*n_samples"),
    ("option_typo_expected_gradcam", lambda m: cg.ExpectedGradCAM(m).attribute(X, target=0, n_sample=2),
     cg.ConfigError, r"did you mean 'n_samples'.*weighting"),
    ("internal_batch_size_zero", lambda m: cg.IntegratedGradients(m).attribute(
        X, target=0, n_steps=2, internal_batch_size=0), cg.ConfigError,
     r"internal_batch_size must be a positive int \(images per chunk\) or None for automatic, got 0"),
    ("internal_batch_size_negative", lambda m: cg.SmoothGrad(m).attribute(
        X, target=0, n_samples=2, internal_batch_size=-4), cg.ConfigError, r"got -4"),
    ("internal_batch_size_float", lambda m: cg.ExpectedGradients(m).attribute(
        X, target=0, references=REFS, n_samples=2, internal_batch_size=2.5), cg.ConfigError, r"got 2\.5"),
    ("internal_batch_size_cam", lambda m: cg.IntegratedGradCAM(m).attribute(
        X, target=0, n_steps=2, internal_batch_size=0), cg.ConfigError, r"positive int"),
    ("nan_scores_saliency", lambda m: cg.Saliency(NaNNet().eval()).attribute(_nan_x(), target=0),
     cg.ModelStateError, r"NaN or Inf scores or gradients for image\(s\) \[1\].*torch\.isfinite\(model\(x\)\)"),
    ("nan_scores_argmax_target", lambda m: cg.Saliency(NaNNet().eval()).attribute(_nan_x()),
     cg.ModelStateError, r"image\(s\) \[1\]"),
    ("nan_scores_ig", lambda m: cg.IntegratedGradients(NaNNet().eval()).attribute(_nan_x(), target=0, n_steps=2),
     cg.ModelStateError, r"NaN or Inf"),
    ("nan_scores_gradcam", lambda m: cg.GradCAM(NaNNet().eval(), layer="net.features").attribute(_nan_x(), target=0),
     cg.ModelStateError, r"GradCAM: the model produced NaN or Inf.*\[1\]"),
    ("nan_weight", lambda m: cg.InputXGradient(_nan_weight_model(m)).attribute(X, target=0), cg.ModelStateError,
     r"image\(s\) \[0, 1\]"),
    ("deeplift_shap_no_baselines", lambda m: cg.DeepLiftShap(m).attribute(X, target=0), cg.InputError,
     r"DeepLiftShap needs baselines=<tensor of shape \(R, 1, 12, 12\)>"),
    ("deeplift_baseline_shape", lambda m: cg.DeepLift(m).attribute(X, target=0, baselines=torch.zeros(3, 1, 5, 5)),
     cg.InputError, r"does not broadcast to x's shape.*give a scalar"),
    ("deeplift_eps_negative", lambda m: cg.DeepLift(m).attribute(X, target=0, eps=-1.0), cg.ConfigError,
     r"eps must be a non-negative number"),
    ("lrp_unknown_composite", lambda m: cg.LRP(m).attribute(X, target=0, composite="epsilon_flat"),
     cg.ConfigError, r"unknown LRP composite 'epsilon_flat'; valid: epsilon_plus_flat"),
    ("lrp_unknown_rule", lambda m: cg.LRP(m).attribute(X, target=0, rules={nn.Conv2d: "z_plus_plus"}),
     cg.ConfigError, r"unknown LRP rule 'z_plus_plus'"),
    ("lrp_zbox_bounds", lambda m: cg.LRP(m).attribute(X, target=0, composite="epsilon_gamma_box",
                                                      low=torch.zeros(7), high=1.0),
     cg.ConfigError, r"ZBox bounds of shape \(7,\) do not broadcast"),
    ("lrp_option_typo", lambda m: cg.LRP(m).attribute(X, target=0, composit="epsilon"), cg.ConfigError,
     r"did you mean 'composite'"),
]


@pytest.mark.parametrize("case", LIBRARY, ids=[c[0] for c in LIBRARY])
def test_library_bad_input_raises_its_error(case: tuple) -> None:
    _, call, err, msg = case
    model = tiny_cnn(num_classes=5)
    with pytest.raises(err, match=msg) as info:
        call(model)
    assert isinstance(info.value, cg.ExplanationError)


def test_accepted_inputs_are_not_refused() -> None:
    """The new checks refuse nothing that worked: a float64 model takes float64 input, a
    model that repeats a grayscale channel itself takes 1-channel input, valid options pass."""
    m = tiny_cnn(num_classes=5)
    a = cg.Saliency(m.double()).attribute(X.double(), target=0)
    assert a.dtype == torch.float64
    m.float()

    class Repeat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x.expand(-1, 3, -1, -1)).mean(dim=(2, 3)))

    assert cg.GradCAM(Repeat().eval(), layer="conv").attribute(X, target=1).shape == (2, 1, 12, 12)
    g = torch.Generator().manual_seed(0)
    cg.SmoothGrad(m).attribute(X, target=0, n_samples=2, generator=g, internal_batch_size=3, abs=False)
    cg.GradCAM(m).attribute(X, target=0, normalize=True, upsample=False, relu=False)


# ------------------------------------------------------------------ files: stores, checkpoints
class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


def test_result_store_refuses_a_folder_and_a_non_sqlite_file(tmp_path: Path) -> None:
    from cleargrad.store import ResultStore

    with pytest.raises(cg.ConfigError, match=r"is a folder; give a file path such as .*results\.sqlite"):
        ResultStore(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database\n")
    with pytest.raises(cg.DataError, match=r"notes\.txt is not a cleargrad results store \(not an SQLite file\)"):
        ResultStore(text)
    assert text.read_text() == "hello, not a database\n"  # never overwritten
    ResultStore(tmp_path / "new.sqlite").close()  # a new path or an empty file is created
    (tmp_path / "empty.sqlite").touch()
    ResultStore(tmp_path / "empty.sqlite").close()


def test_malicious_checkpoint_state_is_a_data_error_and_never_runs(tmp_path: Path, monkeypatch) -> None:
    import json

    from safetensors.torch import save_model

    from cleargrad.training.checkpoint import MANIFEST, load_checkpoint

    monkeypatch.chdir(tmp_path)
    model = tiny_cnn(num_classes=5)
    run = tmp_path / "run"
    run.mkdir()
    save_model(model, str(run / "epoch_0001.safetensors"))
    torch.save({"optimizer": _Evil(), "scheduler": None, "rng": None}, run / "epoch_0001.state.pt")
    manifest = {"epoch": 1, "weights": "epoch_0001.safetensors", "state": "epoch_0001.state.pt", "config": {},
                "history": []}
    (run / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(cg.DataError, match=r"refusing to load .*\.state\.pt: it needs posix\.system; "
                                           r"torch\.load\(weights_only=True\) refused it.*resume=False"):
        load_checkpoint(tmp_path / "run", model=model)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_full_pickled_model_message_is_one_clean_line(tmp_path: Path) -> None:
    from cleargrad.evaluation.modelspec import load_weights

    path = tmp_path / "full.pt"
    torch.save(tiny_cnn(), path)
    with pytest.raises(cg.DataError) as info:
        load_weights(path)
    msg = str(info.value)
    assert "\x1b" not in msg and "\n" not in msg
    assert "it needs cleargrad.models.small_cnn.SmallCNN (a pickled object, e.g. a whole model saved with " in msg
    assert msg.endswith("re-save it with torch.save(model.state_dict(), path) or safetensors")


# ------------------------------------------------------------------ command line
runner = CliRunner()


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_cli")
    flat = d / "flat"
    flat.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)).save(flat / f"p{i}.png")
    full = d / "full.pt"
    torch.save(tiny_cnn(), full)
    text = d / "results.txt"
    text.write_text("not sqlite")
    return {"dir": d, "model": make_model_file(d), "images": make_images(d, per_class=1), "flat": flat,
            "full": full, "text": text}


def _explain(ws: dict[str, Path], *extra: str) -> list[str]:
    return ["explain", "--model", f"{ws['model']}:factory", "--images", str(ws["images"]),
            "--out", str(ws["dir"] / "out"), "-q", *extra]


def _evaluate(ws: dict[str, Path], *extra: str, dataset: str | None = None, store: str | None = None) -> list[str]:
    return ["evaluate", "--model", f"{ws['model']}:factory", "--dataset", dataset or str(ws["images"]),
            "--methods", "saliency", "--metrics", "sparseness",
            "--store", store or str(ws["dir"] / "s.sqlite"), "-q", *extra]


# (id, args(ws), exit code, regex on stderr)
CLI = [
    ("option_typo_for_one_method", lambda ws: _explain(ws, "--method", "integrated_gradients",
                                                       "-o", "integrated_gradients.n_step=3"), 2,
     r"usage error: method 'integrated_gradients' \(-o integrated_gradients\.KEY=VALUE\) got unknown option\(s\) "
     r"'n_step' \(did you mean 'n_steps'\?\); valid options: .*n_steps"),
    ("option_typo_for_all_methods", lambda ws: _explain(ws, "--method", "saliency,gradcam", "-o", "n_step=3"), 2,
     r"usage error: -o KEY=VALUE: the chosen methods \(saliency, gradcam\) got unknown option\(s\) 'n_step'"),
    ("option_typo_evaluate", lambda ws: _evaluate(ws, "-o", "saliency.absolute=false"), 2,
     r"'absolute' \(did you mean 'abs'\?\)"),
    ("store_is_a_folder", lambda ws: _evaluate(ws, store=str(ws["dir"])), 2,
     r"usage error: the results store .* is a folder; give a file path such as .*results\.sqlite"),
    ("store_is_not_sqlite", lambda ws: _evaluate(ws, store=str(ws["text"])), 1,
     r"error: .*results\.txt is not a cleargrad results store \(not an SQLite file\)"),
    ("report_on_a_text_file", lambda ws: ["report", str(ws["text"])], 1,
     r"error: .*results\.txt is not a cleargrad results store.*cleargrad evaluate --store"),
    ("target_label_without_class_folders", lambda ws: _evaluate(ws, "--target", "label",
                                                                dataset=str(ws["flat"])), 2,
     r"usage error: --target label needs a class for every image.*2 of 2 image\(s\).*--target auto"),
    ("weights_full_pickled_model", lambda ws: _explain(ws, "--method", "saliency", "--weights", str(ws["full"])), 1,
     r"^error: refusing to load .*full\.pt: it needs \S+SmallCNN \(a pickled object.*nothing in it was run\. "
     r"--weights takes a state dict: re-save it with torch\.save\(model\.state_dict\(\), path\) or safetensors\n$"),
    ("rgb_input_to_gray_model", lambda ws: _explain(ws, "--method", "saliency", "--rgb"), 1,
     r"error: x has 3 channel\(s\) but the model's first convolution takes 1; load the images as grayscale"),
]


@pytest.mark.parametrize("case", CLI, ids=[c[0] for c in CLI])
def test_cli_bad_input_gives_one_line_and_exit_code(case: tuple, ws: dict[str, Path]) -> None:
    _, args, code, msg = case
    r = runner.invoke(app, args(ws))
    assert r.exit_code == code, r.output
    import re

    assert re.search(msg, r.stderr, flags=re.S), r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr
    assert "\x1b" not in r.stderr


DEVICES = [
    ("device_cuda_without_gpu", "cuda", r"usage error: --device cuda: PyTorch sees no CUDA GPU here.*--device cpu"),
    ("device_cuda_index_without_gpu", "cuda:1", r"usage error: --device cuda:1: PyTorch sees no CUDA GPU"),
    ("device_bogus", "bogus", r"usage error: --device 'bogus' is not a torch device \(auto, cpu, cuda"),
]


@pytest.mark.parametrize("case", DEVICES, ids=[c[0] for c in DEVICES])
@pytest.mark.parametrize("command", ["explain", "evaluate"])
def test_cli_unusable_device_is_a_usage_error(
    case: tuple, command: str, ws: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, device, msg = case
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine with a GPU
    args = _explain(ws, "--method", "saliency") if command == "explain" else _evaluate(ws)
    r = runner.invoke(app, [*args, "--device", device])
    assert r.exit_code == 2, r.output
    import re

    assert re.search(msg, r.stderr), r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr


def test_report_on_a_text_file_leaves_it_alone(ws: dict[str, Path]) -> None:
    before = ws["text"].read_bytes()
    runner.invoke(app, ["report", str(ws["text"])])
    assert ws["text"].read_bytes() == before
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(str(ws["text"])).execute("SELECT 1 FROM results").fetchall()


def test_pickle_payload_in_weights_never_runs(ws: dict[str, Path]) -> None:
    evil = ws["dir"] / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"w": _Evil()}, f, protocol=2)
    cwd = os.getcwd()
    os.chdir(ws["dir"])
    try:
        r = runner.invoke(app, _explain(ws, "--method", "saliency", "--weights", str(evil)))
    finally:
        os.chdir(cwd)
    assert r.exit_code == 1 and "it needs posix.system" in r.stderr
    assert not (ws["dir"] / "PWNED_BY_CHECKPOINT").exists()
