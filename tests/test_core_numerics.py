"""Quadrature rules, chunk helpers and 2-D reductions."""

from __future__ import annotations

import math

import pytest
import torch

import cleargrad as cg
from cleargrad.core import CPU_MAX_CHUNK, DEFAULT_CHUNK_ELEMENTS, chunk_slices, default_chunk_size, to_2d
from cleargrad.core.quadrature import QUADRATURES, quadrature


def integrate(method: str, n: int, degree: int) -> float:
    t, w = quadrature(method, n)
    return float((w * t**degree).sum())


def exact(degree: int) -> float:
    return 1.0 / (degree + 1)


@pytest.mark.parametrize("method", QUADRATURES)
@pytest.mark.parametrize("n", [2, 3, 5, 50])
def test_nodes_and_weights_basic(method: str, n: int) -> None:
    t, w = quadrature(method, n)
    assert t.dtype == w.dtype == torch.float64 and t.shape == w.shape == (n,)
    assert (t >= 0).all() and (t <= 1).all() and (w > 0).all()
    assert abs(float(w.sum()) - 1.0) < 1e-14  # constants integrate exactly
    assert (t[1:] > t[:-1]).all()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 20])
def test_gauss_legendre_exact_up_to_degree_2n_minus_1(n: int) -> None:
    for d in range(2 * n):
        assert abs(integrate("gausslegendre", n, d) - exact(d)) < 1e-13, d
    # degree 2n is not exact: error (n!)^4 / ((2n+1) ((2n)!)^2) on [0, 1] for f = t^(2n)
    err = exact(2 * n) - integrate("gausslegendre", n, 2 * n)
    want = math.factorial(n) ** 4 / ((2 * n + 1) * math.factorial(2 * n) ** 2)
    if want > 1e-11:
        assert abs(err - want) < 1e-6 * want, (err, want)


@pytest.mark.parametrize("method", ["riemann_middle", "riemann_trapezoid"])
@pytest.mark.parametrize("n", [2, 4, 9])
def test_midpoint_and_trapezoid_exact_for_linear_not_quadratic(method: str, n: int) -> None:
    assert abs(integrate(method, n, 1) - 0.5) < 1e-14
    err2 = integrate(method, n, 2) - 1 / 3
    # classical error terms: midpoint -h^2/24 ... trapezoid +h^2/12 for f = t^2
    h = 1 / n if method == "riemann_middle" else 1 / (n - 1)
    want = -h**2 / 12 if method == "riemann_middle" else h**2 / 6
    assert abs(err2 - want) < 1e-12, (err2, want)


@pytest.mark.parametrize("n", [2, 4, 9])
def test_left_and_right_rules(n: int) -> None:
    t_left, _ = quadrature("riemann_left", n)
    t_right, _ = quadrature("riemann_right", n)
    assert t_left[0] == 0 and t_right[-1] == 1
    torch.testing.assert_close(t_right - t_left, torch.full((n,), 1.0 / n, dtype=torch.float64))
    # degree 1: left under-, right over-estimates by 1/(2n)
    assert abs(integrate("riemann_left", n, 1) - (0.5 - 0.5 / n)) < 1e-14
    assert abs(integrate("riemann_right", n, 1) - (0.5 + 0.5 / n)) < 1e-14


def test_aliases_and_errors() -> None:
    pairs = (("left", "riemann_left"), ("trapezoid", "riemann_trapezoid"), ("gauss_legendre", "gausslegendre"))
    for alias, name in pairs:
        for a, b in zip(quadrature(alias, 4), quadrature(name, 4)):
            assert torch.equal(a, b)
    with pytest.raises(cg.ConfigError, match="positive int"):
        quadrature("gausslegendre", 0)
    with pytest.raises(cg.ConfigError, match="positive int"):
        quadrature("gausslegendre", 2.0)  # type: ignore[arg-type]
    with pytest.raises(cg.ConfigError, match="n_steps >= 2"):
        quadrature("riemann_trapezoid", 1)
    with pytest.raises(cg.ConfigError, match="valid: riemann_left"):
        quadrature("simpson", 4)


# ---------------------------------------------------------------- chunking
def test_chunk_slices() -> None:
    assert list(chunk_slices(10, 3)) == [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 10)]
    assert list(chunk_slices(10, 5)) == [slice(0, 5), slice(5, 10)]
    for chunk in (None, 0, -1, 10, 11):
        assert list(chunk_slices(10, chunk)) == [slice(0, 10)]
    covered = [i for sl in chunk_slices(101, 7) for i in range(sl.start, sl.stop)]
    assert covered == list(range(101))


def test_default_chunk_size() -> None:
    assert DEFAULT_CHUNK_ELEMENTS == 16 * 3 * 224 * 224
    assert default_chunk_size((3, 224, 224), 200) == 16
    assert default_chunk_size((3, 224, 224), 5) == 5  # never more than the total
    # CPU: capped at CPU_MAX_CHUNK samples; no device: the memory budget alone
    assert default_chunk_size((1, 28, 28), 10**6) == CPU_MAX_CHUNK
    assert default_chunk_size((1, 28, 28), 10**6, "cpu") == CPU_MAX_CHUNK
    assert default_chunk_size((1, 28, 28), 10**6, None) == DEFAULT_CHUNK_ELEMENTS // 784
    assert default_chunk_size((1, 28, 28), 10, "cpu") == 10
    assert default_chunk_size((3, 2000, 2000), 10) == 1  # at least one sample
    assert default_chunk_size(torch.Size([3, 32, 32]), 7) == 7


# ---------------------------------------------------------------- 2-D reductions
A = torch.tensor([[[[1.0, -2.0]], [[-3.0, 1.0]], [[1.0, 0.5]]]])  # (1, 3, 1, 2)


@pytest.mark.parametrize(
    "reduction,want",
    [
        ("abs_sum", [[1.0, 0.5]]),  # |1-3+1|, |-2+1+0.5|
        ("sum_abs", [[5.0, 3.5]]),
        ("max_abs", [[3.0, 2.0]]),
        ("positive", [[0.0, 0.0]]),
    ],
)
def test_to_2d_reductions(reduction: str, want: list) -> None:
    out = to_2d(A, reduction)
    assert out.shape == (1, 1, 1, 2)
    torch.testing.assert_close(out[0, 0], torch.tensor(want))


def test_to_2d_positive_keeps_positive_sums_and_shapes() -> None:
    torch.testing.assert_close(to_2d(-A, "positive")[0, 0], torch.tensor([[1.0, 0.5]]))
    assert to_2d(torch.randn(2, 5, 5)).shape == (2, 1, 5, 5)  # (N, H, W) gets a channel axis
    one = torch.randn(2, 1, 5, 5)
    torch.testing.assert_close(to_2d(one, "abs_sum"), one.abs())
    assert to_2d(A).dtype == A.dtype
    with pytest.raises(cg.InputError, match=r"\(N, C, H, W\)"):
        to_2d(torch.randn(5, 5))
    with pytest.raises(cg.ConfigError, match="valid: abs_sum"):
        to_2d(A, "mean")
