"""GAD Algorithm 1 (spec § 3.2) and the multi-class strategies (§ 3.6)."""

from __future__ import annotations

import pytest
import torch

import cleargrad as cg
from cleargrad.gad import Grouping, alpha_schedule, check_alphas, distance_targets, group_margin, make_tasks, two_means

PAIR = Grouping((2,), (0,))  # k = 2, l = 0 in a 3-output model (column 1 is not concerned)


def _logits(n: int = 12, c: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    y = torch.tensor([2, 0] * (n // 2))
    return z, y


def test_targets_by_hand() -> None:
    z = torch.tensor([[1.0, 5.0, 3.0], [4.0, 0.0, 2.0], [0.5, 1.0, 7.0]])
    y = torch.tensor([2, 0, 2])
    t = distance_targets(z, y, PAIR, (1.5, 0.25))
    # class-2 (k) images: subtract alpha_k from column 0 (l); class-0 images: alpha_l from column 2
    expected = torch.tensor([[-0.5, 5.0, 3.0], [4.0, 0.0, 1.75], [-1.0, 1.0, 7.0]])
    assert torch.equal(t, expected)
    assert torch.equal(z, torch.tensor([[1.0, 5.0, 3.0], [4.0, 0.0, 2.0], [0.5, 1.0, 7.0]]))  # input untouched


def test_invariants_ranking_margin_identity() -> None:
    z, y = _logits(20)
    alphas = alpha_schedule(z, y, PAIR, n_support=3)
    assert torch.equal(distance_targets(z, y, PAIR, (0.0, 0.0)), z)
    m0 = group_margin(z, y, PAIR)
    for a in alphas:
        t = distance_targets(z, y, PAIR, a)
        for c in (0, 2):
            rows = y == c
            for col in range(3):  # ranking of every column preserved within each class
                assert torch.equal(torch.argsort(t[rows, col]), torch.argsort(z[rows, col]))
        m = group_margin(t, y, PAIR)
        torch.testing.assert_close(m[y == 2], m0[y == 2] + a[0])
        torch.testing.assert_close(m[y == 0], m0[y == 0] + a[1])
        torch.testing.assert_close(m[y == 2], (t[:, 2] - t[:, 0])[y == 2])


def test_std_rule_by_hand() -> None:
    z, y = _logits(20)
    a = alpha_schedule(z, y, PAIR, n_support=4, rule="std", scale=0.5)
    d_k = z[y == 2, 0].std(correction=0)  # class-k images: spread of the l logit
    d_l = z[y == 0, 2].std(correction=0)
    for s in range(4):
        torch.testing.assert_close(a[s], torch.stack([d_k, d_l]) * (s + 1) * 0.5)


def test_margin_rule_by_hand_and_negative_margin_refused() -> None:
    z = torch.tensor([[0.0, 0.0, 3.0], [2.0, 0.0, 1.0], [1.0, 0.0, 2.0], [4.0, 0.0, 0.0]])
    y = torch.tensor([2, 0, 2, 0])
    a = alpha_schedule(z, y, PAIR, n_support=2, rule="margin")
    torch.testing.assert_close(a, torch.tensor([[2.0, 2.5], [4.0, 5.0]], dtype=torch.float64))
    with pytest.raises(cg.ConfigError, match="negative"):
        alpha_schedule(z, torch.tensor([0, 2, 0, 2]), PAIR, n_support=2, rule="margin")


def test_explicit_alphas_validated() -> None:
    expected = torch.tensor([[1.0, 1.0], [2.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(check_alphas([1, (2, 3)], 2), expected)
    for bad, msg in [([1, 2], "n_support"), ([2, 1, 3], "non-decreasing"), ([-1, 0, 1], ">= 0"),
                     ([(1, 2, 3)] * 3, "pair"), ([float("nan")] * 3, "finite")]:
        with pytest.raises(cg.ConfigError, match=msg):
            check_alphas(bad, 3)
    z, y = _logits()
    assert alpha_schedule(z, y, PAIR, 3, rule=[0, 0, 1]).tolist() == [[0, 0], [0, 0], [1, 1]]
    with pytest.raises(cg.ConfigError, match="unknown alpha rule"):
        alpha_schedule(z, y, PAIR, 3, rule="median")


def test_groups_one_vs_all_targets() -> None:
    z, _ = _logits(9)
    y = torch.tensor([0, 1, 2] * 3)
    g = Grouping((1,), (0, 2))
    t = distance_targets(z, y, g, (1.0, 2.0))
    r1 = y == 1
    torch.testing.assert_close(t[r1], z[r1] - torch.tensor([1.0, 0.0, 1.0], dtype=z.dtype))
    torch.testing.assert_close(t[~r1], z[~r1] - torch.tensor([0.0, 2.0, 0.0], dtype=z.dtype))


def test_strategies_reduce_to_pairwise_for_two_classes() -> None:
    z, y = _logits(20)
    pair = make_tasks("pairwise", (2, 0))
    ova = make_tasks("one_vs_all", (2, 0))
    split = make_tasks("split", (2, 0), z, y)
    assert pair == [(Grouping((2,), (0,)), (2, 0))]
    assert ova[0][0] == Grouping((2,), (0,)) and ova[1][0] == Grouping((0,), (2,))
    assert {split[0][0].first, split[0][0].second} == {(2,), (0,)}
    a = (0.7, 1.3)
    ref = distance_targets(z, y, PAIR, a)
    assert torch.equal(distance_targets(z, y, ova[0][0], a), ref)
    g = split[0][0]
    assert torch.equal(distance_targets(z, y, g, a if g.first == (2,) else a[::-1]), ref)


def test_two_means_and_split_clustering() -> None:
    v = torch.tensor([[0.0, 0.0], [0.2, 0.1], [5.0, 5.0], [5.1, 4.8], [0.1, 0.3]])
    assert two_means(v).tolist() == [True, True, False, False, True]
    # classes 0, 1 have similar mean logits, classes 2, 3 too: split finds {0, 1} vs {2, 3}
    y = torch.arange(40) % 4
    z = torch.zeros(40, 4)
    z[y < 2, 0] = 5.0
    z[y >= 2, 3] = 5.0
    z += torch.randn(40, 4, generator=torch.Generator().manual_seed(1)) * 0.1
    (g, explained), = make_tasks("split", (0, 1, 2, 3), z, y)
    assert {g.first, g.second} == {(0, 1), (2, 3)} and explained == (0, 1, 2, 3)
    (g, _), = make_tasks("split", (0, 1, 2, 3), groups=[[0, 2], [1, 3]])
    assert g == Grouping((0, 2), (1, 3))
    with pytest.raises(cg.ConfigError, match="partition"):
        make_tasks("split", (0, 1, 2, 3), groups=[[0, 2], [1]])
    with pytest.raises(cg.ConfigError, match="exactly two"):
        make_tasks("pairwise", (0, 1, 2))
    with pytest.raises(cg.ConfigError, match="share"):
        Grouping((0, 1), (1,))
