"""The base classes of pixel-level attribution methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..core import contiguous_result, gather_scores, plan_chunk, relu_rule, resolve_targets
from ..core.inputs import conv_input_ndim
from ..core.method import Method
from ..core.options import signature_options
from ..core.targets import TargetLike

__all__ = ["Attribution", "GradientAttribution", "conv_input_ndim"]


class Attribution(Method):
    """Base class of pixel-level methods: validates the input, guards the model's state,
    resolves targets (see :class:`~cleargrad.core.method.Method`).

    Subclasses implement :meth:`_attribute`; its keyword parameters are the options of
    :meth:`attribute`. Every public call leaves the model exactly as it found it (module
    modes, ``requires_grad`` flags, existing ``.grad``, and buffers when
    ``allow_train_mode=True``), also when it raises. The constructor's arguments are
    :class:`~cleargrad.core.method.Method`'s (``model``, ``output``, ``allow_train_mode``,
    ``num_classes``).
    """

    family: ClassVar[str] = "attribution"

    def input_rank(self) -> int | None:
        """:attr:`input_ndim`, else the rank the model's first convolution takes."""
        return self.input_ndim or conv_input_ndim(self.model)

    def option_names(self) -> list[str]:
        """The options :meth:`attribute` takes (besides ``x`` and ``target``)."""
        return signature_options(self._attribute, skip=2)[0]

    def _run(self, x: torch.Tensor, target: TargetLike, options: dict[str, Any]) -> Any:
        return contiguous_result(self._attribute(x, target, **options))

    if TYPE_CHECKING:  # the hook: each method takes its own keyword options
        _attribute: Callable[..., Any]  # a map, or (map, deltas)
    else:

        def _attribute(self, x: torch.Tensor, target: TargetLike, **options: Any) -> torch.Tensor:
            raise NotImplementedError

    # helpers for subclasses -------------------------------------------------------
    def chunk_size(self, x: torch.Tensor, total: int, requested: int | None) -> int:
        """Inputs per gradient pass of a loop over ``total`` inputs shaped like ``x``'s:
        ``requested`` (the ``internal_batch_size`` option) or the default, checked to fit in
        memory before the loop starts (:func:`~cleargrad.core.plan_chunk`)."""
        return plan_chunk(self.model, x.shape[1:], total=total, requested=requested, device=x.device,
                          dtype=x.dtype, grad=True, option="internal_batch_size")


class GradientAttribution(Attribution):
    """Base of methods built on ``d score / d input`` (optionally with a ReLU rule)."""

    batch_gradient: ClassVar[bool] = True

    #: modified ReLU backward rule: None, ``"guided"`` or ``"deconv"``
    relu_rule: ClassVar[str | None] = None

    def gradients(
        self, x: torch.Tensor, target: TargetLike | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gradient of each image's target score w.r.t. that image.

        Returns ``(grad, scores, targets)``; when ``target`` is None the targets are the
        argmax of this very forward pass (no extra pass).
        """
        xi = x.detach().requires_grad_(True)
        with torch.enable_grad():
            with relu_rule(self.relu_rule):  # the rule's backward is in the graph
                s = self.scores(xi)
            t = resolve_targets(target, x.shape[0], scores=s)
            (g,) = torch.autograd.grad(gather_scores(s, t).sum(), xi)
        return g, s.detach(), t
