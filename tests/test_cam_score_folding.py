"""Score-CAM's masked passes run on a batch-norm-folded copy (``fold_batchnorm``, default on)."""

from __future__ import annotations

import pytest
import torch
from helpers import ModelSnapshot, small_cnn_with_statistics
from torch import nn

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


class _FailsInACopy(nn.Module):
    """Raises in a batched pass of any copy of itself (the folded copy's masked passes); not a
    hook, since a hooked model runs unfolded. The copy's probe and check use one image."""

    original: int | None = None

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if id(self) != type(self).original and x.shape[0] > 1 and not isinstance(x, torch._subclasses.FakeTensor):
            raise RuntimeError("masked pass exploded")
        return self.inner(x)


def test_an_error_inside_the_folded_copy_leaves_the_model_as_found(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _FailsInACopy(small_cnn_with_statistics(width=4)).eval()
    monkeypatch.setattr(_FailsInACopy, "original", id(model))
    made = _record(monkeypatch)
    snap = ModelSnapshot.take(model)
    with pytest.raises(RuntimeError, match="masked pass exploded"):
        cg.ScoreCAM(model, layer=model.inner.features).attribute(torch.randn(2, 1, 12, 12), target=0)
    snap.assert_same(model)
    assert made and made[0].folded  # the copy was made and folded: the error came from its pass
