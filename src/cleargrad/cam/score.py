"""Score-CAM (Wang et al. 2020): channel weights from forward passes of masked inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..core import (
    chunk_slices,
    gather_scores,
    memory_guard,
    model_input,
    register,
    resolve_targets,
    select_output,
)
from ..core.inputs import broadcast_like
from ..core.maps import minmax_normalize, upsample_maps
from ..core.target_objects import class_probabilities
from ..core.targets import TargetLike
from ..errors import ConfigError
from ..runtime.fused import folded_forward
from .base import BaseCAM, weighted_sum

__all__ = ["ScoreCAM"]

_MASK_EPS = 1e-8
_WEIGHTS = ("probability", "logit", "softmax_over_channels")


def _channel_stats(v: Sequence[float] | torch.Tensor | None, x: torch.Tensor, name: str) -> torch.Tensor | None:
    if v is None:
        return None
    t = torch.as_tensor(v, dtype=x.dtype, device=x.device).flatten()
    if t.numel() not in (1, x.shape[1]):
        raise ConfigError(f"{name} must have 1 or {x.shape[1]} values (one per input channel), got {t.numel()}")
    return t.view(1, -1, *([1] * (x.dim() - 2)))


@register("scorecam", family="cam", aliases=("score_cam",))
class ScoreCAM(BaseCAM):
    """Score-CAM: ``w_k = p_c(x ⊙ M^k)`` with ``M^k`` the upsampled, min–max normalised channel ``k``.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True, batch_size=None,
    mask_space="pixel", mean=None, std=None, weights="probability", baseline=None,
    mask_align_corners=False, fold_batchnorm=True)``

    All ``N·K`` masked passes run as chunks of ``batch_size`` masked images under
    ``torch.inference_mode()``; the masks of a chunk are built just before it runs (never
    all at once) and scores stay on the device. Exact saving: a channel whose map is
    constant has an all-zero mask, and every such channel of every image gives the same
    masked input, which is run once.

    Options:
        batch_size: masked images per forward pass (default: a memory budget of about
            2.4M input elements per chunk).
        mask_space: ``"pixel"`` (default, as the official and the interpretable-gradient
            authors' code): the mask multiplies the de-normalised image ``x * std + mean``,
            which is normalised again; ``"normalized"``: the mask multiplies ``x`` as given
            (pytorch-grad-cam). Without ``mean``/``std`` both are the same.
        mean, std: the per-channel normalisation of the model's input (for ``"pixel"``).
        weights: ``"probability"`` (softmax probability of the target, the paper),
            ``"logit"``, or ``"softmax_over_channels"`` (softmax over the channels of the
            target logits, pytorch-grad-cam's choice). With a target object the target's
            own score stands for the probability (wrap the class in ``SoftmaxTarget`` for
            the paper's choice).
        baseline: an image (or a constant) whose score is subtracted from every weight
            (the paper's optional baseline; a constant shift, off by default).
        mask_align_corners: upsample the masks with ``align_corners=True`` (what
            pytorch-grad-cam does; the official code uses ``False``).
        fold_batchnorm: run the masked passes (forward only, no hooks needed) on a copy of
            the model with its eval-mode batch norms folded into the preceding layers
            (:class:`cleargrad.core.FoldedForward`, made per call; the model itself when it
            is in training mode, has forward hooks, or nothing folds). Scores equal the
            unfolded ones to float rounding; it saves a little time (measured:
            benchmarks/results/cam.md).
    """

    def _raw_maps(
        self,
        x: torch.Tensor,
        target: TargetLike,
        modules: list[nn.Module],
        batch_size: int | None = None,
        mask_space: str = "pixel",
        mean: Sequence[float] | torch.Tensor | None = None,
        std: Sequence[float] | torch.Tensor | None = None,
        weights: str = "probability",
        baseline: float | torch.Tensor | None = None,
        mask_align_corners: bool = False,
        fold_batchnorm: bool = True,
    ) -> list[torch.Tensor]:
        if mask_space not in ("pixel", "normalized"):
            raise ConfigError(f"mask_space must be 'pixel' or 'normalized', got {mask_space!r}")
        if weights not in _WEIGHTS:
            raise ConfigError(f"weights must be one of {_WEIGHTS}, got {weights!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ConfigError(f"batch_size must be a positive int or None, got {batch_size!r}")
        mu, sd = _channel_stats(mean, x, "mean"), _channel_stats(std, x, "std")
        if mask_space == "pixel" and (mu is None) != (sd is None):
            raise ConfigError("give both mean and std (the model's input normalisation), or neither")
        pixel = mask_space == "pixel" and mu is not None

        def masked(xs: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            if pixel and mu is not None and sd is not None:  # (pixel implies both are given)
                return ((xs * sd + mu) * m - mu) / sd
            return xs * m

        def score(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if weights == "probability":
                s = class_probabilities(s, self.output)
            return gather_scores(s, t)

        acts, scores = self.forward_pass(x, modules)
        t = resolve_targets(target, x.shape[0], scores=scores)
        net = folded_forward(self.model, fold_batchnorm)  # the masked passes: forward only
        size = x.shape[2:]
        weight_list = []
        with torch.inference_mode():
            shift = None
            if baseline is not None:
                xb = broadcast_like(baseline, x, "baseline")
                shift = score(select_output(net(model_input(self.model, xb)), self.output), t)
            for a in acts:
                n, k = a.shape[:2]
                flat = a.flatten(2)
                constant = flat.amax(dim=2) == flat.amin(dim=2)  # (N, K): all-zero mask
                w = torch.empty(n * k, dtype=scores.dtype, device=x.device)
                live = torch.nonzero(~constant.flatten()).flatten()
                dead = torch.nonzero(constant.flatten()).flatten()
                if dead.numel():
                    # the zero mask gives the same input for every image: one forward pass
                    z = masked(x[:1], torch.zeros_like(x[:1, :1]))
                    s0 = select_output(net(model_input(self.model, z)), self.output)
                    w[dead] = score(s0.expand(dead.numel(), -1), t[dead // k])
                chunk = self.chunk_size(x, live.numel(), batch_size, grad=False, option="batch_size")
                for sl in chunk_slices(live.numel(), chunk):
                    idx = live[sl]
                    img, ch = idx // k, idx % k
                    up = upsample_maps(a[img, ch].unsqueeze(1), size, align_corners=mask_align_corners)
                    m = minmax_normalize(up, _MASK_EPS)
                    with memory_guard(len(idx), x.shape[1:], x.device):
                        s = select_output(net(model_input(self.model, masked(x[img], m))), self.output)
                    w[idx] = score(s, t[img])
                w = w.view(n, k)
                if shift is not None:
                    w = w - shift[:, None]
                if weights == "softmax_over_channels":
                    w = torch.softmax(w, dim=1)
                weight_list.append(w)
        # clone out of inference mode: the result is an ordinary tensor
        return [weighted_sum(w.clone().to(a.dtype), a) for w, a in zip(weight_list, acts)]
