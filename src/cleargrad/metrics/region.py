"""Convex-hull regions of importance maps, Region Complexity and Region Sensitivity.

Spec section 3.7 (GAD paper + documented proposals). A saliency is first reduced to
a 2-D map ``S`` (``reduction``, any channel count: a signed attribution counts by
``|a|``; ``reduction="none"`` keeps a 1-channel map as given). The important pixels of
``S`` are ``P = {S >= threshold * max S}`` (none when ``max S <= 0``); the region is
the set of pixels whose *centre* lies inside or on the convex hull of the centres of
``P`` (a filled polygon). The hull is computed by scikit-image
(``convex_hull_image`` with ``offset_coordinates=False``, which runs Qhull and a
point-in-polygon test that counts vertices and edges as inside). Qhull cannot build
a 2-D hull of fewer than three non-collinear points; those degenerate sets are
handled exactly: one pixel gives that pixel, collinear pixels give the pixels whose
centres lie on the segment between the two extreme points (the zero-area hull).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy import ndimage
from skimage.morphology import convex_hull_image
from torch import nn

from ..core import check_input
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError, InputError
from .base import metric
from .maps import as_float_tensor, mark_undefined, prepare_maps
from .scoring import NormStat, chunked_scores, clean_scores, evaluating, from_pixel

__all__ = [
    "FILLS",
    "GROUPINGS",
    "RegionSensitivity",
    "convex_hull_region",
    "occlude",
    "region_complexity",
    "region_sensitivity",
]

GROUPINGS = ("single", "components")
FILLS = ("black", "mean", "zero_normalised")
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity


def _degenerate_hull(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """The exact zero-area hull of one pixel or collinear pixels; None if the set spans 2-D."""
    a = points[0]
    far = points[np.abs(points - a).sum(1).argmax()]
    d = far - a
    rel = points - a
    if np.any(rel[:, 0] * d[1] - rel[:, 1] * d[0] != 0):
        return None  # not collinear: a proper polygon
    t = rel @ d
    e0, e1 = points[t.argmin()], points[t.argmax()]
    step = e1 - e0
    g = math.gcd(int(abs(step[0])), int(abs(step[1])))
    out = np.zeros(shape, dtype=bool)
    if g == 0:
        out[e0[0], e0[1]] = True
        return out
    k = np.arange(g + 1)[:, None]
    pix = e0 + k * (step // g)  # every lattice point (pixel centre) on the segment
    out[pix[:, 0], pix[:, 1]] = True
    return out


def _hull(mask: np.ndarray) -> np.ndarray:
    """Filled convex hull (by pixel centres) of the ``True`` pixels of a 2-D mask."""
    points = np.argwhere(mask)
    if len(points) == 0:
        return np.zeros(mask.shape, dtype=bool)
    deg = _degenerate_hull(points, mask.shape)
    if deg is not None:
        return deg
    return convex_hull_image(mask, offset_coordinates=False, include_borders=True)


def _region_of(s: np.ndarray, threshold: float, grouping: str) -> np.ndarray:
    peak = float(s.max())
    if not peak > 0:
        return np.zeros(s.shape, dtype=bool)
    p = s >= threshold * peak
    if grouping == "single":
        return _hull(p)
    labels, k = ndimage.label(p, structure=_EIGHT)
    out = np.zeros(s.shape, dtype=bool)
    for i in range(1, k + 1):
        out |= _hull(labels == i)
    return out


def convex_hull_region(
    saliency: Any,
    threshold: float = 0.1,
    grouping: str = "single",
    *,
    reduction: str = "abs_sum",
) -> torch.Tensor:
    """Boolean region enclosing the important pixels of each map by a convex hull.

    Args:
        saliency: maps ``(N, 1, H, W)`` or ``(N, H, W)``, a pixel attribution
            ``(N, C, H, W)`` (reduced to 2-D with ``reduction``), or one map ``(H, W)``;
            tensor or numpy array.
        threshold: a pixel is important when ``S >= threshold * max S`` (paper: 0.1).
            A map whose maximum is ``<= 0`` has no important pixel: empty region.
        grouping: ``"single"`` (one hull around all important pixels, the paper's
            figure) or ``"components"`` (one hull per 8-connected component of the
            important pixels, region = their union) [proposal].
        reduction: 2-D reduction of the attribution, any channel count (a signed
            1-channel attribution becomes ``|a|``); ``"none"``: a 1-channel map used as given.

    Returns:
        A ``torch.bool`` tensor ``(N, H, W)`` (``(H, W)`` for a single 2-D map) on the
        input's device. The hull itself is computed on the CPU (scikit-image).
    """
    if grouping not in GROUPINGS:
        raise ConfigError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1] (a fraction of the map's maximum), got {threshold}")
    single = getattr(saliency, "ndim", None) == 2
    s = prepare_maps(saliency, reduction=reduction, name="saliency")[:, 0]
    arr = s.detach().to("cpu", torch.float64).numpy()
    regions = np.stack([_region_of(m, float(threshold), grouping) for m in arr])
    out = torch.from_numpy(regions).to(s.device)
    return out[0] if single else out


def _bool_region(a: Any, name: str, *, binary_float: bool = False) -> torch.Tensor | None:
    """``a`` as a boolean region ``(N, H, W)`` if it is one (else None).

    With ``binary_float`` a float tensor holding only 0/1 counts as a region too, and
    any other float tensor is an error.
    """
    if isinstance(a, np.ndarray) and (a.dtype == np.bool_ or binary_float):
        a = torch.from_numpy(np.ascontiguousarray(a))
    if not isinstance(a, torch.Tensor) or (a.dtype != torch.bool and not binary_float):
        return None
    r = a.detach()
    if r.dtype != torch.bool:
        r = as_float_tensor(r, name=name)
        if not bool(((r == 0) | (r == 1)).all()):
            raise InputError(
                f"{name} must be boolean (or hold only 0/1); to turn a saliency map into a region use "
                "cleargrad.metrics.convex_hull_region(map)"
            )
        r = r.bool()
    if r.dim() == 2:
        r = r[None]
    elif r.dim() == 4 and r.shape[1] == 1:
        r = r[:, 0]
    if r.dim() != 3:
        raise InputError(f"{name} must have shape (N, H, W), (N, 1, H, W) or (H, W), got {tuple(a.shape)}")
    return r


def _as_regions(a: Any, threshold: float, grouping: str, reduction: str, name: str) -> torch.Tensor:
    """A boolean region ``(N, H, W)``: boolean input is taken as a region, anything else as a map."""
    r = _bool_region(a, name)
    if r is not None:
        return r
    r = convex_hull_region(a, threshold, grouping, reduction=reduction)
    return r[None] if r.dim() == 2 else r


@metric(direction="lower", category="region", needs_model=False)
def region_complexity(
    map_a: Any,
    map_b: Any,
    *,
    threshold: float = 0.1,
    grouping: str = "single",
    reduction: str = "abs_sum",
) -> torch.Tensor:
    """Region Complexity RC = |R(map_a)| / |R(map_b)|: region size of a refined map relative to the original.

    ``map_a`` is the refined explanation (GAD's fused map), ``map_b`` the original
    one; each is a map (its convex-hull region is computed with
    :func:`convex_hull_region` and the given ``threshold``/``grouping``/``reduction``)
    or already a boolean region. RC < 1: the refined region is smaller.

    Returns:
        ``(N,)`` float tensor. Images where either region is empty (an all-zero map,
        or no value above ``threshold * max``: no important pixel) get NaN with a
        ``RuntimeWarning``: RC is undefined there (an empty refined region would
        otherwise score a perfect 0). Summarise with
        :func:`cleargrad.metrics.nan_summary`, which counts them. The ratio of sums
        (the other dataset value of spec 3.7) is ``R(map_a).sum() / R(map_b).sum()``.
    """
    ra = _as_regions(map_a, threshold, grouping, reduction, "map_a")
    rb = _as_regions(map_b, threshold, grouping, reduction, "map_b")
    if ra.shape != rb.shape:
        raise InputError(f"map_a gives regions of shape {tuple(ra.shape)} but map_b {tuple(rb.shape)}")
    na = ra.flatten(1).sum(1).double()
    nb = rb.flatten(1).sum(1).double()
    rc = (na / nb.clamp(min=1)).float()
    return mark_undefined(rc, (na == 0) | (nb == 0), "region_complexity", "an empty region (all-zero map)")


class RegionSensitivity(NamedTuple):
    """Result of :func:`region_sensitivity`, one value per image.

    Attributes:
        rs: score drop per unit of occluded area, ``drop / (|R| / (H W))``; NaN for an
            empty region (undefined; the image is skipped and counted by
            :func:`cleargrad.metrics.nan_summary`).
        drop: raw score drop ``a(I) - a(I_occluded)`` (0 for an empty region).
        area: occluded fraction ``|R| / (H W)``.
    """

    rs: torch.Tensor
    drop: torch.Tensor
    area: torch.Tensor

    @property
    def n_skipped(self) -> int:
        """Number of images with an empty region (RS undefined)."""
        return int((self.area == 0).sum())


def occlude(
    x: torch.Tensor,
    region: torch.Tensor,
    *,
    fill: str = "black",
    mean: NormStat = None,
    std: NormStat = None,
) -> torch.Tensor:
    """``x`` with the pixels of ``region`` ``(N, H, W)`` (all channels) replaced by ``fill``.

    ``"black"``: black in pixel space, i.e. ``(0 - mean) / std`` in the normalised
    tensor (with ``mean = std = None`` the input is taken to be in pixel space: 0);
    ``"mean"``: each image's own per-channel mean; ``"zero_normalised"``: 0 in the
    normalised tensor (the dataset mean colour).
    """
    if fill == "black":
        value = from_pixel(torch.zeros_like(x[:1, :, :1, :1]), mean, std)
    elif fill == "mean":
        value = x.mean(dim=(2, 3), keepdim=True)
    elif fill == "zero_normalised":
        value = torch.zeros((), dtype=x.dtype, device=x.device)
    else:
        raise ConfigError(f"fill must be one of {FILLS}, got {fill!r}")
    return torch.where(region[:, None].to(x.device), value, x)


@metric(direction="higher", category="region")
def region_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    region_mask: Any,
    target: TargetLike = None,
    *,
    fill: str = "black",
    mean: NormStat = None,
    std: NormStat = None,
    score: str = "logit",
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> RegionSensitivity:
    """Region Sensitivity RS: score drop when a region is occluded, per unit of occluded area.

    ``RS = (a(I) - a(I_occluded)) / (|R| / (H W))`` with ``a`` the pre-softmax score
    (``score="logit"``, the paper's choice; ``"prob"`` for the softmax probability)
    of the target class (None: the class predicted on ``x``).

    Args:
        model: the classifier (left exactly as found; evaluated in eval mode).
        x: normalised input batch ``(N, C, H, W)``.
        region_mask: boolean region per image, ``(N, H, W)``, ``(N, 1, H, W)`` or
            ``(H, W)`` for a single image, e.g. from :func:`convex_hull_region`; a
            float tensor of 0/1 values is accepted.
        target: class per image (int, sequence, LongTensor) or None.
        fill: occlusion value, see :func:`occlude` (default: black in pixel space,
            as the GAD authors' code; give ``mean``/``std`` of the normalisation).
        mean, std: per-channel normalisation of ``x`` (None: ``x`` is in pixel space).
        output: selector of the class scores for models returning tuples/dicts.
        batch_size: images per forward pass (default: about 2.4M input elements).

    Returns:
        :class:`RegionSensitivity` ``(rs, drop, area)``; an empty region is skipped
        (no forward pass), its RS is NaN (with a ``RuntimeWarning``) and it is counted by ``n_skipped`` and by
        :func:`cleargrad.metrics.nan_summary`.
    """
    check_input(x, ndim=4)
    if fill not in FILLS:
        raise ConfigError(f"fill must be one of {FILLS}, got {fill!r}")
    r = _bool_region(region_mask, "region_mask", binary_float=True)
    if r is None:
        raise InputError(f"region_mask must be a boolean tensor or array, got {type(region_mask).__name__}")
    if r.shape[0] != x.shape[0] or r.shape[-2:] != x.shape[-2:]:
        raise InputError(
            f"region_mask of shape {tuple(region_mask.shape)} does not match x of shape {tuple(x.shape)}; "
            "give one (H, W) region per image"
        )
    r = r.to(x.device)
    hw = x.shape[-2] * x.shape[-1]
    area = r.flatten(1).sum(1).to(x.dtype) / hw
    todo = torch.nonzero(area > 0).flatten()
    with evaluating(model):
        t, base = clean_scores(model, x, target, score=score, output=output, batch_size=batch_size)
        occluded = chunked_scores(
            model,
            lambda sl: occlude(x[todo[sl]], r[todo[sl]], fill=fill, mean=mean, std=std),
            t[todo],
            sample_shape=x.shape[1:],
            score=score,
            output=output,
            batch_size=batch_size,
        )
    drop = torch.zeros_like(base)
    drop[todo] = base[todo] - occluded.to(base.dtype)
    rs = torch.full_like(drop, float("nan"))
    rs[todo] = drop[todo] / area[todo].to(drop.dtype)
    rs = mark_undefined(rs, area == 0, "region_sensitivity", "an empty region (all-zero map)")
    return RegionSensitivity(rs, drop, area)
