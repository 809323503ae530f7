"""Error functions of the interpretable-gradient loss (spec § 4.2): hand-computed values,
minimum at delta = delta', symmetry, scale behaviour, no NaN on zero gradients."""

from __future__ import annotations

import math

import pytest
import torch

from cleargrad import ConfigError
from cleargrad.training import ERRORS, gradient_error
from cleargrad.training.gradient_errors import cosine, hi, hi_normalized, mae, mse

NAMES = list(ERRORS)


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(6, 2, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(6, 2, 3, 3, generator=g, dtype=torch.float64)
    return a, b


def test_hand_computed_values() -> None:
    # one image, two elements: a = (1, -2), b = (3, 1)
    a = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    b = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(mae(a, b), torch.tensor([2.5], dtype=torch.float64))  # (2 + 3) / 2
    torch.testing.assert_close(mse(a, b), torch.tensor([6.5], dtype=torch.float64))  # (4 + 9) / 2
    # <a, b> = 1, ||a|| ||b|| = sqrt(5) sqrt(10)
    torch.testing.assert_close(cosine(a, b), torch.tensor([1 - 1 / math.sqrt(50)], dtype=torch.float64))
    # slide HI: -(min(1,3) + min(2,1)) / (||a||_1 ||b||_1) = -2 / (3 * 4)
    torch.testing.assert_close(hi(a, b), torch.tensor([-2 / 12], dtype=torch.float64))
    # normalised: p = (1/3, 2/3), q = (3/4, 1/4) -> -(1/3 + 1/4)
    torch.testing.assert_close(hi_normalized(a, b), torch.tensor([-7 / 12], dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
def test_value_at_equality(name: str) -> None:
    a, _ = _pair()
    e = ERRORS[name](a, a)
    expected = {
        "mae": torch.zeros(6, dtype=torch.float64),
        "mse": torch.zeros(6, dtype=torch.float64),
        "cosine": torch.zeros(6, dtype=torch.float64),
        "hi": -1.0 / a.abs().flatten(1).sum(1),
        "hi_normalized": -torch.ones(6, dtype=torch.float64),
    }[name]
    torch.testing.assert_close(e, expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_minimum_over_first_argument_is_at_equality(name: str) -> None:
    fn = ERRORS[name]
    _, b = _pair(1)
    at_min = fn(b, b)
    g = torch.Generator().manual_seed(2)
    for scale in (1e-3, 1e-1, 1.0, 10.0):
        for _ in range(20):
            a = b + scale * torch.randn(b.shape, generator=g, dtype=torch.float64)
            assert (fn(a, b) >= at_min - 1e-12).all(), (name, scale)
    # and a strictly worse value for a clearly different gradient
    a = -b if name != "hi" and name != "hi_normalized" else torch.roll(b, 1, dims=-1)
    assert (fn(a, b) > at_min + 1e-6).all()


@pytest.mark.parametrize("name", NAMES)
def test_symmetric(name: str) -> None:
    a, b = _pair(3)
    torch.testing.assert_close(ERRORS[name](a, b), ERRORS[name](b, a), rtol=0, atol=0)


def test_cosine_and_normalized_hi_are_scale_invariant() -> None:
    a, b = _pair(4)
    for fn in (cosine, hi_normalized):
        torch.testing.assert_close(fn(3.0 * a, 0.25 * b), fn(a, b), rtol=1e-10, atol=1e-12)
    # the mean errors are not
    assert not torch.allclose(mse(3.0 * a, 3.0 * b), mse(a, b))


def test_slide_hi_depends_on_scale() -> None:
    # -sum min(|ka|, |kb|) / (||ka||_1 ||kb||_1) = hi(a, b) / k: the product of norms in the denominator
    a, b = _pair(5)
    torch.testing.assert_close(hi(2.0 * a, 2.0 * b), hi(a, b) / 2.0)


def test_ranges() -> None:
    a, b = _pair(6)
    assert ((cosine(a, b) >= 0) & (cosine(a, b) <= 2)).all()
    h = hi_normalized(a, b)
    assert ((h >= -1) & (h <= 0)).all()
    torch.testing.assert_close(cosine(a, -a), torch.full((6,), 2.0, dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
def test_zero_gradient_gives_no_nan(name: str) -> None:
    _, b = _pair(7)
    a = torch.zeros_like(b, requires_grad=True)
    e = ERRORS[name](a, b)
    assert torch.isfinite(e).all()
    e.sum().backward()
    assert torch.isfinite(a.grad).all()
    z = torch.zeros_like(b)
    assert torch.isfinite(ERRORS[name](z, z)).all()


def test_per_image_and_shape_errors() -> None:
    a, b = _pair(8)
    full = cosine(a, b)
    torch.testing.assert_close(full[2:3], cosine(a[2:3], b[2:3]))
    with pytest.raises(ValueError, match="same shape"):
        cosine(a, b[:, :1])
    with pytest.raises(ConfigError, match="unknown gradient error"):
        gradient_error("l2")
