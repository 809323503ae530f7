"""NoiseTunnel (SmoothGrad, SmoothGrad-Squared, VarGrad) around any attribution method."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from ..core import chunk_slices, register
from ..core.sampling import draw_device, image_streams, standard_normal
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError, InputError
from .base import Attribution
from .gradient import Saliency

__all__ = ["NoiseTunnel", "SmoothGrad", "NT_TYPES"]

NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


def noise_std(x: torch.Tensor, stdevs: float | None, noise_level: float | None) -> torch.Tensor:
    """Per-image noise std: absolute ``stdevs`` or ``noise_level * (max(x) - min(x))``."""
    if stdevs is not None and noise_level is None:
        if stdevs < 0:
            raise ConfigError(f"stdevs must be >= 0, got {stdevs}")
        return torch.full((x.shape[0],), float(stdevs), device=x.device, dtype=x.dtype)
    if noise_level is None or stdevs is not None:
        raise ConfigError("give exactly one of stdevs= (absolute) or noise_level= (relative)")
    if noise_level < 0:
        raise ConfigError(f"noise_level must be >= 0, got {noise_level}")
    flat = x.flatten(1)
    return noise_level * (flat.amax(1) - flat.amin(1))


def gaussian_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator`` on its device (the
    CPU's default generator for ``None``, :mod:`cleargrad.core.sampling`), on x's device.

    (Kept for callers outside this package; the methods here draw through
    :mod:`cleargrad.core.sampling` so results do not depend on chunking.)
    """
    return torch.randn(x.shape, generator=generator, device=draw_device(generator), dtype=x.dtype).to(x.device)


_CAM_OPTIONS = ("upsample", "normalize", "relu")


class NoiseTunnel(Attribution):
    """Average any method (pixel attributions, CAMs, ...) over Gaussian-noised copies of the input.

    ``NoiseTunnel(method).attribute(x, target=None, nt_type="smoothgrad", n_samples=5,
    stdevs=1.0, noise_level=None, noise=None, generator=None, internal_batch_size=None,
    **options)``

    ``method`` is any method instance with a public ``attribute(x, target, **options)``
    and a ``model`` (e.g. ``IntegratedGradients(model)``, ``GradCAM(model)``);
    ``options`` go to its ``attribute`` (for a CAM also ``upsample``, ``normalize``,
    ``relu``). The result has the wrapped method's output shape (``(N, 1, H, W)`` for a
    CAM). ``nt_type``: ``smoothgrad`` (mean), ``smoothgrad_sq`` (mean of squares),
    ``vargrad`` (variance). Noise std is absolute (``stdevs``, Captum's convention and
    defaults) or relative to each image's value range (``noise_level``); ``noise``
    gives the noise itself, ``(N, n_samples, *x.shape[1:])`` added as is (then
    ``n_samples`` is its second size and the std options are ignored), which makes the
    tunnel reproduce any other implementation fed the same noise. ``target=None`` is
    resolved once on the clean input.

    The noisy copies are run as one expanded batch in chunks of ``internal_batch_size``
    images, each chunk through the wrapped method's public ``attribute``. Each image
    draws its noise from its own stream seeded from ``generator`` (see
    :mod:`cleargrad.core.sampling`), so results do not depend on
    ``internal_batch_size``, and a batch equals its images explained one by one with the
    same generator passed to each successive call. A wrapped method that takes a
    ``generator`` is given the same one, chunk after chunk (its own draws then depend on
    the chunking).
    """

    def __init__(self, method: Any) -> None:
        model = getattr(method, "model", None)
        if not callable(getattr(method, "attribute", None)) or not isinstance(model, nn.Module):
            raise TypeError(
                "NoiseTunnel wraps a method instance with .attribute() and .model, e.g. "
                "NoiseTunnel(Saliency(model)) or NoiseTunnel(GradCAM(model))"
            )
        super().__init__(
            method.model, output=getattr(method, "output", None),
            allow_train_mode=getattr(method, "allow_train_mode", False),
            num_classes=getattr(method, "_num_classes", None),
        )
        self.method = method
        # a NoiseTunnel takes the wrapped method's family and input rank: per instance, where
        # Method declares them per class (ClassVar)
        #: the wrapped method's family (``"attribution"``, ``"cam"``, ...)
        self.family = getattr(method, "family", "attribution")  # type: ignore[misc]  # per instance
        ndim = getattr(method, "input_ndim", None)
        self.input_ndim = 4 if self.family == "cam" else ndim  # type: ignore[misc]  # per instance

    def __repr__(self) -> str:
        return f"NoiseTunnel({self.method!r})"

    def _method_options(self) -> list[str]:
        names = list(self.method.option_names()) if callable(getattr(self.method, "option_names", None)) else []
        if self.family == "cam":
            names += [o for o in _CAM_OPTIONS if o not in names]
        return names

    def option_names(self) -> list[str]:
        """The noise options plus the wrapped method's options."""
        own = super().option_names()
        return own + [o for o in self._method_options() if o not in own]

    def _attribute(
        self,
        x: torch.Tensor,
        target: TargetLike,
        nt_type: str = "smoothgrad",
        n_samples: int = 5,
        stdevs: float | None = None,
        noise_level: float | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        internal_batch_size: int | None = None,
        **options: Any,
    ) -> torch.Tensor:
        if options.get("return_convergence_delta"):
            raise ConfigError(
                "NoiseTunnel averages attributions only; call the wrapped method directly to get "
                "convergence deltas"
            )
        if nt_type not in NT_TYPES:
            raise ConfigError(f"unknown nt_type {nt_type!r}; valid: {', '.join(NT_TYPES)}")
        n = x.shape[0]
        if noise is not None:
            noise = torch.as_tensor(noise).to(device=x.device, dtype=x.dtype)
            shape_ok = noise.dim() == x.dim() + 1 and noise.shape[0] == n and noise.shape[2:] == x.shape[1:]
            if not shape_ok or noise.shape[1] < 1:
                raise InputError(
                    f"noise must be (N, n_samples, *x.shape[1:]) = ({n}, S, {', '.join(map(str, x.shape[1:]))}), "
                    f"got {tuple(noise.shape)}"
                )
            n_samples = noise.shape[1]
        elif not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
            raise ConfigError(f"n_samples must be a positive int, got {n_samples!r}")
        if noise is None:
            if stdevs is None and noise_level is None:
                stdevs = 1.0
            sigma = noise_std(x, stdevs, noise_level)
            streams = image_streams(n, generator, x.device)
        t = self.targets(x, target)
        if generator is not None and "generator" in self._method_options():
            options["generator"] = generator
        view = (-1,) + (1,) * (x.dim() - 1)
        s1: torch.Tensor | None = None
        s2: torch.Tensor | None = None
        work = n_samples * n
        chunk = self.chunk_size(x, work, internal_batch_size)
        # image-major expansion (item k is sample k % n_samples of image k // n_samples);
        # each item's noise comes from its image's own stream, in sample order
        for sl in chunk_slices(work, chunk):
            k = torch.arange(sl.start, sl.stop, device=x.device)
            img = k // n_samples
            if noise is not None:
                eps = noise[img, k % n_samples]
            else:
                eps = torch.stack(
                    [standard_normal(x.shape[1:], streams[i // n_samples], x) for i in range(sl.start, sl.stop)]
                ) * sigma[img].view(view)
            a = self.method.attribute(x[img] + eps, t[img], **options)
            if s1 is None or s2 is None:  # the first chunk (both are set together)
                s1 = torch.zeros((n, *a.shape[1:]), dtype=a.dtype, device=a.device)
                s2 = torch.zeros_like(s1)
            s1.index_add_(0, img.to(a.device), a)
            if nt_type != "smoothgrad":
                s2.index_add_(0, img.to(a.device), a * a)
        assert s1 is not None and s2 is not None  # work = n_samples * n >= 1: one chunk at least
        m1 = s1 / n_samples
        if nt_type == "smoothgrad":
            return m1
        m2 = s2 / n_samples
        return m2 if nt_type == "smoothgrad_sq" else m2 - m1 * m1


@register("smoothgrad", family="attribution", aliases=("smooth_grad",))
class SmoothGrad(NoiseTunnel):
    """SmoothGrad (Smilkov et al. 2017): Saliency averaged over noisy copies.

    Defaults follow the SmoothGrad paper: ``n_samples=50``,
    ``noise_level=0.15`` of each image's value range; ``abs=True`` as Saliency.
    """

    fast_options = MappingProxyType({"n_samples": 16})

    def __init__(
        self, model: nn.Module, *, output: OutputSelector = None, allow_train_mode: bool = False,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(Saliency(model, output=output, allow_train_mode=allow_train_mode, num_classes=num_classes))

    def _attribute(
        self,
        x: torch.Tensor,
        target: TargetLike,
        nt_type: str = "smoothgrad",
        n_samples: int = 50,
        stdevs: float | None = None,
        noise_level: float | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        internal_batch_size: int | None = None,
        **options: Any,
    ) -> torch.Tensor:
        if stdevs is None and noise_level is None:
            noise_level = 0.15
        return super()._attribute(
            x, target, nt_type, n_samples, stdevs, noise_level, noise, generator,
            internal_batch_size, **options,
        )
