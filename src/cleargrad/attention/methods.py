"""Attention-based explanations of vision transformers: attention rollout and
gradient-weighted attention relevance.

Both read the attention probabilities ``A_b`` ``(N, heads, T, T)`` of every block ``b``
(:func:`~cleargrad.attention.capture.attention_probabilities`), build a ``T × T`` token
relevance matrix ``R`` and explain the class token: the map is the class token's row of
``R`` over the patch tokens, laid out on the patch grid ``(h, w)`` (prefix tokens dropped,
as the CAMs' token layers), then post-processed as the CAMs are (bilinear upsampling to
the input size, optional per-image min–max normalisation).

* :class:`AttentionRollout` (Abnar & Zuidema 2020, "Quantifying Attention Flow in
  Transformers"): ``Ã_b = (1 - r) fuse_h(A_b) + r I`` with rows re-normalised to sum to 1
  (``r = 0.5``, ``fuse`` the mean over heads: the paper), ``R = Ã_L ··· Ã_1``. It does not
  depend on the target class.
* :class:`AttentionRelevance` (Chefer, Gur & Wolf 2021, "Generic Attention-model
  Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", eqs. 5–6
  for self-attention): ``Ā_b = E_h[(∇A_b ⊙ A_b)^+]`` with ``∇A_b = ∂y_c/∂A_b`` the
  gradient of the target logit, ``R_0 = I``, ``R_b = R_{b-1} + Ā_b R_{b-1}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..core import gather_scores, register, resolve_targets, select_output
from ..core.maps import minmax_normalize, upsample_maps
from ..core.method import Method
from ..core.options import signature_options
from ..core.targets import OutputSelector, TargetLike
from ..core.tokens import TokenGrid, resolve_layout
from ..errors import ConfigError, LayerError
from ..runtime.layout import model_input
from .capture import AttentionMaps, attention_probabilities

__all__ = ["AttentionMethod", "AttentionRollout", "AttentionRelevance"]

_FUSIONS = ("mean", "max", "min")


class AttentionMethod(Method):
    """Base of the attention methods: model state, input checks, token grid and
    post-processing. Subclasses implement :meth:`_relevance` (``(N, T, T)``).

    ``model`` is a vision transformer whose attention modules can be read (torchvision
    ViT, timm ViT/DeiT; see :mod:`cleargrad.attention.capture`); ``output``,
    ``allow_train_mode`` and ``num_classes`` are :class:`~cleargrad.core.method.Method`'s.

    Args:
        tokens: the token layout, a :class:`~cleargrad.TokenGrid`; None (default) infers
            the prefix tokens and the grid from the token count and the input size.
    """

    family: ClassVar[str] = "attention"
    input_ndim: ClassVar[int | None] = 4
    post_options: ClassVar[tuple[str, ...]] = ("upsample", "normalize", "token")

    def __init__(
        self,
        model: nn.Module,
        *,
        output: OutputSelector = None,
        tokens: TokenGrid | None = None,
        allow_train_mode: bool = False,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(model, output=output, allow_train_mode=allow_train_mode, num_classes=num_classes)
        if tokens is not None and not isinstance(tokens, TokenGrid):
            raise ConfigError(f"tokens must be a TokenGrid or None, got {type(tokens).__name__}")
        self.tokens = tokens

    def attribute(
        self,
        x: torch.Tensor,
        target: TargetLike = None,
        *,
        upsample: bool = True,
        normalize: bool = False,
        token: int = 0,
        **options: Any,
    ) -> torch.Tensor:
        """The relevance map of the patches for ``x``, ``(N, 1, H, W)`` (or ``(N, 1, h, w)``).

        Args:
            x: input batch ``(N, C, H, W)``.
            target: class per image, or None for the argmax (unused by rollout).
            upsample: resize the map to ``(H, W)`` (bilinear); otherwise the patch grid.
            normalize: per-image min–max normalisation to ``[0, 1]``.
            token: the token whose row of the relevance matrix is shown (0: the class token).
            **options: the method's own options.
        """
        rel = self.guarded_call(x, target, options)
        n, t, _ = rel.shape
        layout = resolve_layout(
            self.tokens or TokenGrid(prefix=None), rel.new_zeros(1, t, 1), x.shape[-2:], "attention tokens"
        )
        if not isinstance(token, int) or not 0 <= token < t:
            raise ConfigError(f"token must be an int in [0, {t}), got {token!r}")
        row = rel[:, token, :].unsqueeze(-1)  # (N, T, 1)
        m = layout.apply(row).to(dtype=x.dtype)  # (N, 1, h, w)
        if upsample:
            m = upsample_maps(m, x.shape[-2:])
        if normalize:
            m = minmax_normalize(m)
        return m.contiguous()

    def option_names(self) -> list[str]:
        """The method's own options of :meth:`attribute` (besides ``upsample``,
        ``normalize`` and ``token``)."""
        return signature_options(self._relevance, skip=2)[0]

    def _run(self, x: torch.Tensor, target: TargetLike, options: dict[str, Any]) -> torch.Tensor:
        return self._relevance(x, target, **options).clone()

    if TYPE_CHECKING:  # the hook: each method takes its own keyword options
        _relevance: Callable[..., torch.Tensor]
    else:

        def _relevance(self, x: torch.Tensor, target: TargetLike, **options: Any) -> torch.Tensor:
            """The ``(N, T, T)`` token relevance matrix."""
            raise NotImplementedError

    def _check_maps(self, maps: AttentionMaps, n: int) -> None:
        if not maps.probs:
            raise LayerError(
                f"no attention module of {type(self.model).__name__} ran during the forward pass; "
                "attention methods need self-attention over the tokens"
            )
        shapes = {tuple(p.shape[-2:]) for p in maps.probs}
        batched = all(p.dim() == 4 and p.shape[0] == n for p in maps.probs)
        if not batched or len(shapes) != 1 or any(p.shape[-1] != p.shape[-2] for p in maps.probs):
            raise LayerError(
                f"the attention maps of {type(self.model).__name__} are not all over the same token set "
                f"(shapes {sorted(shapes)}: windowed or cross attention); attention rollout and relevance "
                "need global self-attention, as in ViT and DeiT (use a CAM on a token layer for Swin)"
            )


def _fuse_heads(a: torch.Tensor, how: str) -> torch.Tensor:
    if how == "mean":
        return a.mean(dim=1)
    if how == "max":
        return a.amax(dim=1)
    return a.amin(dim=1)


@register("attention_rollout", family="attention", aliases=("rollout",))
class AttentionRollout(AttentionMethod):
    """Attention rollout (Abnar & Zuidema 2020): the product of the blocks' head-fused
    attention matrices with the residual identity; class-agnostic.

    ``attribute(x, target=None, upsample=True, normalize=False, token=0, head_fusion="mean",
    residual=0.5, discard_ratio=0.0)``

    Options:
        head_fusion: ``"mean"`` (the paper), ``"max"`` or ``"min"`` over the heads.
        residual: weight ``r`` of the identity in ``(1 - r) A + r I`` (0.5, the paper).
        discard_ratio: fraction of the smallest entries of each fused matrix set to 0
            before adding the identity (a popular variant; 0, off, is the paper). The
            entry of the explained token with itself is never discarded.

    ``target`` is validated like every method's and does not change the map.
    """

    def _relevance(
        self,
        x: torch.Tensor,
        target: TargetLike,
        head_fusion: str = "mean",
        residual: float = 0.5,
        discard_ratio: float = 0.0,
    ) -> torch.Tensor:
        if head_fusion not in _FUSIONS:
            raise ConfigError(f"head_fusion must be one of {_FUSIONS}, got {head_fusion!r}")
        if not 0.0 <= float(residual) <= 1.0:
            raise ConfigError(f"residual must be in [0, 1], got {residual!r}")
        if not 0.0 <= float(discard_ratio) < 1.0:
            raise ConfigError(f"discard_ratio must be in [0, 1), got {discard_ratio!r}")
        with torch.inference_mode(), attention_probabilities(self.model) as maps:
            scores = select_output(self.model(model_input(self.model, x)), self.output)
        self._check_maps(maps, x.shape[0])
        resolve_targets(target, x.shape[0], scores=scores)  # validated, though the map does not use it
        n, t = x.shape[0], maps.probs[0].shape[-1]
        eye = torch.eye(t, device=maps.probs[0].device, dtype=maps.probs[0].dtype)
        rollout = eye.expand(n, t, t).clone()
        for p in maps.probs:
            a = _fuse_heads(p, head_fusion)
            if discard_ratio > 0:
                flat = a.reshape(n, -1).clone()
                k = int(flat.shape[1] * discard_ratio)
                if k:
                    low = flat.topk(k, dim=1, largest=False).indices
                    keep_self = low != 0  # entry (0, 0) stays
                    flat.scatter_(1, low, torch.where(keep_self, 0.0, flat.gather(1, low)))
                a = flat.view(n, t, t)
            a = (1.0 - residual) * a + residual * eye
            a = a / a.sum(dim=-1, keepdim=True)
            rollout = a @ rollout
        return rollout.clone()


@register(
    "attention_relevance",
    family="attention",
    aliases=("chefer", "gradient_attention", "generic_attention", "transformer_attribution"),
)
class AttentionRelevance(AttentionMethod):
    """Gradient-weighted attention relevance (Chefer, Gur & Wolf 2021): ``R += E_h[(∇A ⊙ A)^+] R``
    over the blocks, class-specific.

    ``attribute(x, target=None, upsample=True, normalize=False, token=0)``

    One forward and one backward pass (no parameter gradients); ``∇A`` is the gradient of
    the target logit with respect to each block's attention probabilities.
    """

    def _relevance(self, x: torch.Tensor, target: TargetLike) -> torch.Tensor:
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)  # parameters are frozen: the graph starts here
            with attention_probabilities(self.model) as maps:
                scores = select_output(self.model(model_input(self.model, xg)), self.output)
            self._check_maps(maps, x.shape[0])
            t = resolve_targets(target, x.shape[0], scores=scores)
            grads = maps.gradients(gather_scores(scores, t).sum())
        n, tok = x.shape[0], maps.probs[0].shape[-1]
        with torch.no_grad():
            r = torch.eye(tok, device=x.device, dtype=maps.probs[0].dtype).expand(n, tok, tok).clone()
            for p, g in zip(maps.probs, grads):
                cam = F.relu(g * p.detach()).mean(dim=1)
                r = r + cam @ r
        return r
