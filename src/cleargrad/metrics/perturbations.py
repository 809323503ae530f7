"""Random input perturbations for infidelity and max-sensitivity, drawn with a generator.

Noise is drawn on the generator's device (the default generator: the input's
device) and moved to the input's device, so a CPU generator gives the same numbers
whether the model runs on a CPU or a GPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import ConfigError

__all__ = ["Perturbation", "baseline_difference", "gaussian_noise", "square_removal", "uniform_ball"]

#: ``perturbation(x_rep, generator) -> tensor shaped like x_rep``
Perturbation = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def _device(x: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else x.device


def gaussian_noise(std: float = 0.1) -> Perturbation:
    """``I ~ N(0, std^2)`` per input element (infidelity's ``"gaussian"``; default 0.1 normalised units)."""
    if std < 0:
        raise ConfigError(f"noise std must be >= 0, got {std}")

    def draw(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        z = torch.empty(x.shape, device=_device(x, generator), dtype=x.dtype)
        return z.normal_(0.0, std, generator=generator).to(x.device)

    return draw


def square_removal(size: int, baseline: float = 0.0) -> Perturbation:
    """A random ``size x size`` square set to ``baseline``: ``I = x - x_masked``
    (zero outside the square, ``x - baseline`` inside; Yeh et al.'s square removal).

    The square's top-left corner is uniform over the positions where it fits.
    """
    if size < 1:
        raise ConfigError(f"square size must be >= 1, got {size}")

    def draw(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        m, _, h, w = x.shape
        if size > min(h, w):
            raise ConfigError(f"square size {size} does not fit into {h}x{w} images")
        dev = _device(x, generator)
        top = torch.randint(0, h - size + 1, (m,), generator=generator, device=dev).to(x.device)
        left = torch.randint(0, w - size + 1, (m,), generator=generator, device=dev).to(x.device)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        inside = (
            (rows >= top.view(-1, 1, 1)) & (rows < (top + size).view(-1, 1, 1))
            & (cols >= left.view(-1, 1, 1)) & (cols < (left + size).view(-1, 1, 1))
        )
        return (x - baseline) * inside[:, None].to(x.dtype)

    return draw


def baseline_difference(baseline: float = 0.0, std: float = 0.1) -> Perturbation:
    """``I = x - (x0 + eps)``, ``x0 = baseline``, ``eps ~ N(0, std^2)`` per element: Yeh et
    al.'s "noisy baseline" perturbation (``x - I`` is a noisy baseline image, so the score
    change is ``f(x) - f(x0 + eps)``; with ``std = 0`` it is the completeness gap of a
    baseline attribution).
    """
    if std < 0:
        raise ConfigError(f"noise std must be >= 0, got {std}")

    def draw(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        z = torch.empty(x.shape, device=_device(x, generator), dtype=x.dtype)
        eps = z.normal_(0.0, std, generator=generator).to(x.device) if std > 0 else z.zero_().to(x.device)
        return x - baseline - eps

    return draw


def uniform_ball(radius: float) -> Perturbation:
    """``delta ~ U[-radius, radius]`` per element: a uniform sample of the L-infinity ball."""
    if radius < 0:
        raise ConfigError(f"radius must be >= 0, got {radius}")

    def draw(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        # one pass, no temporaries: this runs on every perturbed copy of every image
        u = torch.empty(x.shape, device=_device(x, generator), dtype=x.dtype)
        return u.uniform_(-radius, radius, generator=generator).to(x.device)

    return draw
