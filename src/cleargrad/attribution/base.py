"""The base classes of pixel-level attribution methods."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..core import (
    check_input,
    contiguous_result,
    fast_layout_call,
    gather_scores,
    gradient_call,
    model_input,
    normal_options,
    normal_tensor,
    plan_chunk,
    preserved_state,
    relu_rule,
    resolve_targets,
    select_output,
)
from ..core.memplan import check_batch
from ..core.options import (
    check_common_options,
    check_finite_result,
    check_options,
    diagnose_model_error,
    signature_options,
    watch_scores,
)
from ..core.target_objects import bind_targets
from ..core.targets import OutputSelector, TargetLike

__all__ = ["Attribution", "GradientAttribution", "conv_input_ndim"]

_CONV_RANK = ((nn.Conv1d, 3), (nn.Conv2d, 4), (nn.Conv3d, 5))


def conv_input_ndim(model: nn.Module) -> int | None:
    """Batch rank a convolutional model expects (4 for Conv2d), from its first convolution.

    ``None`` when the model has no convolution (any rank >= 2 is accepted then). Used to
    refuse e.g. a ``(C, H, W)`` image without its batch dimension, which ``Conv2d`` would
    otherwise silently treat as an unbatched input.
    """
    for m in model.modules():
        for cls, rank in _CONV_RANK:
            if isinstance(m, cls):
                return rank
    return None


class Attribution:
    """Base class: validates the input, guards the model's state, resolves targets.

    Subclasses implement :meth:`_attribute`. Every public call leaves the model exactly
    as it found it (module modes, ``requires_grad`` flags, existing ``.grad``, and
    buffers when ``allow_train_mode=True``), also when it raises.

    Args:
        model: the classifier; its forward returns ``(N, C)`` scores, or anything from
            which ``output`` selects them.
        output: selector for models whose forward returns a tuple/dict: a key, an
            index or a callable applied to the forward's result.
        allow_train_mode: explain a model in training mode instead of raising
            :class:`~cleargrad.ModelStateError`.
    """

    #: registry family (``"attribution"`` or ``"cam"``)
    family: ClassVar[str] = "attribution"
    #: input rank required by the method (``None``: any rank >= 2)
    input_ndim: ClassVar[int | None] = None
    #: whether a call runs a gradient pass on the whole batch it is given (else forward
    #: passes only; chunked loops check their own chunks). The memory check sizes the batch
    #: for it before the call runs (:func:`~cleargrad.core.memplan.check_batch`).
    batch_gradient: ClassVar[bool] = False

    def __init__(
        self, model: nn.Module, *, output: OutputSelector = None, allow_train_mode: bool = False
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.output = output
        self.allow_train_mode = allow_train_mode

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__})"

    def attribute(self, x: torch.Tensor, target: TargetLike = None, **options: Any) -> torch.Tensor:
        """Explain ``x`` for ``target``; see the subclass for the options."""
        check_input(x, ndim=self.input_ndim or conv_input_ndim(self.model))
        check_options(f"{type(self).__name__}.attribute", options, self.option_names())
        check_common_options(options)
        with watch_scores() as flags, bind_targets(self, x, target) as target:
            try:
                out = fast_layout_call(self.model, self._guarded, x, target, options)
            except RuntimeError as e:
                diagnosed = diagnose_model_error(self.model, x, e)
                if diagnosed is None:
                    raise
                raise diagnosed from e
        return check_finite_result(out, type(self).__name__, flags)

    def option_names(self) -> list[str]:
        """The options :meth:`attribute` takes (besides ``x`` and ``target``)."""
        return signature_options(self._attribute, skip=2)[0]

    def _guarded(self, x: torch.Tensor, target: TargetLike, options: dict[str, Any]) -> Any:
        with gradient_call(self.model), preserved_state(self.model, allow_train_mode=self.allow_train_mode):
            x, target, options = normal_tensor(x), normal_tensor(target), normal_options(options)
            check_batch(self.model, x, grad=self.batch_gradient)
            return contiguous_result(self._attribute(x, target, **options))

    def _attribute(self, x: torch.Tensor, target: TargetLike, **options: Any) -> torch.Tensor:
        raise NotImplementedError

    # helpers for subclasses -------------------------------------------------------
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """The model's ``(N, C)`` class scores for ``x``."""
        return select_output(self.model(model_input(self.model, x)), self.output)

    def targets(self, x: torch.Tensor, target: TargetLike) -> torch.Tensor:
        """Resolve ``target`` for ``x``.

        ``None`` costs one no-grad forward pass (the argmax); an explicit target is checked
        against the number of classes, read once per instance from a one-image forward.
        """
        if target is None:
            with torch.no_grad():
                return resolve_targets(None, x.shape[0], scores=self.scores(x))
        return resolve_targets(target, x.shape[0], self.num_classes(x), device=x.device)

    def num_classes(self, x: torch.Tensor) -> int:
        """Number of classes, read once from the model's output on one image.

        The probe runs in eval mode (a model explained with ``allow_train_mode=True``
        may hold BatchNorm layers that cannot take one image in training mode); the
        modules' flags are put back right after it.
        """
        n = getattr(self, "_num_classes", None)
        if n is None:
            training = [m for m in self.model.modules() if m.training]
            try:
                for m in training:
                    m.training = False
                with torch.no_grad():
                    n = int(self.scores(x[:1]).shape[1])
            finally:
                for m in training:
                    m.training = True
            self._num_classes = n
        return n

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
