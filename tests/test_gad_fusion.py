"""GAD Algorithm 2, fusion (spec § 3.4)."""

from __future__ import annotations

import pytest
import torch

import cleargrad as cg
from cleargrad.gad import fuse, important_mask, normalized_importance


def _maps(k: int = 4, n: int = 3, c: int = 2, hw: int = 7, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, hw, hw, generator=g) for _ in range(k)]


def test_fusion_by_hand() -> None:
    a0 = torch.tensor([[[[10.0, 5.0, 0.5, 2.0]]]])  # max 10: normalised 1, .5, .05, .2
    a1 = torch.tensor([[[[1.0, 0.0, 4.0, 4.0]]]])  # normalised .25, 0, 1, 1
    fused = fuse([a0, a1], tau=0.1)
    assert torch.equal(fused, torch.tensor([[[[1.0, 0.0, 0.0, 0.2]]]]))
    fused_min = fuse([a0, a1], tau=0.1, combine="min")
    assert torch.equal(fused_min, torch.tensor([[[[0.25, 0.0, 0.0, 0.2]]]]))
    # abs_sum over channels: |3 - 4| = 1 is the max
    two = torch.tensor([[[[3.0, 0.2]], [[-4.0, 0.3]]]])
    assert torch.equal(normalized_importance(two), torch.tensor([[[[1.0, 0.5]]]]))


def test_support_within_every_mask_and_monotone_in_models() -> None:
    a = _maps(k=5)
    prev = None
    for s in range(len(a)):
        f = fuse(a[: s + 1], tau=0.3)
        support = f > 0
        for j in range(s + 1):
            assert not (support & ~important_mask(normalized_importance(a[j]), 0.3)).any()
        if prev is not None:
            assert not (support & ~prev).any()  # adding a support model never enlarges the support
            assert support.sum() < prev.sum() or s > 3  # random maps: the support really shrinks
        prev = support


def test_s0_is_masked_original() -> None:
    (a0,) = _maps(k=1)
    s0 = normalized_importance(a0)
    assert torch.equal(fuse([a0], tau=0.25), s0 * (s0 >= 0.25))
    assert s0.flatten(1).amax(1).eq(1).all()


@pytest.mark.parametrize("combine", ["mask", "min"])
@pytest.mark.parametrize("tau", [0.1, "q80", "positive"])
def test_invariant_to_rescaling_one_map(tau: object, combine: str) -> None:
    common = _maps(k=1, seed=1)[0]
    a = [common + 0.5 * m for m in _maps(k=3)]  # correlated maps: a non-empty common support
    ref = fuse(a, tau=tau, combine=combine)
    assert (ref > 0).any()
    for j in range(3):
        for scale in (4.0, 0.125):  # powers of two: exact in floating point
            b = list(a)
            b[j] = a[j] * scale
            assert torch.equal(fuse(b, tau=tau, combine=combine), ref)
        b = list(a)
        b[j] = a[j] * 3.7
        torch.testing.assert_close(fuse(b, tau=tau, combine=combine), ref)


def test_tau_options() -> None:
    s = torch.arange(1.0, 11.0).view(1, 1, 1, 10) / 10
    assert important_mask(s, "q50").sum() == 5
    assert important_mask(s, 0.35).sum() == 7
    signed = torch.tensor([[[[1.0, -2.0, 0.0, 3.0]]]])
    mask = important_mask(normalized_importance(signed), "positive", signed)
    assert mask.tolist() == [[[[True, False, False, True]]]]
    zero = torch.zeros(1, 1, 3, 3)
    assert not important_mask(normalized_importance(zero), "q10").any()  # a zero map has nothing important
    assert torch.equal(fuse([zero, torch.ones(1, 1, 3, 3)]), zero)
    for bad in (1.5, -0.1, "q", "p90", "max"):
        with pytest.raises(cg.ConfigError, match="tau"):
            fuse(_maps(k=2), tau=bad)
    with pytest.raises(cg.ConfigError, match="combine"):
        fuse(_maps(k=2), combine="mean")
    with pytest.raises(cg.InputError, match="spatial"):
        fuse([torch.ones(1, 1, 3, 3), torch.ones(1, 1, 4, 4)])
