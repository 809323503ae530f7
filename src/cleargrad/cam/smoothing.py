"""The smoothing options of every CAM: ``aug_smooth`` and ``eigen_smooth``.

Both are options of ``attribute`` / ``attribute_layers`` of every CAM method, with
pytorch-grad-cam's definitions:

* ``eigen_smooth=True``: wherever a method sums its weighted activations ``w_k A^k`` over
  the channels, it takes their first principal component instead
  (:func:`~cleargrad.cam.projection.first_component`: centred per channel, our sign
  convention ``|max| >= |min|``; pytorch-grad-cam keeps the SVD solver's arbitrary sign).
  Methods that already are a projection (EigenCAM, KPCA-CAM, EigenGradCAM) do not change;
  FullGrad projects its per-layer maps at 1/8 of the input size, as pytorch-grad-cam.
* ``aug_smooth=True``: test-time augmentation. The map is computed for the six inputs
  ``f · flip(x)`` with ``flip`` in {none, horizontal} and ``f`` in {0.9, 1, 1.1} (ttach's
  ``HorizontalFlip`` × ``Multiply``, pytorch-grad-cam's default), each map rectified (as
  ``relu`` says), min–max normalised per image, flipped back and averaged. With
  ``normalize=False`` the result is that average (pytorch-grad-cam's output); with
  ``normalize=True`` it is normalised once more. ``target=None`` is resolved once, on
  the original input, so every augmented input explains the same class (pytorch-grad-cam
  takes each augmented input's own argmax). Costs six calls.

:func:`smoothed_layers` is reached from a marked hook at the top of
:meth:`cleargrad.cam.BaseCAM.attribute_layers`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core import check_input, gradient_call, model_input, preserved_state, resolve_targets, select_output
from ..core.maps import minmax_normalize as normalize_maps
from ..core.targets import TargetLike
from ..errors import ConfigError
from .projection import EIGEN_SMOOTH

#: the CAM base and its result (cam.base imports this module: named, not imported, here)
BaseCAM = Any
CAMMaps = Any

__all__ = ["AUG_FACTORS", "SMOOTHING_OPTIONS", "augmentations", "smoothed_layers"]

#: the multiplicative factors of aug_smooth (ttach.Multiply in pytorch-grad-cam's default)
AUG_FACTORS = (0.9, 1.0, 1.1)
#: the option names this module adds to every CAM
SMOOTHING_OPTIONS = ("aug_smooth", "eigen_smooth")


def augmentations() -> list[tuple[bool, float]]:
    """``(hflip, factor)`` pairs in ttach's order (flip outer, factor inner)."""
    return [(flip, f) for flip in (False, True) for f in AUG_FACTORS]


def _flip(t: torch.Tensor) -> torch.Tensor:
    return t.flip(-1)


def _check_flag(name: str, v: object) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{name} must be True or False, got {v!r}")
    return v


def _clean_targets(cam: BaseCAM, x: torch.Tensor) -> torch.Tensor:
    """The argmax of the clean input (one guarded forward pass)."""
    with gradient_call(cam.model), preserved_state(cam.model, allow_train_mode=cam.allow_train_mode), torch.no_grad():
        scores = select_output(cam.model(model_input(cam.model, x.detach())), cam.output)
    return resolve_targets(None, x.shape[0], scores=scores)


def smoothed_layers(
    cam: BaseCAM,
    x: torch.Tensor,
    target: TargetLike,
    *,
    upsample: bool,
    normalize: bool,
    relu: bool,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    **options: Any,
) -> CAMMaps:
    """``cam.attribute_layers`` with the smoothing options applied (module docstring)."""
    aug = _check_flag("aug_smooth", aug_smooth)
    eig = _check_flag("eigen_smooth", eigen_smooth)
    token = EIGEN_SMOOTH.set(eig)
    try:
        if not aug:
            return cam.attribute_layers(x, target, upsample=upsample, normalize=normalize, relu=relu, **options)
        check_input(x, ndim=cam.input_rank())
        if target is None:
            target = _clean_targets(cam, x)
        total: Any = None
        acc_maps: list[torch.Tensor] = []
        acc_fused: torch.Tensor | None = None
        for flip, factor in augmentations():
            xa = _flip(x) if flip else x
            xa = xa * factor if factor != 1.0 else xa
            res = cam.attribute_layers(xa, target, upsample=upsample, normalize=True, relu=relu, **options)
            maps = [_flip(m) if flip else m for m in res.maps]
            fused = _flip(res.fused) if flip else res.fused
            if acc_fused is None:  # the first augmentation (total is set with it)
                total, acc_maps, acc_fused = res, maps, fused
            else:
                acc_maps = [a + m for a, m in zip(acc_maps, maps)]
                acc_fused = acc_fused + fused
        assert total is not None and acc_fused is not None
        n = len(augmentations())
        maps = [m / n for m in acc_maps]
        fused = acc_fused / n
        if normalize:
            maps = [normalize_maps(m) for m in maps]
            fused = normalize_maps(fused)
        if len(maps) == 1:
            fused = maps[0]
        return type(total)(total.layers, tuple(maps), fused)  # a CAMMaps, as attribute_layers returns
    finally:
        EIGEN_SMOOTH.reset(token)
