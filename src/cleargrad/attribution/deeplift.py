"""DeepLIFT with the Rescale rule (Shrikumar et al. 2017) and DeepLiftShap."""

from __future__ import annotations

import torch

from ..core import chunk_slices, gather_scores, register, resolve_targets
from ..core.deeplift_rules import DeepLiftMode
from ..core.targets import TargetLike
from ..errors import ConfigError, InputError
from .base import GradientAttribution
from .integrated import BaselineLike, make_baseline

__all__ = ["DeepLift", "DeepLiftShap"]


def _check_eps(eps: float) -> float:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
        raise ConfigError(f"eps must be a non-negative number, got {eps!r}")
    return float(eps)


class _DeepLiftBase(GradientAttribution):
    """Shared pass: one forward over ``cat([x, baselines])`` under :class:`DeepLiftMode`."""

    def multipliers(
        self, x: torch.Tensor, base: torch.Tensor, target: TargetLike | torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """DeepLIFT multipliers of each image's target score w.r.t. that image, for its
        own baseline row; also the ``(2n, C)`` scores (inputs then baselines) and targets."""
        n = x.shape[0]
        xi = x.detach().requires_grad_(True)
        with torch.enable_grad():
            with DeepLiftMode(n, eps):  # the rules' backward is in the graph
                s = self.scores(torch.cat([xi, base.detach()]))
            t = resolve_targets(target, n, scores=s[:n])
            # both halves' target scores, as Captum: only layers that mix the two halves
            # (max pooling) see the baseline half's multipliers
            total = gather_scores(s[:n], t).sum() + gather_scores(s[n:], t).sum()
            (m,) = torch.autograd.grad(total, xi)
        return m, s.detach(), t


@register("deeplift", family="attribution", aliases=("deep_lift",))
class DeepLift(_DeepLiftBase):
    """DeepLIFT (Rescale rule): ``(x - x') * m``, with DeepLIFT multipliers ``m``.

    ``attribute(x, target=None, baselines=0.0, eps=1e-10, return_convergence_delta=False)``

    Every nonlinearity (``nn.ReLU``, ``F.relu``, ``torch.relu``, in-place ReLU, ReLU6,
    ELU, LeakyReLU, Softplus, Sigmoid, Tanh, SiLU, GELU) passes back ``Δy / Δu``
    between the input and the baseline instead of its derivative; max pooling routes the
    output difference through the argmax positions of the input and of the baseline
    (:mod:`cleargrad.core.deeplift_rules`). The attributions sum to
    ``f_c(x) - f_c(x')`` (summation-to-delta) on networks of these layers and linear
    ones.

    Args:
        baselines: a scalar, a tensor broadcastable to ``x`` or a callable ``x -> x'``.
        eps: where ``|u - u'| < eps`` at a nonlinearity, its ordinary gradient is used.
        return_convergence_delta: also return ``sum(attr) - (f_c(x) - f_c(x'))`` per image.

    Equal to Captum's ``DeepLift`` on models whose nonlinearities are modules of
    Captum's list. Captum hooks modules only: a functional ReLU gets its plain gradient
    there (no longer DeepLIFT, and summation-to-delta fails), here the Rescale rule.
    The model must be in eval mode (the pass runs inputs and baselines in one batch).
    """

    def _attribute(
        self,
        x: torch.Tensor,
        target: TargetLike,
        baselines: BaselineLike = 0.0,
        eps: float = 1e-10,
        return_convergence_delta: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        eps = _check_eps(eps)
        base = make_baseline(baselines, x)
        m, s, t = self.multipliers(x, base, target, eps)
        attr = (x - base) * m
        if not return_convergence_delta:
            return attr
        n = x.shape[0]
        delta = attr.flatten(1).sum(1) - (gather_scores(s[:n], t) - gather_scores(s[n:], t))
        return attr, delta


@register("deeplift_shap", family="attribution", aliases=("deepliftshap", "deep_shap"))
class DeepLiftShap(_DeepLiftBase):
    """DeepLiftShap: DeepLIFT averaged over a distribution of baselines.

    ``attribute(x, target=None, baselines=..., eps=1e-10, internal_batch_size=None)``

    Each image is explained against every row of ``baselines`` (``(R, *x.shape[1:])``,
    e.g. training images) and the ``R`` DeepLIFT maps are averaged, so the result sums
    to ``f_c(x) - mean_r f_c(x'_r)``. Equal to Captum's ``DeepLiftShap``.

    Args:
        baselines: ``(R, *x.shape[1:])`` baseline images (``R >= 1``).
        eps: as for :class:`DeepLift`.
        internal_batch_size: how many (image, baseline) pairs go through the model at once
            (each pair is two rows of the forward).
    """

    batch_gradient = False  # gradients run in checked chunks of (image, baseline) pairs

    def _attribute(
        self,
        x: torch.Tensor,
        target: TargetLike,
        baselines: torch.Tensor | None = None,
        eps: float = 1e-10,
        internal_batch_size: int | None = None,
    ) -> torch.Tensor:
        eps = _check_eps(eps)
        if not isinstance(baselines, torch.Tensor) or baselines.dim() != x.dim() or baselines.shape[1:] != x.shape[1:]:
            raise InputError(
                "DeepLiftShap needs baselines=<tensor of shape (R, "
                f"{', '.join(map(str, x.shape[1:]))})>, a set of baseline images"
            )
        refs = baselines.to(device=x.device, dtype=x.dtype)
        if refs.shape[0] == 0 or not bool(torch.isfinite(refs).all()):
            raise InputError("baselines must be a non-empty set of finite images (no NaN or Inf)")
        t = self.targets(x, target)
        n, r = x.shape[0], refs.shape[0]
        work = n * r
        total = torch.zeros_like(x)
        chunk = self.chunk_size(x, 2 * work, None if internal_batch_size is None else 2 * internal_batch_size)
        for sl in chunk_slices(work, max(1, chunk // 2)):
            k = torch.arange(sl.start, sl.stop, device=x.device)
            img, ref = k // r, k % r
            xs, bs = x[img], refs[ref]
            m, _, _ = self.multipliers(xs, bs, t[img], eps)
            total.index_add_(0, img, (xs - bs) * m)
        return total / r
