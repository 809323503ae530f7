"""Batch-norm folding for the metrics' forward passes: a faster copy of an eval-mode model.

A metric protocol sends hundreds of forward passes per image through the model, with no
hooks and no gradients. In eval mode a ``BatchNorm`` layer right after a convolution (or
a linear layer) is an affine map with fixed numbers, so it can be folded into that layer's
weights once, and each pass then skips a full read and write of the feature map. On the
Fashion-MNIST reference SmallCNN (one CPU thread, channels-last, batch 64) a pass took
0.64-0.87x the time of the unfolded model, with outputs within 6e-7 relative
(``benchmarks/results/evaluate_pipeline.md``, section 8).

:func:`folded_forward` returns a folded *copy* (the model is not touched) or, where
folding does not apply, the model itself. The copy is traced with ``torch.fx``: its
forward no longer calls the folded submodules, so it is only for hook-free passes (the
metrics' ``scorer``).
"""

from __future__ import annotations

import warnings

from torch import nn

__all__ = ["folded_forward"]

_FOLDABLE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def folded_forward(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every eval-mode batch norm that directly follows a
    convolution or linear layer folded into that layer's weights; ``model`` itself when
    there is nothing to fold, when any module is in training mode (batch statistics cannot
    be folded), or when ``torch.fx`` cannot trace the forward (data-dependent Python
    control flow).

    The copy computes what ``model`` computes up to float rounding (the folded weights
    round differently). It shares nothing with ``model``: later changes to the model's
    weights do not reach it, so make it for one run. Its forward does not call the folded
    submodules, so forward hooks on them do not fire.
    """
    mods = list(model.modules())
    if any(m.training for m in mods) or not any(
        isinstance(m, _FOLDABLE) and m.track_running_stats and m.running_mean is not None for m in mods
    ):
        return model
    from torch.fx.experimental.optimization import fuse

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folded = fuse(model, inplace=False)
    except Exception:  # noqa: BLE001 - not traceable, or an unusual layer: the model as it is
        return model
    folded.eval()
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded
