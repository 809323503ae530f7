"""Token layers as CAM activations: from ``(N, T, D)`` or ``(N, h, w, D)`` to ``(N, D, h, w)``.

CAM methods weigh the channels of a spatial activation ``(N, K, h, w)``. Vision
transformers give other layouts:

* a token sequence ``(N, T, D)`` (ViT, DeiT, timm ViTs): ``p`` prefix tokens (the class
  token, a distillation token, register tokens) followed by ``h·w`` patch tokens in
  row-major order;
* channels-last maps ``(N, h, w, D)`` (torchvision's Swin stages, timm's Swin).

A :class:`Layout` turns such an output into the ``(N, D, h, w)`` activation the CAMs
weigh; the same layout turns the layer's gradient (which has the layer output's shape).
It is found by :func:`resolve_layout` from a *reshape spec*:

* ``"auto"`` (default): 4-D outputs stay channels-first unless only the channels-last
  reading matches the input's grid; 3-D outputs are read as tokens, the prefix count and
  the grid inferred from the token count and the input size (the grid must follow the
  input's aspect ratio; a patch size that divides the input is preferred, then the
  fewest prefix tokens);
* ``None``: no reshape: the layer must give ``(N, K, h, w)``;
* ``"channels_last"`` (``"nhwc"``): ``(N, h, w, D)``;
* :class:`TokenGrid` ``(prefix, grid)``: tokens with an explicit prefix count and/or grid;
  the token count must equal ``prefix + h·w`` (a :class:`~cleargrad.LayerError` names both
  counts otherwise);
* a callable ``f(out) -> (N, D, h, w)``, as pytorch-grad-cam's ``reshape_transform``; it
  must only move, select or reshape elements (a gather) for Ablation-CAM.

For a volume input ``(N, C, D, H, W)`` (3-D CNNs) the activation is a channels-first
``(N, K, d, h, w)`` feature map: ``"auto"`` and ``None`` take 5-D layer outputs as they are,
a callable must return ``(N, K, d, h, w)``, and token or channels-last readings are refused
with a :class:`~cleargrad.LayerError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch

from ..errors import ConfigError, LayerError

__all__ = [
    "MAX_PREFIX_TOKENS",
    "Layout",
    "ReshapeSpec",
    "TokenGrid",
    "grid_matches",
    "infer_token_grid",
    "resolve_layout",
]

#: the most prefix tokens ``"auto"`` considers (class + distillation + up to 14 registers)
MAX_PREFIX_TOKENS = 16

#: the names of the channels-last layout (``"nhwc"`` is the short form)
CHANNELS_LAST_NAMES = ("channels_last", "nhwc")
_CHANNELS_LAST = CHANNELS_LAST_NAMES


@dataclass(frozen=True)
class TokenGrid:
    """An explicit token layout: ``prefix`` leading tokens, then the patch grid ``(h, w)``.

    Either may be None: ``TokenGrid(prefix=1)`` infers the grid from the token count and
    the input size; ``TokenGrid(grid=(14, 14))`` takes every token before the grid as a
    prefix token.
    """

    prefix: int | None = 1
    grid: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.prefix is not None and (not isinstance(self.prefix, int) or self.prefix < 0):
            raise ConfigError(f"TokenGrid prefix must be a non-negative int, got {self.prefix!r}")
        if self.grid is not None:
            g = tuple(self.grid)
            if len(g) != 2 or not all(isinstance(v, int) and v > 0 for v in g):
                raise ConfigError(f"TokenGrid grid must be two positive ints (h, w), got {self.grid!r}")
            object.__setattr__(self, "grid", g)


ReshapeSpec = Union[None, str, TokenGrid, Callable[[torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class Layout:
    """How one layer's output becomes an ``(N, D, h, w)`` activation.

    ``kind`` is ``"nchw"`` (as it is), ``"nhwc"`` (channels last), ``"tokens"`` (drop
    ``prefix`` tokens, lay the rest on ``grid``) or ``"callable"`` (``fn``).
    """

    kind: str
    prefix: int = 0
    grid: tuple[int, int] | None = None
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def identity(self) -> bool:
        """True when the output is used as it is."""
        return self.kind == "nchw"

    def apply(self, t: torch.Tensor) -> torch.Tensor:
        """The ``(N, D, h, w)`` view (or copy) of a layer output or of its gradient."""
        if self.kind == "nchw":
            return t
        if self.kind == "nhwc":
            return t.permute(0, 3, 1, 2)
        if self.kind == "tokens":
            assert self.grid is not None
            n, _, d = t.shape
            return t[:, self.prefix :].transpose(1, 2).reshape(n, d, *self.grid)
        assert self.fn is not None
        return self.fn(t)

    def describe(self) -> str:
        """A short human-readable description (used in messages and reports)."""
        if self.kind == "tokens":
            assert self.grid is not None
            return f"{self.prefix} prefix + {self.grid[0]}x{self.grid[1]} tokens"
        return {"nchw": "channels first", "nhwc": "channels last", "callable": "custom reshape"}[self.kind]

    def source_index(self, raw_shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """For each element of one image's ``(D, h, w)`` activation, the flat position in
        that image's raw layer output it comes from (``(D, h, w)`` long tensor; ``(D, d, h, w)``
        for a volume layer).

        Found by applying the layout to a tensor holding its own positions, so it works for
        custom reshapes too; raises :class:`~cleargrad.LayerError` when the reshape does not
        just move elements (e.g. interpolates), which Ablation-CAM cannot invert.
        """
        numel = 1
        for s in raw_shape[1:]:
            numel *= int(s)
        probe = torch.arange(numel, dtype=torch.float64, device=device).view(1, *raw_shape[1:])
        idx = self.apply(probe)
        if idx.dim() not in (4, 5) or idx.shape[0] != 1 or not bool((idx == idx.round()).all()):
            raise LayerError(
                "the layer's reshape does not only move elements of the layer output (it computes new "
                "values), so ablating a channel cannot be written back; use a reshape that selects, "
                "permutes or reshapes, or another CAM method"
            )
        return idx[0].round().long()


def grid_matches(h: int, w: int, height: int, width: int) -> bool:
    """``(h, w)`` is a plausible feature grid of an ``height × width`` input (same aspect
    ratio up to one cell of rounding, no larger than the input)."""
    if h < 1 or w < 1 or h > height or w > width:
        return False
    return abs(h / height - w / width) <= 1.0 / height + 1.0 / width + 1e-12


def _integer_stride(h: int, w: int, height: int, width: int) -> bool:
    return height % h == 0 and width % w == 0 and height // h == width // w


def _grids(n: int, height: int, width: int) -> list[tuple[int, int]]:
    out = []
    for h in range(1, n + 1):
        if n % h == 0 and grid_matches(h, n // h, height, width):
            out.append((h, n // h))
    return out


def infer_token_grid(
    tokens: int, size: Sequence[int], prefix: int | None = None
) -> tuple[int, tuple[int, int]] | None:
    """``(prefix, (h, w))`` such that ``tokens = prefix + h·w`` with ``(h, w)`` a grid of the
    input ``size = (H, W)``, or None when there is none.

    Candidates with a patch size that divides the input (``H/h = W/w`` integer) come first,
    then the fewest prefix tokens (``prefix`` fixes the count instead, up to
    :data:`MAX_PREFIX_TOKENS` otherwise).
    """
    height, width = int(size[0]), int(size[1])
    prefixes = [prefix] if prefix is not None else range(0, min(tokens, MAX_PREFIX_TOKENS + 1))
    best: tuple[int, int, tuple[int, int]] | None = None
    for p in prefixes:
        n = tokens - p
        if n < 1:
            continue
        for g in _grids(n, height, width):
            rank = (0 if _integer_stride(*g, height, width) else 1, p)
            if best is None or rank < best[:2]:
                best = (*rank, g)
    if best is None:
        return None
    g = best[2]
    return tokens - g[0] * g[1], g


def _shape(out: Any) -> str:
    return str(tuple(out.shape)) if isinstance(out, torch.Tensor) else type(out).__name__


def resolve_layout(spec: ReshapeSpec, out: Any, size: Sequence[int] | None, name: str) -> Layout:
    """The :class:`Layout` of layer ``name``'s output ``out`` for an input of spatial
    ``size`` under the reshape ``spec`` (see the module docstring).

    Raises:
        LayerError: the output cannot be read as asked (the message names the shapes and
            token counts), or the layer does not return a tensor.
        ConfigError: the spec itself is not valid.
    """
    if not isinstance(out, torch.Tensor):
        raise LayerError(
            f"layer {name!r} returns {_shape(out)}, not a tensor; CAM methods need a layer whose output is "
            "(N, K, h, w) feature maps or (N, T, D) tokens: pick one of its submodules"
        )
    if size is not None and len(size) == 3:
        return _volume_layout(spec, out, tuple(int(v) for v in size), name)
    hw = (int(size[0]), int(size[1])) if size is not None else None
    if spec is None:
        if out.dim() != 4:
            raise LayerError(
                f"layer {name!r} returns {_shape(out)}, but with reshape=None CAM methods need a 4-D "
                "(N, K, h, w) output; use reshape='auto' for transformer token layers"
            )
        return Layout("nchw")
    if callable(spec) and not isinstance(spec, (str, TokenGrid)):
        return _callable_layout(spec, out, name, 4, "the reshape callable must turn", "(N, D, h, w)")
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in _CHANNELS_LAST:
            if out.dim() != 4:
                raise LayerError(f"layer {name!r} returns {_shape(out)}; reshape='channels_last' needs (N, h, w, D)")
            return Layout("nhwc")
        if key != "auto":
            raise ConfigError(
                f"reshape must be 'auto', None, 'channels_last', a TokenGrid or a callable, got {spec!r}"
            )
        return _auto_layout(out, hw, name)
    if isinstance(spec, TokenGrid):
        return _token_layout(out, hw, name, spec)
    raise ConfigError(f"reshape must be 'auto', None, 'channels_last', a TokenGrid or a callable, got {spec!r}")


def _callable_layout(spec: Callable[[torch.Tensor], torch.Tensor], out: torch.Tensor, name: str, rank: int,
                     must: str, form: str) -> Layout:
    """The layout of a user's reshape callable, after one trial call on the layer's output:
    it must give a ``rank``-D tensor with the output's batch size (``form`` in the error)."""
    try:
        res = spec(out)
    except Exception as e:  # a user function: say which layer it failed on
        raise LayerError(f"the reshape callable failed on layer {name!r} output {_shape(out)}: {e}") from e
    if not isinstance(res, torch.Tensor) or res.dim() != rank or res.shape[0] != out.shape[0]:
        raise LayerError(f"{must} layer {name!r} output {_shape(out)} into {form} with N={out.shape[0]}, "
                         f"got {_shape(res)}")
    return Layout("callable", fn=spec)


def _volume_layout(spec: ReshapeSpec, out: torch.Tensor, dhw: tuple[int, ...], name: str) -> Layout:
    """The layout of a layer of a model explained on a ``(N, C, D, H, W)`` volume input: a
    channels-first ``(N, K, d, h, w)`` feature map (``"auto"`` or ``None``), or a callable
    giving one. Token layers and channels-last readings are 2-D only."""
    if callable(spec) and not isinstance(spec, (str, TokenGrid)):
        return _callable_layout(spec, out, name, 5, "for a (N, C, D, H, W) input the reshape callable must turn",
                                "(N, K, d, h, w)")
    if spec is not None and not (isinstance(spec, str) and spec.strip().lower() == "auto"):
        if isinstance(spec, str) and spec.strip().lower() not in _CHANNELS_LAST:
            raise ConfigError(
                f"reshape must be 'auto', None, 'channels_last', a TokenGrid or a callable, got {spec!r}"
            )
        raise LayerError(
            f"reshape={spec!r} reads 2-D token grids or channels-last (N, h, w, D) maps, but the input is a "
            f"(N, C, D, H, W) volume of size {dhw}: CAMs on volumes need a channels-first (N, K, d, h, w) "
            "layer; use reshape='auto', or a callable returning (N, K, d, h, w)"
        )
    if out.dim() != 5:
        raise LayerError(
            f"layer {name!r} returns {_shape(out)}, but for a (N, C, D, H, W) input CAM methods need a 5-D "
            "(N, K, d, h, w) feature map (token layers of video transformers are not read automatically: "
            "pass reshape= a callable returning (N, K, d, h, w)); pick a Conv3d block (layer='auto' finds "
            "the last one)"
        )
    return Layout("nchw")


def _auto_layout(out: torch.Tensor, hw: tuple[int, int] | None, name: str) -> Layout:
    if out.dim() == 4:
        if hw is None:
            return Layout("nchw")
        _, a, b, c = out.shape
        if not grid_matches(b, c, *hw) and grid_matches(a, b, *hw):
            return Layout("nhwc")
        return Layout("nchw")
    if out.dim() == 3 and hw is not None:
        return _token_layout(out, hw, name, TokenGrid(prefix=None))
    raise LayerError(
        f"layer {name!r} returns {_shape(out)}, but CAM methods need 4-D (N, K, h, w) feature maps, (N, T, D) "
        "tokens or 4-D (N, h, w, D) channels-last maps; pick another layer (layer='auto' finds the last "
        "suitable one)"
    )


def _token_layout(out: torch.Tensor, hw: tuple[int, int] | None, name: str, spec: TokenGrid) -> Layout:
    if out.dim() != 3:
        raise LayerError(f"layer {name!r} returns {_shape(out)}; a token reshape needs an (N, T, D) output")
    tokens = int(out.shape[1])
    if spec.grid is not None:
        h, w = spec.grid
        prefix = tokens - h * w if spec.prefix is None else spec.prefix
        if prefix < 0 or prefix + h * w != tokens:
            want = f"{spec.prefix} prefix + " if spec.prefix is not None else ""
            raise LayerError(
                f"layer {name!r} returns {tokens} tokens {_shape(out)}, but reshape {spec} expects "
                f"{want}{h}x{w} = {(spec.prefix or 0) + h * w} tokens; the token count must be the number of "
                "prefix tokens plus h*w"
            )
        return Layout("tokens", prefix, (h, w))
    if hw is None:
        raise LayerError(f"layer {name!r}: the token grid cannot be inferred without the input size; give grid=")
    found = infer_token_grid(tokens, hw, spec.prefix)
    if found is None:
        if spec.prefix is not None:
            why = f"{tokens} - {spec.prefix} prefix = {tokens - spec.prefix} tokens do not form a grid"
        else:
            why = f"{tokens} tokens are not 0-{MAX_PREFIX_TOKENS} prefix tokens plus a grid"
        raise LayerError(
            f"layer {name!r} returns {_shape(out)}: {why} matching the {hw[0]}x{hw[1]} input; pass "
            "reshape=TokenGrid(prefix=P, grid=(h, w)) or a callable returning (N, D, h, w)"
        )
    prefix, grid = found
    return Layout("tokens", prefix, grid)
