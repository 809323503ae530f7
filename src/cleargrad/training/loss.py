"""The interpretable-gradient training loss (Torres Figueroa et al., VISAPP 2024; spec § 4).

``L = L_C + lam * L_R`` with ``L_C`` the cross-entropy and
``L_R = mean_i E(delta_i, delta'_i)``: ``delta`` is the standard input gradient of each
image's ground-truth score (computed with ``create_graph=True``, so ``L_R`` trains the
weights through it) and ``delta'`` the guided-backpropagation gradient of the same score
(spec § 1.4), from a second forward pass of the same weights under
:func:`cleargrad.core.relu_rule` ``("guided")``, which catches ``nn.ReLU``, ``F.relu``,
``torch.relu``, ``Tensor.relu``, in-place ReLUs and ReLU6.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..core import relu_rule, select_output
from ..core.relu_rules import relu_rule_switch
from ..core.targets import OutputSelector
from ..errors import ConfigError, InputError
from .double_backward import double_backward_kernels
from .gradient_errors import gradient_error
from .passes import frozen_running_stats, same_randomness

__all__ = ["LossParts", "InterpretableGradientLoss", "ClassificationLoss", "SCORES"]

SCORES = ("logit", "prob", "log_prob")


class LossParts(NamedTuple):
    """What a training loss returns.

    Attributes:
        loss: the total loss (0-dim, attached to the graph): call ``.backward()`` on it.
        classification: the cross-entropy term ``L_C`` (0-dim, attached).
        regulariser: the gradient term ``L_R`` before multiplying by ``lam`` (0-dim,
            attached; zero for a plain classification loss).
        logits: the ``(N, C)`` scores of the (first) forward pass, detached.
        gradient: the standard input gradient ``delta``, detached (None for a plain
            classification loss).
        guided_gradient: the guided input gradient ``delta'``, detached (or None).
    """

    loss: torch.Tensor
    classification: torch.Tensor
    regulariser: torch.Tensor
    logits: torch.Tensor
    gradient: torch.Tensor | None = None
    guided_gradient: torch.Tensor | None = None


def _check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise InputError("x must be a floating-point tensor batch (N, C, H, W)")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise InputError(
            f"y must be a 1-D tensor of class indices with one entry per image; got "
            f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__} for {x.shape[0]} images"
        )
    if y.is_floating_point() or y.is_complex():
        raise InputError("y must hold integer class indices")


class ClassificationLoss:
    """Plain cross-entropy with the same calling convention as :class:`InterpretableGradientLoss`.

    ``loss_fn(model, x, y)`` returns :class:`LossParts` whose regulariser is zero. This is
    what :func:`cleargrad.training.fit` uses when no loss is given (the baseline).

    Args:
        output: selector for models whose forward returns a tuple/dict (see
            :func:`cleargrad.core.select_output`).
    """

    def __init__(self, *, output: OutputSelector = None) -> None:
        self.output = output

    def __repr__(self) -> str:
        return "ClassificationLoss()"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LossParts:
        """Cross-entropy of ``model(x)`` against ``y``."""
        _check_batch(x, y)
        logits = select_output(model(x), self.output)
        ce = F.cross_entropy(logits, y.long())
        return LossParts(ce, ce, ce.new_zeros(()), logits.detach())


class InterpretableGradientLoss:
    """Cross-entropy plus ``lam`` times an error between the standard and the guided input gradient.

    Per step (spec § 4.3): the guided-backprop gradient ``delta'`` and, by double
    backprop, the standard gradient ``delta = d s / d x`` of the ground-truth scores;
    ``L = CE + lam * mean_i E(delta_i, delta'_i)``. The spec describes a separate guided
    forward pass; since the guided rule only changes the ReLU backward, both gradients
    are taken from one forward pass (see :meth:`__call__`), which gives the same values.
    BatchNorm running statistics and the global RNG therefore advance exactly as in a
    plain cross-entropy step, and both gradients see the same Dropout masks.
    :meth:`guided_gradient` (a separate pass under the guided rule, with the running
    statistics frozen and the RNG replayed) and :meth:`standard_gradient` remain
    available on their own.

    Args:
        error: ``"cosine"`` (the paper's main choice), ``"mae"``, ``"mse"``, ``"hi"``
            (histogram intersection exactly as on the slides, scale-dependent) or
            ``"hi_normalized"`` (scale-free); see :mod:`cleargrad.training.gradient_errors`.
        lam: weight of the regulariser, ``>= 0`` (paper: 7.5e-3 for ResNet-18, 1e-3 for
            MobileNet-V2, with the cosine error).
        score: which score of the ground-truth class is differentiated: ``"logit"``
            (default), ``"prob"`` (softmax) or ``"log_prob"`` (log-softmax).
        detach_guided: treat ``delta'`` as a fixed target (default). With False the loss
            also differentiates through the guided pass.
        output: selector for models whose forward returns a tuple/dict.

    Example:
        >>> loss_fn = InterpretableGradientLoss(error="cosine", lam=7.5e-3)
        >>> parts = loss_fn(model, x, y)          # doctest: +SKIP
        >>> parts.loss.backward(); optimizer.step()  # doctest: +SKIP
    """

    def __init__(
        self,
        error: str = "cosine",
        lam: float = 7.5e-3,
        score: str = "logit",
        detach_guided: bool = True,
        *,
        output: OutputSelector = None,
    ) -> None:
        self.error_fn = gradient_error(error)
        if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not math.isfinite(lam) or lam < 0:
            raise ConfigError(f"lam must be a finite number >= 0, got {lam!r}")
        if score not in SCORES:
            raise ConfigError(f"unknown score {score!r}; valid: {', '.join(SCORES)}")
        self.error = error
        self.lam = float(lam)
        self.score = score
        self.detach_guided = bool(detach_guided)
        self.output = output

    def __repr__(self) -> str:
        return (
            f"InterpretableGradientLoss(error={self.error!r}, lam={self.lam!r}, score={self.score!r}, "
            f"detach_guided={self.detach_guided!r})"
        )

    # pieces ---------------------------------------------------------------------------
    def target_scores(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The differentiated score of class ``y[i]`` for each image, shape ``(N,)``."""
        if self.score == "prob":
            logits = logits.softmax(dim=1)
        elif self.score == "log_prob":
            logits = logits.log_softmax(dim=1)
        return logits.gather(1, y.long().view(-1, 1)).squeeze(1)

    def standard_gradient(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, create_graph: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(delta, logits)``: the plain input gradient of the target scores and the logits.

        With ``create_graph=True`` (the default) both stay attached to the graph, so a loss
        built from ``delta`` trains the weights (double backprop).
        """
        xi = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = select_output(model(xi), self.output)
            (g,) = torch.autograd.grad(self.target_scores(logits, y).sum(), xi, create_graph=create_graph)
        return g, logits

    def guided_gradient(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, create_graph: bool = False
    ) -> torch.Tensor:
        """``delta'``: the guided-backprop input gradient of the target scores (spec § 1.4).

        A forward pass of the same weights with the guided ReLU rule active. Running
        statistics are left untouched and the RNG state is replayed (see the class doc).
        """
        xi = x.detach().requires_grad_(True)
        with torch.enable_grad(), same_randomness(x.device), frozen_running_stats(model):
            with relu_rule("guided"):  # forward only: the rule's backward is in the graph
                logits = select_output(model(xi), self.output)
            (g,) = torch.autograd.grad(self.target_scores(logits, y).sum(), xi, create_graph=create_graph)
        return g

    def regulariser(self, gradient: torch.Tensor, guided: torch.Tensor) -> torch.Tensor:
        """``L_R = mean_i E(delta_i, delta'_i)`` (0-dim)."""
        return self.error_fn(gradient, guided).mean()

    # the loss ---------------------------------------------------------------------------
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LossParts:
        """Total loss and its parts for the batch ``(x, y)``; see :class:`LossParts`.

        One forward pass serves both gradients: it is recorded under
        :func:`~cleargrad.core.relu_rules.relu_rule_switch`, the guided gradient is taken
        first with the guided ReLU backward, then the standard gradient (``create_graph``)
        with the ordinary one. A second forward pass under the guided rule, as
        :meth:`guided_gradient` runs, computes the same activations (same weights, same
        batch statistics, same Dropout masks), so the result equals the two-pass
        computation (tested) at the cost of one forward pass less. That forward records
        training-mode BatchNorm and 2-D convolutions with leaner double-backward kernels
        (:mod:`cleargrad.training.double_backward`): same values, fewer operations; they
        support second derivatives, not third through BatchNorm. With
        ``detach_guided=False`` the two passes are kept (see the comment in the code), with
        PyTorch's own kernels.
        """
        _check_batch(x, y)
        y = y.long()
        if self.detach_guided:
            xi = x.detach().requires_grad_(True)
            with torch.enable_grad():
                with relu_rule_switch() as switch, double_backward_kernels() as phase:
                    logits = select_output(model(xi), self.output)
                score = self.target_scores(logits, y).sum()
                phase.input_only = True  # the two input gradients need no weight gradients
                try:
                    switch.rule = "guided"
                    (guided,) = torch.autograd.grad(score, xi, retain_graph=True)
                    switch.rule = None
                    (gradient,) = torch.autograd.grad(score, xi, create_graph=True)
                finally:
                    phase.input_only = False  # the caller's loss.backward() needs them all
        else:
            # differentiating through delta' needs its own forward graph: in a shared one the
            # second-order terms through the forward activations would use the ordinary ReLU
            # derivative, where the separate guided pass (this option's definition) uses the guided rule
            guided = self.guided_gradient(model, x, y, create_graph=True)
            gradient, logits = self.standard_gradient(model, x, y, create_graph=True)
        ce = F.cross_entropy(logits, y)
        reg = self.regulariser(gradient, guided)
        loss = ce + self.lam * reg
        return LossParts(loss, ce, reg, logits.detach(), gradient.detach(), guided.detach())
