"""Layer-wise Relevance Propagation (Bach et al. 2015; Montavon et al. 2019) with composites."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import torch
from torch import nn

from ..core import gather_scores, register, resolve_targets
from ..core.lrp_rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    LinearOp,
    LrpMode,
    Pass,
    Rule,
    WSquare,
    ZBox,
    ZPlus,
)
from ..core.names import snake_key
from ..core.targets import TargetLike
from ..errors import ConfigError
from .base import GradientAttribution

__all__ = ["COMPOSITES", "LRP", "Composite", "make_composite"]

Types = Union[type, tuple]
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
AFFINE = CONV + (nn.Linear,)

#: the layer class a functional call stands for, when its weight belongs to no module
_FUNCTIONAL = {torch.conv1d: nn.Conv1d, torch.conv2d: nn.Conv2d, torch.conv3d: nn.Conv3d}

_RULE_NAMES: dict[str, Callable[[], Rule]] = {
    "epsilon": Epsilon,
    "lrp0": lambda: Epsilon(0.0),
    "gamma": Gamma,
    "zplus": ZPlus,
    "alpha1beta0": lambda: AlphaBeta(1.0, 0.0),
    "alpha2beta1": lambda: AlphaBeta(2.0, 1.0),
    "flat": Flat,
    "wsquare": WSquare,
    "pass": Pass,
}


def as_rule(rule: Rule | str) -> Rule:
    """A :class:`~cleargrad.core.lrp_rules.Rule`, or one named in :data:`_RULE_NAMES`."""
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str) and rule.lower().replace("_", "") in _RULE_NAMES:
        return _RULE_NAMES[rule.lower().replace("_", "")]()
    raise ConfigError(
        f"unknown LRP rule {rule!r}; give a cleargrad.core.lrp_rules.Rule (ZBox needs its bounds) or one of "
        f"{', '.join(sorted(_RULE_NAMES))}"
    )


class Composite:
    """Which LRP rule each affine layer (convolution, linear) gets.

    Args:
        layers: ``(layer types, rule)`` pairs, first match wins.
        first: pairs for the first affine layer of the forward pass (checked before
            ``layers`` for that layer only), e.g. z^B or flat for the input layer.
        default: the rule of a layer no pair matches.

    A layer's type is its module's class, or for a functional call whose weight is no
    module's parameter, ``nn.Conv1d/2d/3d`` or ``nn.Linear``.
    """

    def __init__(
        self,
        layers: Sequence[tuple[Types, Rule | str]],
        first: Sequence[tuple[Types, Rule | str]] = (),
        default: Rule | str = "epsilon",
    ) -> None:
        self.layers = [(t, as_rule(r)) for t, r in layers]
        self.first = [(t, as_rule(r)) for t, r in first]
        self.default = as_rule(default)

    def __repr__(self) -> str:
        return f"Composite(layers={self.layers!r}, first={self.first!r})"

    def rule_for(self, op: LinearOp, first: bool) -> Rule:
        cls = type(op.module) if op.module is not None else _FUNCTIONAL.get(op.func, nn.Linear)
        if first:
            for types, rule in self.first:
                if issubclass(cls, types):
                    return rule
        for types, rule in self.layers:
            if issubclass(cls, types):
                return rule
        return self.default


def _epsilon_plus_flat(epsilon: float, gamma: float, stabilizer: float, low: Any, high: Any) -> Composite:
    return Composite([(CONV, ZPlus(stabilizer)), (nn.Linear, Epsilon(epsilon))], first=[(AFFINE, Flat(stabilizer))])


def _epsilon_gamma_box(epsilon: float, gamma: float, stabilizer: float, low: Any, high: Any) -> Composite:
    return Composite([(CONV, Gamma(gamma, stabilizer)), (nn.Linear, Epsilon(epsilon))],
                     first=[(CONV, ZBox(low, high, stabilizer))])


def _epsilon_alpha2_beta1(epsilon: float, gamma: float, stabilizer: float, low: Any, high: Any) -> Composite:
    return Composite([(CONV, AlphaBeta(2.0, 1.0, stabilizer)), (nn.Linear, Epsilon(epsilon))])


def _epsilon_plus(epsilon: float, gamma: float, stabilizer: float, low: Any, high: Any) -> Composite:
    return Composite([(CONV, ZPlus(stabilizer)), (nn.Linear, Epsilon(epsilon))])


def _epsilon(epsilon: float, gamma: float, stabilizer: float, low: Any, high: Any) -> Composite:
    return Composite([(AFFINE, Epsilon(epsilon))])


#: composite name -> builder ``(epsilon, gamma, stabilizer, low, high) -> Composite``; the
#: first three have Zennit's layer maps (its ``EpsilonPlusFlat``, ``EpsilonGammaBox``,
#: ``EpsilonAlpha2Beta1``)
COMPOSITES: dict[str, Callable[..., Composite]] = {
    "epsilon_plus_flat": _epsilon_plus_flat,
    "epsilon_gamma_box": _epsilon_gamma_box,
    "epsilon_alpha2_beta1": _epsilon_alpha2_beta1,
    "epsilon_plus": _epsilon_plus,
    "epsilon": _epsilon,
}


def make_composite(
    name: str, *, epsilon: float = 1e-6, gamma: float = 0.25, stabilizer: float = 1e-6, low: Any = None,
    high: Any = None,
) -> Composite:
    """The composite registered as ``name`` (see :data:`COMPOSITES`) with these parameters."""
    key = snake_key(str(name))
    if key not in COMPOSITES:
        raise ConfigError(f"unknown LRP composite {name!r}; valid: {', '.join(COMPOSITES)}, or a Composite")
    return COMPOSITES[key](float(epsilon), float(gamma), float(stabilizer), low, high)


def _bounds(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel minimum and maximum of ``x`` (shape ``(N, C, 1, ...)``)."""
    dims = tuple(range(2, x.dim()))
    if not dims:
        return x.detach().clone(), x.detach().clone()
    return x.detach().amin(dim=dims, keepdim=True), x.detach().amax(dim=dims, keepdim=True)


@register("lrp", family="attribution", aliases=("layerwise_relevance_propagation", "relevance_propagation"))
class LRP(GradientAttribution):
    """Layer-wise Relevance Propagation with Zennit's composites (default ``epsilon_plus_flat``).

    ``attribute(x, target=None, composite="epsilon_plus_flat", rules=None, epsilon=1e-6,
    gamma=0.25, stabilizer=1e-6, low=None, high=None)``

    The relevance of the target class starts as its logit ``f_c(x)`` and is propagated
    back layer by layer (:mod:`cleargrad.core.lrp_rules`): each convolution / linear
    layer by its composite's rule, eval-mode BatchNorm folded into the convolution
    before it (for the duration of the pass, on copies of the parameters: the model is
    never written), residual sums and average pooling in proportion to their inputs,
    ReLUs (modules, functional, in-place) and other elementwise activations passing
    relevance through, max pooling to the winning input.

    Args:
        composite: ``"epsilon_plus_flat"`` (flat first layer, z⁺ convolutions, ε linear),
            ``"epsilon_gamma_box"`` (z^B first convolution, γ convolutions, ε linear),
            ``"epsilon_alpha2_beta1"`` (α2β1 convolutions, ε linear), ``"epsilon_plus"``,
            ``"epsilon"``; or a :class:`Composite`.
        rules: ``{layer type (or tuple of types): rule}`` taking precedence over the
            composite's layer map (not over its first-layer rule); a rule is a
            :class:`~cleargrad.core.lrp_rules.Rule` or a name (``epsilon``, ``lrp0``,
            ``gamma``, ``zplus``, ``alpha1beta0``, ``alpha2beta1``, ``flat``, ``wsquare``,
            ``pass``).
        epsilon: ε of the ε rule; gamma: γ of the γ rule; stabilizer: the small number
            added to every other rule's denominators.
        low, high: the input bounds of the z^B rule (numbers or tensors such as
            ``(1, C, 1, 1)``); default: each image's per-channel minimum and maximum.

    Equal to Zennit 1.0 with the same composite, ``SequentialMergeBatchNorm`` /
    ``ResNetCanonizer`` and ``attr_output = onehot * output`` (Zennit's relevance for a
    one-hot output is ours divided by ``f_c(x)``).
    """

    def _attribute(
        self,
        x: torch.Tensor,
        target: TargetLike,
        composite: str | Composite = "epsilon_plus_flat",
        rules: Mapping[Types, Rule | str] | None = None,
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        stabilizer: float = 1e-6,
        low: float | torch.Tensor | None = None,
        high: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        if low is None or high is None:
            lo, hi = _bounds(x)
            low = lo if low is None else low
            high = hi if high is None else high
        if isinstance(composite, Composite):
            comp = composite
        else:
            comp = make_composite(composite, epsilon=epsilon, gamma=gamma, stabilizer=stabilizer, low=low, high=high)
        if rules:
            if not isinstance(rules, Mapping):
                raise ConfigError("rules must be a dict {layer type: rule}")
            comp = Composite([*((t, as_rule(r)) for t, r in rules.items()), *comp.layers], comp.first, comp.default)
        modules = {id(p): m for m in self.model.modules() for p in m.parameters(recurse=False)}
        xi = x.detach().requires_grad_(True)
        with torch.enable_grad():
            with LrpMode(comp.rule_for, modules, stabilizer):  # the rules' backward is in the graph
                s = self.scores(xi)
            t = resolve_targets(target, x.shape[0], scores=s)
            st = gather_scores(s, t)
            (r,) = torch.autograd.grad((st * st.detach()).sum(), xi)
        return r
