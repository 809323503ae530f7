"""More CAMs on the Grad-CAM pattern: Grad-CAM element-wise, ShapleyCAM, FinerCAM, FEM and
the RandomCAM control."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..core import register, resolve_targets
from ..core.options import check_generator
from ..core.targets import OutputSelector, TargetLike
from ..errors import ConfigError, ModelStateError
from .base import BaseCAM, LayersSpec, weighted_sum
from .capture import ReshapeArg
from .gradient import GradientCAM
from .objective import objective_pass
from .weights import gradcam_pp_weights, gradcam_weights, xgrad_weights

__all__ = ["FEM", "FinerCAM", "GradCAMElementWise", "RandomCAM", "ShapleyCAM"]


@register("gradcam_elementwise", family="cam", aliases=("gradcamelementwise", "grad_cam_elementwise"))
class GradCAMElementWise(GradientCAM):
    """Grad-CAM element-wise (pytorch-grad-cam): ``L = sum_k ReLU(G^k ⊙ A^k)``.

    Element weights ``G · [G A > 0]``, so that ``w ⊙ A = ReLU(G ⊙ A)``: each position keeps
    only the channels whose first-order contribution there is positive.
    """

    def weights(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """The gradient where ``G A > 0``, else 0 (one weight per activation element)."""
        return torch.where(gradient * activation > 0, gradient, torch.zeros_like(gradient))


@register("randomcam", family="cam", aliases=("random_cam",))
class RandomCAM(BaseCAM):
    """RandomCAM, a sanity-check control: channel weights drawn uniformly from ``[-1, 1)``.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True, generator=None)``

    ``w = 2 U - 1`` with ``U = torch.rand((N, K), generator=generator)`` (drawn on the
    generator's device, per layer in order); one forward pass, no gradient. A method whose
    maps score no better than these on a metric carries no information for it.
    """

    def _raw_maps(
        self,
        x: torch.Tensor,
        target: TargetLike,
        modules: list[nn.Module],
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        gen = check_generator(generator)
        acts, scores = self.forward_pass(x, modules)
        resolve_targets(target, x.shape[0], scores=scores)
        dev = gen.device if gen is not None else torch.device("cpu")
        maps = []
        for a in acts:
            w = torch.rand(a.shape[:2], generator=gen, device=dev, dtype=torch.float64) * 2 - 1
            maps.append(weighted_sum(w.to(device=a.device, dtype=a.dtype), a))
        return maps


@register("fem", family="cam", aliases=("feature_explanation_method",))
class FEM(BaseCAM):
    """FEM, Feature Explanation Method (Fuad et al. 2020): channels weighted by how much of
    them is an outlier.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True, k=2.0)``

    ``w_k = mean_ij [A^k_ij > mu_k + k·sigma_k]`` with the channel's mean ``mu_k`` and
    population standard deviation ``sigma_k`` over positions (the k-sigma rule);
    class-agnostic, one pass up to the layer.
    """

    def _raw_maps(
        self, x: torch.Tensor, target: TargetLike, modules: list[nn.Module], k: float = 2.0
    ) -> list[torch.Tensor]:
        if isinstance(k, bool) or not isinstance(k, (int, float)):
            raise ConfigError(f"k must be a number (the k-sigma threshold), got {k!r}")
        if target is not None:
            acts, scores = self.forward_pass(x, modules)
            resolve_targets(target, x.shape[0], scores=scores)
        else:
            acts = self.layer_pass(x, modules)
        maps = []
        for a in acts:
            flat = a.flatten(2)
            th = flat.mean(dim=2) + float(k) * flat.std(dim=2, correction=0)
            w = (flat > th[:, :, None]).to(a.dtype).mean(dim=2)
            maps.append(weighted_sum(w, a))
        return maps


@register("shapleycam", family="cam", aliases=("shapley_cam",))
class ShapleyCAM(GradientCAM):
    """ShapleyCAM (Cai 2025): Grad-CAM with the second-order Shapley correction,
    ``w_k = mean_ij (G - ½ H A)_kij``, ``H A`` the Hessian-vector product of the score
    w.r.t. the layer output with the output itself.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True)``

    One forward pass and two backward passes (the second through the graph of the first,
    from the score down to the layer only). Where the network is piecewise linear after
    the layer (ReLU, max-pooling, linear heads) ``H A = 0`` and it equals Grad-CAM.
    Scaled-dot-product attention runs with its math kernel during the call (the fused
    kernels have no second derivative; pytorch-grad-cam fails on such models).
    """

    def _raw_maps(
        self, x: torch.Tensor, target: TargetLike, modules: list[nn.Module], **options: Any
    ) -> list[torch.Tensor]:
        if options:
            raise TypeError(f"ShapleyCAM.attribute got unexpected options {sorted(options)}")
        t_box: list[torch.Tensor] = []

        def objective(scores: torch.Tensor) -> torch.Tensor:
            t = resolve_targets(target, x.shape[0], scores=scores.detach())
            t_box.append(t)
            return scores.gather(1, t.to(scores.device)[:, None])[:, 0]

        # the math attention kernel: the fused ones have no second derivative
        with sdpa_kernel([SDPBackend.MATH]):
            p = objective_pass(self.model, x, modules, objective, self.output, self.reshape, create_graph=True)
        maps = []
        with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):
            for raw, g, lay in zip(p.raws, p.grads, p.layouts):
                hvp = None
                if g.requires_grad:
                    try:
                        (hvp,) = torch.autograd.grad(g, raw, grad_outputs=raw.detach(), allow_unused=True)
                    except (RuntimeError, NotImplementedError) as e:
                        if "derivative for" not in str(e) and "not implemented" not in str(e):
                            raise
                        raise ModelStateError(
                            f"ShapleyCAM needs second derivatives of the model, and an operation of "
                            f"{type(self.model).__name__} has none ({str(e).splitlines()[0]}); use GradCAM, "
                            "or a model without that operation"
                        ) from e
                corr = g.detach() if hvp is None else g.detach() - 0.5 * hvp
                a = lay.apply(raw.detach())
                maps.append(weighted_sum(gradcam_weights(lay.apply(corr)), a))
        return maps


_FINER_BASES = ("gradcam", "gradcam_pp", "xgradcam", "layercam", "hirescam")


@register("finercam", family="cam", aliases=("finer_cam",))
class FinerCAM(GradientCAM):
    """FinerCAM (Zhang et al. 2025): a gradient CAM of the target's score *against the classes
    the model confuses it with*.

    ``attribute(x, target=None, upsample=True, normalize=False, relu=True, alpha=1.0,
    comparison_ranks=(1, 2, 3))``

    The classes are sorted by ``|y_c - y_t|`` (``t`` the target, ``y`` the logits); the
    comparison classes ``S`` are those at ``comparison_ranks`` of that order (rank 0 is
    ``t`` itself; ranks past the last class are dropped). The explained objective is
    pytorch-grad-cam's ``FinerWeightedTarget``:
    ``sum_{s in S} p_s (y_t - alpha y_s) / (sum_{s in S} p_s + 1e-9)`` with ``p`` the
    softmax probabilities; ``alpha=0`` gives the base CAM of ``t``.

    Args:
        base: the gradient CAM whose weights are used: ``"gradcam"`` (default, as
            pytorch-grad-cam), ``"gradcam_pp"``, ``"xgradcam"``, ``"layercam"``, ``"hirescam"``.
    """

    #: compares the target with the classes the model confuses it with: class targets only
    class_targets_only = True

    def __init__(
        self,
        model: nn.Module,
        layer: LayersSpec = "auto",
        *,
        base: str = "gradcam",
        output: OutputSelector = None,
        allow_train_mode: bool = False,
        reshape: ReshapeArg = "auto",
    ) -> None:
        if base not in _FINER_BASES:
            raise ConfigError(f"FinerCAM base must be one of {_FINER_BASES}, got {base!r}")
        super().__init__(model, layer, output=output, allow_train_mode=allow_train_mode, reshape=reshape)
        self.base = base

    def weights(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """The base method's weights, on the gradient of the comparison objective."""
        if self.base == "gradcam":
            return gradcam_weights(gradient)
        if self.base == "gradcam_pp":
            return gradcam_pp_weights(activation, gradient)
        if self.base == "xgradcam":
            return xgrad_weights(activation, gradient)
        if self.base == "layercam":
            return torch.relu(gradient)
        return gradient

    def _raw_maps(
        self,
        x: torch.Tensor,
        target: TargetLike,
        modules: list[nn.Module],
        alpha: float = 1.0,
        comparison_ranks: Sequence[int] = (1, 2, 3),
    ) -> list[torch.Tensor]:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise ConfigError(f"alpha must be a number, got {alpha!r}")
        ranks = [comparison_ranks] if isinstance(comparison_ranks, int) else list(comparison_ranks)
        if not ranks or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ranks):
            raise ConfigError(
                f"comparison_ranks must be positive ints (rank 0 is the target), got {comparison_ranks!r}"
            )

        def objective(scores: torch.Tensor) -> torch.Tensor:
            s = scores.detach()
            t = resolve_targets(target, s.shape[0], scores=s).to(s.device)
            yt = s.gather(1, t[:, None])
            order = torch.argsort((s - yt).abs(), dim=1, stable=True)
            keep = [r for r in ranks if r < s.shape[1]]
            if not keep:
                raise ConfigError(f"comparison_ranks {ranks} are past the model's {s.shape[1]} classes")
            comp = order[:, keep]  # (N, S)
            prob = torch.softmax(scores, dim=1)
            ps = prob.gather(1, comp)
            main = scores.gather(1, t[:, None])
            num = (ps * (main - float(alpha) * scores.gather(1, comp))).sum(dim=1)
            return num / (ps.sum(dim=1) + 1e-9)

        p = objective_pass(self.model, x, modules, objective, self.output, self.reshape)
        return [weighted_sum(self.weights(a, g), a) for a, g in zip(p.activations(), p.gradients())]
