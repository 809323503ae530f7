"""SS-CAM and IS-CAM: Score-CAM with noise-smoothed or integrated masks, as TorchCAM 0.5
defines them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..core import chunk_slices, gather_scores, memory_guard, model_input, register, resolve_targets, select_output
from ..core.maps import upsample_maps
from ..core.options import check_generator
from ..core.targets import TargetLike
from ..errors import ConfigError
from ..runtime.fused import folded_forward
from .base import BaseCAM, weighted_sum
from .sampling import check_positive_int, draw_seeds, per_image, seeded_noise

__all__ = ["ISCAM", "SSCAM"]

_EPS = 1e-8


def _mask_noise(items: tuple[torch.Tensor, torch.Tensor, torch.Tensor], seeds: Sequence[int],
                like: torch.Tensor, std: float) -> torch.Tensor:
    """N(0, std²) noise ``(B, 1, H, W)`` for the work items ``(image, sample, channel)``, one
    seed each (independent of the chunking)."""
    return seeded_noise(seeds, like[:1, :1]) * std


def _unit_maps(a: torch.Tensor) -> torch.Tensor:
    """Each channel min–max normalised over its positions (TorchCAM's order: before upsampling)."""
    dims = tuple(range(2, a.dim()))
    lo = a.amin(dim=dims, keepdim=True)
    a = a - lo
    return a / (a.amax(dim=dims, keepdim=True) + _EPS)


class _NoisyScoreCAM(BaseCAM):
    """Shared loop: ``N·S·K`` masked forward passes in chunks, under inference mode."""

    def _weights(
        self, x: torch.Tensor, target: TargetLike, modules: list[nn.Module], n_samples: int,
        batch_size: int | None, fold_batchnorm: bool, noise_std: float | None, generator: torch.Generator | None,
    ) -> list[torch.Tensor]:
        if batch_size is not None:
            check_positive_int("batch_size", batch_size)
        acts, scores = self.forward_pass(x, modules)
        t = resolve_targets(target, x.shape[0], scores=scores)
        y0 = gather_scores(scores, t)
        net = folded_forward(self.model, fold_batchnorm)
        size = x.shape[2:]
        s_count = n_samples
        # IS-CAM's integration coefficients: c_s = sum_{j<=s+1} j / S
        coeff = torch.cumsum(torch.arange(1, s_count + 1, dtype=torch.float64), 0) / s_count
        out = []
        with torch.inference_mode():
            for a in acts:
                n, k = a.shape[:2]
                unit = _unit_maps(a)
                total = n * s_count * k
                seeds = draw_seeds(total, generator) if noise_std is not None else None
                w = torch.zeros(total, dtype=scores.dtype, device=x.device)
                chunk = self.chunk_size(x, total, batch_size, grad=False, option="batch_size")
                for sl in chunk_slices(total, chunk):
                    j = torch.arange(sl.start, sl.stop, device=x.device)
                    img, rest = j // (s_count * k), j % (s_count * k)
                    smp, ch = rest // k, rest % k
                    m = upsample_maps(unit[img, ch].unsqueeze(1), size)
                    if seeds is not None and noise_std is not None:  # seeds are drawn with noise_std
                        m = m + _mask_noise((img, smp, ch), seeds[sl], x, float(noise_std))
                        xs = m * x[img]
                    else:
                        xs = per_image(coeff.to(x.device, x.dtype)[smp], x) * (m * x[img])
                    with memory_guard(len(j), x.shape[1:], x.device):
                        s = select_output(net(model_input(self.model, xs)), self.output)
                    w[sl] = gather_scores(s, t[img]) - y0[img]
                w = w.view(n, s_count, k).mean(dim=1)
                out.append(torch.softmax(w, dim=1).clone().to(a.dtype))
        return [weighted_sum(wk, a) for wk, a in zip(out, acts)]


@register("sscam", family="cam", aliases=("ss_cam", "smoothed_scorecam"))
class SSCAM(_NoisyScoreCAM):
    """SS-CAM (Wang et al. 2020, TorchCAM's definition): Score-CAM with noisy masks.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True, n_samples=35,
    noise_std=2.0, generator=None, batch_size=None, fold_batchnorm=False)``

    ``w = softmax_k( (1/S) sum_s [ y_c((M_k + delta_s) ⊙ x) - y_c(x) ] )`` with ``M_k`` the
    channel min–max normalised at the layer's resolution and upsampled (bilinear), and
    ``delta_s ~ N(0, noise_std²)`` drawn per image, sample and channel at the input's
    resolution (absolute, in mask units; TorchCAM's defaults ``S = 35``, ``std = 2``).
    ``y`` are logits. The ``N·S·K`` masked passes run in chunks of ``batch_size`` under
    ``torch.inference_mode()``, the masks and noise of a chunk made just before it runs;
    ``fold_batchnorm=True`` runs them on a batch-norm-folded copy as Score-CAM does (off by
    default: slower in the small settings of ``benchmarks/results/cam_new.md``).
    """

    def _raw_maps(
        self,
        x: torch.Tensor,
        target: TargetLike,
        modules: list[nn.Module],
        n_samples: int = 35,
        noise_std: float = 2.0,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        fold_batchnorm: bool = False,
    ) -> list[torch.Tensor]:
        check_positive_int("n_samples", n_samples)
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or noise_std < 0:
            raise ConfigError(f"noise_std must be a non-negative number, got {noise_std!r}")
        gen = check_generator(generator)
        return self._weights(x, target, modules, n_samples, batch_size, fold_batchnorm, float(noise_std), gen)


@register("iscam", family="cam", aliases=("is_cam", "integrated_scorecam"))
class ISCAM(_NoisyScoreCAM):
    """IS-CAM (Naidu et al. 2020, TorchCAM's definition): Score-CAM integrated over mask scales.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True, n_samples=10,
    batch_size=None, fold_batchnorm=False)``

    ``w = softmax_k( (1/S) sum_{s=0}^{S-1} [ y_c(c_s M_k ⊙ x) - y_c(x) ] )`` with
    ``c_s = sum_{j=1}^{s+1} j / S`` (TorchCAM's cumulative coefficient; it reaches
    ``(S+1)/2``) and ``M_k`` as in :class:`SSCAM`. Deterministic; batched like SS-CAM.
    """

    def _raw_maps(
        self,
        x: torch.Tensor,
        target: TargetLike,
        modules: list[nn.Module],
        n_samples: int = 10,
        batch_size: int | None = None,
        fold_batchnorm: bool = False,
    ) -> list[torch.Tensor]:
        check_positive_int("n_samples", n_samples)
        return self._weights(x, target, modules, n_samples, batch_size, fold_batchnorm, None, None)
