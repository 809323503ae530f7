"""Smaller state issues (issue 16 item 7): train-mode BatchNorm and the class-count probe,
fit() and the caller's RNG, checkpoint manifests that point outside their folder, and
the warning that --model runs the file it names."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from helpers import ModelSnapshot
from torch import nn
from torch.utils.data import TensorDataset
from typer.testing import CliRunner

import cleargrad as cg
from cleargrad import DataError
from cleargrad.cli import app
from cleargrad.models import SmallCNN
from cleargrad.training import fit
from cleargrad.training.checkpoint import MANIFEST, load_checkpoint


def _bn1d_net() -> nn.Module:
    """BatchNorm1d after global pooling: one image in training mode is an error for it."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.BatchNorm1d(4),
        nn.Linear(4, 3),
    )


@pytest.mark.parametrize(
    "method,options",
    [
        ("integrated_gradients", {"n_steps": 4}),
        ("expected_gradients", {"n_samples": 4, "references": torch.randn(3, 1, 8, 8)}),
        ("smoothgrad", {"n_samples": 3}),
    ],
)
def test_train_mode_batchnorm_with_an_explicit_target(method: str, options: dict) -> None:
    model = _bn1d_net().train()
    x = torch.randn(2, 1, 8, 8)
    snap = ModelSnapshot.take(model)
    out = cg.explain(model, x, method, target=[0, 2], allow_train_mode=True, **options)
    assert out.shape == x.shape and torch.isfinite(out).all()
    snap.assert_same(model)  # still in train mode, BatchNorm statistics restored
    with pytest.raises(cg.TargetError):  # the class count is still checked
        cg.explain(model, x, method, target=[0, 3], allow_train_mode=True, **options)
    snap.assert_same(model)


def _data(n: int = 16) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_fit_leaves_the_callers_global_rng_as_it_was() -> None:
    model, data = SmallCNN(width=2, num_classes=3), _data()
    torch.manual_seed(1234)
    random.seed(5)
    np.random.seed(5)
    before = torch.get_rng_state()
    py, npy = random.getstate(), np.random.get_state()[1].copy()
    fit(model, data, epochs=1, batch_size=8, seed=3, quiet=True)
    assert torch.equal(torch.get_rng_state(), before)
    assert random.getstate() == py and np.array_equal(np.random.get_state()[1], npy)
    # the run itself is still seeded: the same seed gives the same weights
    torch.manual_seed(0)
    a = fit(SmallCNN(width=2, num_classes=3), _data(), epochs=1, batch_size=8, seed=3, quiet=True).model
    torch.manual_seed(0)
    b = fit(SmallCNN(width=2, num_classes=3), _data(), epochs=1, batch_size=8, seed=3, quiet=True).model
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("bad", ["../outside.safetensors", "/tmp/abs.safetensors", "sub/x.safetensors", ".."])
def test_manifest_naming_a_file_outside_its_folder_is_refused(tmp_path, bad: str) -> None:
    d = tmp_path / "ckpt"
    fit(SmallCNN(width=2, num_classes=3), _data(), epochs=1, batch_size=8, quiet=True, checkpoint_dir=d)
    manifest = json.loads((d / MANIFEST).read_text())
    (tmp_path / "outside.safetensors").write_bytes((d / manifest["weights"]).read_bytes())
    manifest["weights"] = bad
    (d / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="not a plain file name inside"):
        load_checkpoint(d, model=SmallCNN(width=2, num_classes=3))
    with pytest.raises(DataError, match="not a plain file name inside"):
        fit(SmallCNN(width=2, num_classes=3), _data(), epochs=1, batch_size=8, quiet=True, checkpoint_dir=d)


def test_model_option_help_says_it_runs_the_file() -> None:
    out = CliRunner().invoke(app, ["evaluate", "--help"], env={"COLUMNS": "200"}).output
    assert "runs its code" in " ".join(out.split())
