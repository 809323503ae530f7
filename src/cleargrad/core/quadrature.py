"""Quadrature rules on [0, 1] for path integrals (Integrated Gradients and friends)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["QUADRATURES", "quadrature"]

QUADRATURES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
_ALIASES = {
    "left": "riemann_left",
    "right": "riemann_right",
    "middle": "riemann_middle",
    "trapezoid": "riemann_trapezoid",
    "gauss_legendre": "gausslegendre",
}


#: above this many nodes the Gauss–Legendre rule comes from Newton's method (quadratic
#: time) instead of numpy's ``leggauss`` (an eigenvalue problem, cubic: minutes at 20000)
_LEGGAUSS_MAX = 200


def _gauss_legendre_newton(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [-1, 1] by Newton's method on ``P_m`` (the
    three-term recurrence), from Tricomi's initial guesses; one half, mirrored."""
    k = np.arange(1, (m + 1) // 2 + 1, dtype=np.float64)
    x = np.cos(np.pi * (k - 0.25) / (m + 0.5))

    def legendre(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p0, p1 = np.ones_like(x), x.copy()
        for j in range(2, m + 1):
            p0, p1 = p1, ((2 * j - 1) * x * p1 - (j - 1) * p0) / j
        return p1, m * (x * p1 - p0) / (x * x - 1.0)  # P_m and its derivative

    for _ in range(20):
        p, dp = legendre(x)
        dx = p / dp
        x = x - dx
        if float(np.abs(dx).max()) < 1e-15:
            break
    _, dp = legendre(x)
    w = 2.0 / ((1.0 - x * x) * dp * dp)
    half = m // 2
    nodes = np.concatenate([-x, x[:half][::-1]])  # x is descending from near 1
    weights = np.concatenate([w, w[:half][::-1]])
    order = np.argsort(nodes)
    return nodes[order], weights[order]


def quadrature(method: str, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``t_j`` and weights ``v_j`` (float64, CPU) with ``sum_j v_j f(t_j) ≈ ∫_0^1 f``.

    ``riemann_left``: ``t_j = j/m``; ``riemann_right``: ``(j+1)/m``; ``riemann_middle``:
    ``(j+1/2)/m``, all with ``v_j = 1/m``; ``riemann_trapezoid``: ``t_j = j/(m-1)`` with
    weights ``1/(m-1)`` halved at both ends; ``gausslegendre``: Gauss–Legendre nodes
    mapped to [0, 1] (exact for polynomials of degree ``2m-1``).
    """
    method = _ALIASES.get(method, method)
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ConfigError(f"n_steps must be a positive int, got {n_steps!r}")
    m = n_steps
    if method == "riemann_left":
        t = np.arange(m) / m
        w = np.full(m, 1.0 / m)
    elif method == "riemann_right":
        t = np.arange(1, m + 1) / m
        w = np.full(m, 1.0 / m)
    elif method == "riemann_middle":
        t = (np.arange(m) + 0.5) / m
        w = np.full(m, 1.0 / m)
    elif method == "riemann_trapezoid":
        if m < 2:
            raise ConfigError("riemann_trapezoid needs n_steps >= 2")
        t = np.linspace(0.0, 1.0, m)
        w = np.full(m, 1.0 / (m - 1))
        w[0] /= 2
        w[-1] /= 2
    elif method == "gausslegendre":
        x, wl = np.polynomial.legendre.leggauss(m) if m <= _LEGGAUSS_MAX else _gauss_legendre_newton(m)
        t = 0.5 * (x + 1.0)
        w = 0.5 * wl
    else:
        raise ConfigError(f"unknown integration method {method!r}; valid: {', '.join(QUADRATURES)}")
    return torch.from_numpy(t), torch.from_numpy(w)
