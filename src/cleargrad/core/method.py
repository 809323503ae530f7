"""The root of every explanation method: one constructor, one ``__repr__`` and one
guarded runner holding the whole check chain of a public call.

A family base (:class:`~cleargrad.attribution.base.Attribution`,
:class:`~cleargrad.cam.base.BaseCAM`, :class:`~cleargrad.attention.methods.AttentionMethod`)
subclasses :class:`Method`, names its hook (``_attribute``, ``_raw_maps``, ``_relevance``)
in :meth:`Method._run` and :meth:`Method.option_names`, and post-processes what the
runner returns. A method is then one short class on its family's base, registered with
``@register``; it never composes the checks itself.

The chain of :meth:`Method.guarded_call`, in order:

1. the input: a finite floating tensor of the method's rank (:func:`~cleargrad.core.check_input`);
2. the options: known names (:func:`~cleargrad.core.options.check_options`), then the
   shared ones (generator, chunk sizes);
3. inside :func:`~cleargrad.core.options.watch_scores` (the finiteness of every class
   score) and :func:`~cleargrad.core.fast_layout_call` (channels-last inputs, one retry):
   the model's state saved (:func:`~cleargrad.core.preserved_state`) and autograd
   enabled (:func:`~cleargrad.core.gradient_call`), inputs and options normalised, the
   batch's memory need checked, then the hook;
4. a ``RuntimeError`` of the model diagnosed (dtype, channel count) as an
   :class:`~cleargrad.InputError`;
5. the result refused when it, or a class score behind it, is NaN/Inf
   (:class:`~cleargrad.ModelStateError`).

The model is left exactly as it was found, also when any step raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import ConfigError
from ..runtime.layout import fast_layout_call, model_input
from ..runtime.memplan import check_batch
from .gradmode import gradient_call, normal_options, normal_tensor
from .inputs import check_input
from .options import (
    check_common_options,
    check_finite_result,
    check_options,
    diagnose_model_error,
    watch_scores,
)
from .state import preserved_state
from .target_objects import bind_targets
from .targets import OutputSelector, TargetLike, resolve_targets, select_output

__all__ = ["Method", "Hook"]

#: a guarded hook: ``hook(x, target, options) -> result``, run with the model guarded
Hook = Callable[[torch.Tensor, TargetLike, dict[str, Any]], Any]

_NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})


class Method:
    """Root of the explanation methods of every family.

    Args:
        model: the classifier; its forward returns ``(N, C)`` scores, or anything from
            which ``output`` selects them.
        output: selector for models whose forward returns a tuple/dict: a key, an
            index or a callable applied to the forward's result. ``None``: the result
            itself, or its ``.logits`` when it has a ``logits`` tensor attribute (a
            HuggingFace ``ModelOutput``; :func:`~cleargrad.core.targets.default_output`).
        allow_train_mode: explain a model in training mode instead of raising
            :class:`~cleargrad.ModelStateError` (buffers are restored after the call).
        num_classes: the number of classes, when known; spares the one-image forward
            pass that otherwise reads it before an explicit target is checked (e.g. for
            a wrapper model that cannot run on one image).

    Class attributes state what the method is; other parts of the library read them
    from the registered class instead of keeping lists of names.
    """

    #: registry family (``"attribution"``, ``"cam"``, ``"attention"``, ...)
    family: ClassVar[str] = ""
    #: input rank required by the method (``None``: any rank >= 2)
    input_ndim: ClassVar[int | None] = None
    #: whether a call runs a gradient pass on the whole batch it is given (else forward
    #: passes only; chunked loops check their own chunks). The memory check sizes the batch
    #: for it before the call runs (:func:`~cleargrad.runtime.memplan.check_batch`).
    batch_gradient: ClassVar[bool] = False
    #: keyword arguments of ``attribute`` handled by the family's post-processing (not
    #: passed to the hook; listed among the valid options in error messages)
    post_options: ClassVar[tuple[str, ...]] = ()
    #: constructor attributes shown by ``repr`` besides the model
    repr_fields: ClassVar[tuple[str, ...]] = ()
    #: the method calls the model only on whole repetitions of the batch it is given, so
    #: GAD may explain its ``S + 1`` models as one stacked model (``batch_models=True``)
    stackable: ClassVar[bool] = False
    #: GAD's ``batch_models="auto"`` stacks this method (benchmarks/results/gad_claims/gad_speed.md)
    stack_by_default: ClassVar[bool] = False
    #: cheaper settings the command line uses unless the user sets the option
    fast_options: ClassVar[Mapping[str, Any]] = _NO_OPTIONS
    #: the method gives Grad-CAM's map on a network whose head is global average pooling
    #: and one linear layer (the report explains such coinciding methods)
    gap_linear_equivalent: ClassVar[bool] = False
    #: the method explains a class through something other than its score (CAM: the
    #: classifier's weight row), so it takes class indices (or ``ClassTarget``) only
    class_targets_only: ClassVar[bool] = False
    #: the result is computed from the model's outputs (False for a control that only
    #: draws random maps: a model with NaN scores cannot show in its result)
    reads_model: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        *,
        output: OutputSelector = None,
        allow_train_mode: bool = False,
        num_classes: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < 1):
            raise ConfigError(f"num_classes must be a positive int or None, got {num_classes!r}")
        self.model = model
        self.output = output
        self.allow_train_mode = allow_train_mode
        self._num_classes: int | None = num_classes

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in self.repr_fields)
        return f"{type(self).__name__}({type(self.model).__name__}{extra})"

    # public API -------------------------------------------------------------------
    def attribute(self, x: torch.Tensor, target: TargetLike = None, **options: Any) -> Any:
        """Explain ``x`` for ``target``; see the subclass for the options."""
        return self.guarded_call(x, target, options)

    def option_names(self) -> list[str]:
        """The options the hook takes (besides ``x`` and ``target``)."""
        return []

    def input_rank(self) -> int | None:
        """The input rank :meth:`guarded_call` requires (``None``: any rank >= 2)."""
        return self.input_ndim

    # the one guard ----------------------------------------------------------------
    def guarded_call(
        self,
        x: torch.Tensor,
        target: TargetLike,
        options: dict[str, Any],
        *,
        hook: Hook | None = None,
        valid: Sequence[str] | None = None,
        owner: str = "attribute",
    ) -> Any:
        """Run ``hook(x, target, options)`` (default :meth:`_run`) behind the whole check chain.

        Args:
            hook: run in place of :meth:`_run` (e.g. a method's second public entry point,
                such as Expected Grad-CAM's ``layer_gradient``); its result is checked
                finite as one tensor.
            valid: the option names accepted (default :meth:`option_names` plus
                :attr:`post_options`).
            owner: the public method named in error messages.

        Raises:
            InputError: a bad input, or one the model cannot take (dtype, channels).
            ConfigError: an unknown or invalid option.
            ModelStateError: a model in training mode, or NaN/Inf scores or results.
        """
        check_input(x, ndim=self.input_rank())
        names = [*self.option_names(), *self.post_options] if valid is None else list(valid)
        check_options(f"{type(self).__name__}.{owner}", options, names)
        check_common_options(options)
        run = self._run if hook is None else hook
        with watch_scores() as flags, bind_targets(self, x, target) as target:
            try:
                out = fast_layout_call(self.model, self._guarded, run, x, target, options)
            except RuntimeError as e:
                diagnosed = diagnose_model_error(self.model, x, e)
                if diagnosed is None:
                    raise
                raise diagnosed from e
        if hook is None:
            self._check_finite(out, flags)
        else:
            check_finite_result(out, type(self).__name__, flags)
        return out

    def _guarded(self, run: Hook, x: torch.Tensor, target: TargetLike, options: dict[str, Any]) -> Any:
        with gradient_call(self.model), preserved_state(self.model, allow_train_mode=self.allow_train_mode):
            x, target, options = normal_tensor(x), normal_tensor(target), normal_options(options)
            check_batch(self.model, x, grad=self.batch_gradient)
            return run(x, target, options)

    def _check_finite(self, out: Any, flags: Sequence[torch.Tensor]) -> None:
        """Refuse a non-finite result of :meth:`_run` (a family whose result holds several
        tensors overrides)."""
        check_finite_result(out, type(self).__name__, flags)

    def _run(self, x: torch.Tensor, target: TargetLike, options: dict[str, Any]) -> Any:
        """The family's hook, called inside the guard."""
        raise NotImplementedError

    # helpers for subclasses -------------------------------------------------------
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """The model's ``(N, C)`` class scores for ``x``."""
        return select_output(self.model(model_input(self.model, x)), self.output)

    def targets(self, x: torch.Tensor, target: TargetLike) -> torch.Tensor:
        """Resolve ``target`` for ``x``.

        ``None`` costs one no-grad forward pass (the argmax); an explicit target is checked
        against the number of classes (:meth:`num_classes`).
        """
        if target is None:
            with torch.no_grad():
                return resolve_targets(None, x.shape[0], scores=self.scores(x))
        return resolve_targets(target, x.shape[0], self.num_classes(x), device=x.device)

    def num_classes(self, x: torch.Tensor) -> int:
        """Number of classes: the constructor's ``num_classes``, else read once from the
        model's output on one image.

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
