"""Score-CAM's masked passes run on a batch-norm-folded copy (``fold_batchnorm``, default on)."""

from __future__ import annotations

import pytest
import torch
from helpers import ModelSnapshot, small_cnn_with_statistics

import cleargrad as cg
from cleargrad.cam import score


def _record(monkeypatch: pytest.MonkeyPatch) -> list:
    made: list = []
    real = score.folded_forward

    def rec(model, fold=True):
        made.append(real(model, fold))
        return made[-1]

    monkeypatch.setattr(score, "folded_forward", rec)
    return made


def test_folded_masked_passes_equal_the_unfolded_ones_and_leave_the_model_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = small_cnn_with_statistics(width=4)  # batch norms with non-trivial running statistics
    x = torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    made = _record(monkeypatch)
    snap = ModelSnapshot.take(model)
    folded = cg.ScoreCAM(model).attribute(x, target=[0, 1, 2])
    snap.assert_same(model)
    plain = cg.ScoreCAM(model).attribute(x, target=[0, 1, 2], fold_batchnorm=False)
    assert len(made) == 2 and made[1] is model
    assert [b for _, b in made[0].folded] == [f"features.{i}.1" for i in range(4)]  # the copy ran, folded
    assert plain.abs().amax() > 0
    torch.testing.assert_close(folded, plain, rtol=1e-5, atol=1e-6)


def test_a_hooked_model_runs_unfolded_and_its_hook_sees_every_masked_pass() -> None:
    model = small_cnn_with_statistics(width=4)
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    images: list[int] = []
    handle = model.register_forward_hook(lambda _m, a, _o: images.append(a[0].shape[0]))
    try:
        first = cg.ScoreCAM(model).attribute(x, target=0)
        n_default = sum(images)
        images.clear()
        second = cg.ScoreCAM(model).attribute(x, target=0, fold_batchnorm=False)
    finally:
        handle.remove()
    assert n_default == sum(images) > x.shape[0]  # the clean pass and every masked pass
    torch.testing.assert_close(first, second)
