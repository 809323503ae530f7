"""Complexity / sparseness (spec 7.5) and the pointing games (spec 7.6).

Quantus agreement: ``Sparseness`` and ``Complexity`` use the same definitions (Gini
index of ``|a|``; entropy of ``|a| / sum |a|``); Quantus adds ``1e-7`` to every value
before the Gini index and ``1e-12`` inside the log, which moves the result by less
than ``1e-5`` for maps of order-one values, hence the tolerance. Quantus's
faithfulness metrics differ by definition and are not compared value-for-value:
``Infidelity`` perturbs fixed patches and aggregates a loss over several patch
sizes, ``MaxSensitivity`` normalises each map by its maximum before taking norms and
uses another perturbation range; the closest faithfulness metric,
``PixelFlipping``, is compared with our deletion curve in
``test_metrics_faithfulness.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import cleargrad as cg
from cleargrad.metrics import complexity, energy_pointing_game, nan_summary, pointing_game, sparseness


def test_entropy_and_gini_by_hand() -> None:
    a = torch.tensor([[1.0, 3.0, 0.0, 0.0]])  # P = 1/4, 3/4
    assert complexity(a).item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    # sorted ascending 0, 0, 1, 3 ; weights 2i - n - 1 = -3, -1, 1, 3 -> (1 + 9) / (4 * 4) = 0.625
    assert sparseness(a).item() == pytest.approx(0.625)
    assert sparseness(-a).item() == pytest.approx(0.625)  # |Phi|


def test_one_hot_and_uniform_extremes() -> None:
    n = 36
    one_hot = torch.zeros(2, 1, 6, 6)
    one_hot[:, 0, 2, 3] = 5.0
    uniform = torch.full((2, 6, 6), 0.3)
    assert torch.allclose(complexity(one_hot), torch.zeros(2))
    assert torch.allclose(complexity(uniform), torch.full((2,), math.log(n)))
    assert torch.allclose(sparseness(uniform), torch.zeros(2), atol=1e-6)
    assert torch.allclose(sparseness(one_hot), torch.full((2,), (n - 1) / n))


def test_all_zero_explanation_is_nan_with_warning() -> None:
    a = torch.rand(3, 4, 4)
    a[1] = 0
    with pytest.warns(RuntimeWarning, match="all-zero"):
        c = complexity(a)
    with pytest.warns(RuntimeWarning, match="all-zero"):
        g = sparseness(a)
    assert torch.isnan(c[1]) and torch.isnan(g[1]) and not torch.isnan(c[[0, 2]]).any()
    assert nan_summary(g).n_skipped == 1


def test_reduction_option() -> None:
    a = torch.randn(2, 3, 5, 5)
    assert torch.allclose(complexity(a, reduction="abs_sum"), complexity(a.sum(1).abs()))
    assert not torch.allclose(complexity(a), complexity(a.sum(1).abs()))


def test_quantus_sparseness_and_complexity_agree() -> None:
    quantus = pytest.importorskip("quantus")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 1, 8, 8, generator=g) ** 3 + 0.01
    x = torch.rand(4, 1, 8, 8, generator=g).numpy()
    y = np.zeros(4, dtype=int)
    q_sp = quantus.Sparseness(disable_warnings=True)(model=None, x_batch=x, y_batch=y, a_batch=a.numpy())
    q_cx = quantus.Complexity(disable_warnings=True)(model=None, x_batch=x, y_batch=y, a_batch=a.numpy())
    assert np.allclose(sparseness(a).numpy(), q_sp, atol=1e-5)
    assert np.allclose(complexity(a).numpy(), q_cx, atol=1e-5)


# --- pointing games -----------------------------------------------------------------------


def test_pointing_game_hits_misses_and_tolerance() -> None:
    s = torch.zeros(3, 10, 10)
    s[:, 2, 2] = 1.0
    masks = torch.zeros(3, 10, 10, dtype=torch.bool)
    masks[0, 1:4, 1:4] = True  # contains the maximum
    masks[1, 2, 5] = True  # 3 px to the right of it
    masks[2, 8:, 8:] = True  # far: nearest object pixel (8, 8) is sqrt(72) ~ 8.49 px away
    assert pointing_game(s, masks, tolerance=0).tolist() == [1.0, 0.0, 0.0]
    assert pointing_game(s, masks, tolerance=3).tolist() == [1.0, 1.0, 0.0]
    assert pointing_game(s, masks, tolerance=8.5).tolist() == [1.0, 1.0, 1.0]
    assert pointing_game(s, masks, tolerance=8.4).tolist() == [1.0, 1.0, 0.0]


def test_pointing_game_constant_map_misses_and_empty_mask_is_nan() -> None:
    masks = torch.ones(2, 4, 4, dtype=torch.bool)
    masks[1] = False
    out = pointing_game(torch.ones(2, 4, 4), masks, tolerance=0)
    assert out[0] == 0.0 and torch.isnan(out[1])


def test_energy_pointing_game_by_hand() -> None:
    s = torch.tensor([[[1.0, 2.0], [3.0, -4.0]]])
    m = torch.tensor([[[True, False], [True, True]]])
    # default abs_sum reduction, 1-channel alike: |s| -> (1 + 3 + 4) / (1 + 2 + 3 + 4) = 8/10
    assert energy_pointing_game(s, m).item() == pytest.approx(8 / 10)
    # a map used as given: negative energy counts as 0 -> (1 + 3 + 0) / (1 + 2 + 3) = 4/6
    assert energy_pointing_game(s, m, reduction="none").item() == pytest.approx(4 / 6)
    # 3-channel attribution: abs_sum reduction first; masks given as 0/1 floats (N, 1, H, W)
    a = torch.tensor([[[[1.0, 0.0]], [[-3.0, 1.0]]]])  # |1 - 3| = 2, |0 + 1| = 1
    assert energy_pointing_game(a, torch.tensor([[[[0.0, 1.0]]]])).item() == pytest.approx(1 / 3)
    with pytest.warns(RuntimeWarning):
        assert torch.isnan(energy_pointing_game(torch.zeros(1, 2, 2), m)).all()


def test_localisation_bad_inputs() -> None:
    with pytest.raises(cg.InputError):
        pointing_game(torch.rand(2, 4, 4), torch.rand(2, 4, 4))  # not a mask
    with pytest.raises(cg.InputError, match="masks"):
        energy_pointing_game(torch.rand(2, 4, 4), torch.ones(3, 4, 4, dtype=torch.bool))
    with pytest.raises(cg.ConfigError):
        pointing_game(torch.rand(2, 4, 4), torch.ones(2, 4, 4, dtype=torch.bool), tolerance=-1)
