"""Explaining a model while another thread trains it is refused with a clear error (and
training one that another thread is explaining); training itself is not disturbed."""

from __future__ import annotations

import threading
import time

import pytest
import torch

import cleargrad as cg
from cleargrad.core.state import preserved_state
from cleargrad.models import SmallCNN
from cleargrad.training import fit


def _model() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN(in_channels=1, num_classes=3, width=4)


def test_explaining_while_another_thread_trains_is_refused_and_training_goes_on() -> None:
    model = _model()
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 3, (32,))
    started = threading.Event()

    def slow(b: torch.Tensor) -> torch.Tensor:
        started.set()
        time.sleep(0.02)
        return b

    errors: list[BaseException] = []

    def train() -> None:
        try:
            fit(model, (x, y), epochs=2, batch_size=4, lr=0.01, quiet=True, batch_transform=slow)
        except BaseException as e:  # pragma: no cover - the failure this test looks for
            errors.append(e)

    t = threading.Thread(target=train)
    t.start()
    assert started.wait(60)
    refused, other = 0, []
    while t.is_alive():
        try:
            cg.Saliency(model).attribute(x[:1], target=0)
        except cg.ModelStateError as e:
            assert "being trained by another thread" in str(e)
            refused += 1
        except BaseException as e:  # noqa: BLE001 - any other error is the bug
            other.append(e)
        time.sleep(0.005)
    t.join()
    assert errors == [] and other == []
    assert refused > 0
    model.eval()
    cg.Saliency(model).attribute(x[:1], target=0)  # after training: fine


def test_training_a_model_that_another_thread_explains_is_refused() -> None:
    model = _model().eval()
    inside, leave = threading.Event(), threading.Event()

    def explain() -> None:
        with preserved_state(model):  # what every explanation holds for its duration
            inside.set()
            leave.wait(30)

    t = threading.Thread(target=explain)
    t.start()
    assert inside.wait(30)
    try:
        x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 3, (8,))
        with pytest.raises(cg.ModelStateError, match="being explained by another thread"):
            fit(model.train(), (x, y), epochs=1, batch_size=4, quiet=True)
    finally:
        leave.set()
        t.join()
    fit(model, (x, y), epochs=1, batch_size=4, quiet=True)  # afterwards: fine
