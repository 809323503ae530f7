"""cleargrad.training.fit: paper preset, seeding, per-epoch checkpoints, resume after an
interruption (bit-identical to an uninterrupted run), data sources."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import DataLoader, TensorDataset

from cleargrad import ConfigError, DataError
from cleargrad.data import load_fashion_mnist, load_image_folder
from cleargrad.models import SmallCNN
from cleargrad.training import InterpretableGradientLoss, evaluate, fit, resolve_milestones


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: intra-op threads only add overhead (and contention on shared CI cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _data(n: int = 48, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) + y.view(-1, 1, 1, 1).float()  # learnable
    return TensorDataset(x, y)


def _model(seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(width=2, num_classes=3)


def _random_flip(x: torch.Tensor) -> torch.Tensor:
    """Augmentation drawing from the global RNG (so resume must restore the RNG state)."""
    flip = torch.rand(x.shape[0], 1, 1, 1) < 0.5
    return torch.where(flip, x.flip(-1), x)


class Interrupt(Exception):
    pass


def _kw(**extra) -> dict:
    kw = dict(
        epochs=3,
        batch_size=16,
        loss_fn=InterpretableGradientLoss("cosine", lam=0.5),
        batch_transform=_random_flip,
        quiet=True,
        seed=5,
    )
    kw.update(extra)
    return kw


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path) -> None:
    train, test = _data(), _data(24, seed=1)
    full = fit(_model(), train, test, checkpoint_dir=tmp_path / "full", **_kw())

    def stop_after_first(record: dict) -> None:
        if record["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(_model(), train, test, checkpoint_dir=tmp_path / "cut", on_epoch_end=stop_after_first, **_kw())
    torch.manual_seed(123)  # the process after the crash has a different RNG state
    other_init = _model(seed=99)  # and a differently initialised model: the checkpoint must win
    resumed = fit(other_init, train, test, checkpoint_dir=tmp_path / "cut", **_kw())

    assert resumed.resumed_from == 1
    assert _same_weights(full.model, resumed.model)
    strip = ("seconds", "step_seconds")
    h1 = [{k: v for k, v in r.items() if k not in strip} for r in full.history]
    h2 = [{k: v for k, v in r.items() if k not in strip} for r in resumed.history]
    assert h1 == h2
    # the LR schedule went through milestones (round(0.3*3)=1, round(0.6*3)=2)
    assert [r["lr"] for r in full.history] == pytest.approx([0.1, 0.02, 0.004])


def test_seeded_runs_are_identical_and_the_seed_matters() -> None:
    train = _data(32)
    a = fit(_model(), train, **_kw(epochs=1))
    b = fit(_model(), train, **_kw(epochs=1))
    c = fit(_model(), train, **_kw(epochs=1, seed=6))
    assert _same_weights(a.model, b.model)
    assert not _same_weights(a.model, c.model)


def test_checkpoint_files(tmp_path) -> None:
    fit(_model(), _data(), checkpoint_dir=tmp_path, **_kw(epochs=2))
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    assert manifest["epoch"] == 2 and len(manifest["history"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.json",
        "epoch_0002.safetensors",
        "epoch_0002.state.pt",
    ]
    weights = load_file(str(tmp_path / "epoch_0002.safetensors"))
    assert "classifier.weight" in weights
    state = torch.load(tmp_path / "epoch_0002.state.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["momentum"] == 0.9
    assert state["scheduler"]["last_epoch"] == 2


def test_finished_run_is_not_retrained_and_config_mismatch_is_refused(tmp_path) -> None:
    first = fit(_model(), _data(), checkpoint_dir=tmp_path, **_kw(epochs=1))
    again = fit(_model(seed=7), _data(), checkpoint_dir=tmp_path, **_kw(epochs=1))
    assert again.resumed_from == 1 and _same_weights(first.model, again.model)
    with pytest.raises(ConfigError, match="different configuration"):
        fit(_model(), _data(), checkpoint_dir=tmp_path, **_kw(epochs=1, lr=0.05))
    with pytest.raises(ConfigError, match="train_size"):
        fit(_model(), _data(32), checkpoint_dir=tmp_path, **_kw(epochs=1))
    # resume=False starts over instead
    fresh = fit(_model(), _data(), checkpoint_dir=tmp_path, resume=False, **_kw(epochs=1, lr=0.05))
    assert fresh.resumed_from == 0


def test_paper_preset_and_milestones() -> None:
    assert resolve_milestones((0.3, 0.6, 0.8), 200) == [60, 120, 160]
    assert resolve_milestones((0.3, 0.6, 0.8), 10) == [3, 6, 8]
    assert resolve_milestones((5, 0.5), 10) == [5]
    r = fit(_model(), _data(16), epochs=5, batch_size=16, quiet=True)
    # milestones round(1.5)=2, 3, 4 with factor 0.2
    assert [h["lr"] for h in r.history] == pytest.approx([0.1, 0.1, 0.02, 0.004, 0.0008])
    assert r.history[0]["train_regulariser"] == 0.0  # plain cross-entropy by default


def test_adam_option() -> None:
    r = fit(_model(), _data(16), epochs=1, optimizer="adam", quiet=True)
    assert r.history[0]["lr"] == pytest.approx(1e-3)
    with pytest.raises(ConfigError, match="optimizer"):
        fit(_model(), _data(16), epochs=1, optimizer="rmsprop", quiet=True)


def test_training_learns_and_accuracy_is_reported() -> None:
    train = _data(64)
    r = fit(_model(), train, train, epochs=3, batch_size=16, lr=0.05, quiet=True)
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    x, y = train.tensors
    with torch.no_grad():
        manual = (r.model.eval()(x).argmax(1) == y).float().mean().item()
    assert r.history[-1]["test_accuracy"] == pytest.approx(manual)
    assert evaluate(r.model, train) == pytest.approx(manual)


def test_fashion_mnist_image_folder_and_dataloader(tmp_path) -> None:
    fm = load_fashion_mnist("train", normalize=True, limit=32)
    r = fit(SmallCNN(width=2), fm, fm, epochs=1, batch_size=16, quiet=True)
    assert 0.0 <= r.history[0]["test_accuracy"] <= 1.0
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray((torch.rand(10, 10) * 255).byte().numpy()).save(tmp_path / cls / f"{i}.png")
    folder = load_image_folder(tmp_path)
    model = SmallCNN(in_channels=folder.images.shape[1], width=2, num_classes=2)
    r = fit(model, folder, epochs=1, batch_size=4, quiet=True, loss_fn=InterpretableGradientLoss())
    assert r.history[0]["train_accuracy"] is not None
    loader = DataLoader(_data(16), batch_size=8)
    assert len(fit(_model(), loader, epochs=1, quiet=True).history) == 1
    with pytest.raises(DataError, match="Dataset"):
        fit(_model(), [1, 2, 3], epochs=1, quiet=True)


def test_progress_output(capsys) -> None:
    fit(_model(), _data(16), epochs=1, batch_size=8, quiet=False)
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "ms/step" in out
    fit(_model(), _data(16), epochs=1, batch_size=8, quiet=True)
    assert capsys.readouterr().out == ""


def test_cosine_schedule_matches_torch_cosine_annealing() -> None:
    r = fit(_model(), _data(16), epochs=4, batch_size=16, schedule="cosine", quiet=True)
    # the usual recipe: CosineAnnealingLR(T_max=epochs, eta_min=0) stepped once per epoch
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    expected = []
    for _ in range(4):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert [h["lr"] for h in r.history] == pytest.approx(expected)
    # hand-computed: 0.1 * (1 + cos(pi * e / 4)) / 2
    assert [h["lr"] for h in r.history] == pytest.approx([0.1, 0.0853553, 0.05, 0.0146447], rel=1e-5)


def test_warmup_and_min_lr() -> None:
    r = fit(_model(), _data(16), epochs=5, batch_size=16, schedule="cosine", warmup_epochs=2, min_lr=0.01, quiet=True)
    # warm-up 1/3, 2/3 of lr; then cosine from 0.1 to 0.01 over the last 3 epochs
    cos = [0.01 + 0.09 * (1 + math.cos(math.pi * t / 3)) / 2 for t in range(3)]
    assert [h["lr"] for h in r.history] == pytest.approx([0.1 / 3, 0.2 / 3, *cos])
    # warm-up with the step schedule: milestones 2, 3, 4 (paper fractions of 5 epochs), gamma 0.2
    r = fit(_model(), _data(16), epochs=5, batch_size=16, warmup_epochs=1, quiet=True)
    assert [h["lr"] for h in r.history] == pytest.approx([0.05, 0.1, 0.02, 0.004, 0.0008])


def test_cosine_resume_matches_uninterrupted_run(tmp_path) -> None:
    train = _data()
    kw = _kw(epochs=3, schedule="cosine", warmup_epochs=1)
    full = fit(_model(), train, **kw)

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(_model(), train, checkpoint_dir=tmp_path, on_epoch_end=stop_after_first, **kw)
    resumed = fit(_model(), train, checkpoint_dir=tmp_path, **kw)
    assert resumed.resumed_from == 1
    assert [h["lr"] for h in resumed.history] == pytest.approx([h["lr"] for h in full.history])
    assert _same_weights(full.model, resumed.model)
    # another schedule is a different run: refused, not silently mixed
    with pytest.raises(ConfigError, match="schedule"):
        fit(_model(), train, checkpoint_dir=tmp_path, **_kw(epochs=3))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"schedule": "linear"}, "schedule"),
        ({"warmup_epochs": 3}, "warmup_epochs"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"schedule": "cosine", "min_lr": 1.0}, "min_lr"),
    ],
)
def test_bad_schedule_options_are_refused(kw, match) -> None:
    with pytest.raises(ConfigError, match=match):
        fit(_model(), _data(16), epochs=3, quiet=True, **kw)
