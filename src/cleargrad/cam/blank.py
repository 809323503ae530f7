"""The warning for a CAM that explains nothing: every image's map constant or all zero."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

__all__ = ["BlankMapWarning", "blank_images", "warn_if_blank"]

#: a map whose range is at most this fraction of its largest magnitude counts as constant
CONSTANT_RTOL = 1e-6


class BlankMapWarning(UserWarning):
    """A CAM came out constant (or all zero) for every image of a call."""


def blank_images(maps: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: whether each image's map is constant (all zero included), up to
    :data:`CONSTANT_RTOL` of its largest magnitude."""
    flat = maps.detach().flatten(1)
    lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    scale = flat.abs().amax(dim=1)
    return (hi - lo) <= CONSTANT_RTOL * scale


def warn_if_blank(maps: Sequence[torch.Tensor], layers: Sequence[str], owner: str, layer_spec: object) -> None:
    """Warn (:class:`BlankMapWarning`) for every layer whose map is blank for all images.

    ``maps`` are the rectified maps before upsampling, one per layer named in ``layers``;
    ``layer_spec`` is what the user passed as ``layer=`` (shown when it was ``"auto"``).
    """
    for m, name in zip(maps, layers):
        if m.shape[0] == 0 or not bool(blank_images(m).all()):
            continue
        how = f"layer='auto' resolved to {name!r}" if layer_spec == "auto" else f"layer {name!r}"
        size = "x".join(str(s) for s in m.shape[2:])
        warnings.warn(
            f"{owner}: the map is constant or all zero for every image ({how}, a {size} map); it explains "
            "nothing. Pick another layer with layer='<dotted name>' (an earlier convolutional block, or one "
            "with a larger map), or check the target",
            BlankMapWarning,
            stacklevel=4,
        )
