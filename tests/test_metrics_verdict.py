"""The random-map verdict: paired differences by hand, the direction of each metric,
the informative / uninformative rule, and the benchmark's marks."""

from __future__ import annotations

import math

import pytest
import torch

import cleargrad as cg
from cleargrad.metrics import format_verdicts, paired_difference, random_map_verdict, separation_mark


def test_paired_difference_by_hand() -> None:
    d, se, n = paired_difference([3.0, 5.0, 4.0, float("nan")], [1.0, 2.0, 3.0, 0.0])
    # differences 2, 3, 1 (the NaN pair left out): mean 2, sd 1, se 1/sqrt(3)
    assert (d, n) == (2.0, 3)
    assert se == pytest.approx(1 / math.sqrt(3))
    d, se, n = paired_difference({"a": 1.0, "b": 2.0, "c": None}, {"b": 0.0, "a": 0.5, "c": 1.0})
    assert (d, n) == (pytest.approx(1.25), 2)
    with pytest.raises(cg.InputError, match="one value per image"):
        paired_difference([1.0, 2.0], [1.0])


def test_verdict_uses_each_metrics_direction_and_the_half_rule() -> None:
    g = torch.Generator().manual_seed(0)
    rnd = torch.rand(40, generator=g)

    def noise() -> torch.Tensor:  # mean exactly zero: a method with "+ noise()" only is no better than random
        e = 0.01 * torch.randn(40, generator=g)
        return e - e.mean()

    scores = {
        # insertion: higher is better; two of three methods clearly above the control
        "insertion": {"random": rnd, "a": rnd + 0.2 + noise(), "b": rnd + 0.1 + noise(), "c": rnd + noise()},
        # deletion: lower is better; only one of three clearly below, one clearly above (worse)
        "deletion": {"random": rnd, "a": rnd - 0.2 + noise(), "b": rnd + 0.2 + noise(), "c": rnd + noise()},
    }
    v = random_map_verdict(scores)
    assert v["insertion"].informative and v["insertion"].n_better == 2
    assert [s.better for s in v["insertion"].separations] == [True, True, False]
    assert not v["deletion"].informative and v["deletion"].n_better == 1
    assert [s.worse for s in v["deletion"].separations] == [False, True, False]
    assert "UNINFORMATIVE" in v["deletion"].summary() and "2/3" in v["insertion"].summary()
    lines = format_verdicts(v)
    assert len(lines) == 2 and lines[1].startswith("deletion: UNINFORMATIVE")


def test_verdict_bad_inputs() -> None:
    with pytest.raises(cg.InputError, match="control"):
        random_map_verdict({"insertion": {"a": [1.0]}})
    with pytest.raises(cg.ConfigError, match="direction"):
        random_map_verdict({"my_metric": {"a": [1.0, 2.0], "random": [0.0, 1.0]}})
    assert random_map_verdict({"my_metric": {"a": [1.0, 2.0], "random": [0.0, 1.0]}},
                              directions={"my_metric": "higher"})["my_metric"].informative
    with pytest.raises(cg.ConfigError, match="z > 0"):
        random_map_verdict({}, z=0)


@pytest.mark.parametrize(("d", "se", "direction", "want"), [
    (1.0, 0.4, "higher", "+"), (1.0, 0.2, "higher", "++"), (1.0, 0.4, "lower", "-"),
    (-1.0, 0.2, "lower", "++"), (0.5, 0.4, "higher", ""), (float("nan"), 0.1, "higher", ""),
])
def test_marks(d: float, se: float, direction: str, want: str) -> None:
    assert separation_mark(d, se, direction) == want
