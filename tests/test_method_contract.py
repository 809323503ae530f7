"""One contract for every registered method, of every family.

The table is the registry itself (:func:`cleargrad.core.registry.list_methods`), so a
method registered later is covered without touching this file. Each method is built with
a tiny model suited to its family (a small CNN for attribution and CAM methods, a tiny
vision transformer for attention methods) and must answer the same bad input with the
same error class, leaving the model exactly as it found it:

* an unknown option -> :class:`~cleargrad.ConfigError`;
* a model whose class scores are NaN -> :class:`~cleargrad.ModelStateError`;
* an input of the wrong rank -> :class:`~cleargrad.InputError`;
* an out-of-range target -> :class:`~cleargrad.TargetError`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
import torch
import torchvision
from helpers import ModelSnapshot, tiny_cnn
from torch import nn

import cleargrad as cg
from cleargrad.api import make_method
from cleargrad.core.registry import MethodInfo, list_methods

#: small sampling/step counts, passed to the methods that take them
FAST = {"n_samples": 2, "n_steps": 2}
#: methods whose estimator needs more samples than FAST gives (KernelSHAP's regression needs
#: coalitions besides the full and the empty one)
FAST_PER_METHOD: dict[str, dict[str, object]] = {"kernel_shap": {"n_samples": 8}, "lime": {"n_samples": 8}}
NUM_CLASSES = 3


class NaNScores(nn.Module):
    """``inner`` whose score of class 0 becomes NaN once ``armed`` (no parameter holds a NaN)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if not self.armed:
            return out
        col = torch.arange(out.shape[1], device=out.device)
        return out + torch.where(col == 0, float("nan"), 0.0).to(out.dtype)


def _cnn() -> tuple[nn.Module, torch.Tensor]:
    model = tiny_cnn(num_classes=NUM_CLASSES)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    return model, x


def _vit() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16,
        num_classes=NUM_CLASSES,
    ).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return model, x


#: the tiny model of each family; a new family adds its own here
FAMILY_MODELS: dict[str, Callable[[], tuple[nn.Module, torch.Tensor]]] = {
    "attribution": _cnn,
    "cam": _cnn,
    "attention": _vit,
}

METHODS = list_methods()


def _options(inst: object, x: torch.Tensor) -> dict[str, object]:
    """The fast settings the method declares (its hook's keyword parameters), and
    reference images for the methods that take them."""
    names: set[str] = set()
    if hasattr(inst, "option_names"):
        names |= set(inst.option_names())
    for hook in ("_attribute", "_raw_maps", "_relevance", "_expected"):
        fn = getattr(inst, hook, None)
        if fn is not None:
            names |= set(inspect.signature(fn).parameters)
    given: dict[str, object] = {**FAST, "references": x.flip(0), "baselines": x.flip(0)}
    return {k: v for k, v in given.items() if k in names}


def _build(info: MethodInfo) -> tuple[object, NaNScores, torch.Tensor, dict[str, object]]:
    if info.family not in FAMILY_MODELS:
        pytest.fail(f"no tiny model for family {info.family!r}: add one to FAMILY_MODELS")
    inner, x = FAMILY_MODELS[info.family]()
    model = NaNScores(inner).eval()
    inst, _ = make_method(model, info.name)
    opts = _options(inst, x)
    opts.update({k: v for k, v in FAST_PER_METHOD.get(info.name, {}).items() if k in opts})
    return inst, model, x, opts


def test_every_family_is_covered() -> None:
    assert {i.family for i in METHODS} <= set(FAMILY_MODELS)
    assert {"attribution", "cam", "attention"} <= {i.family for i in METHODS}


@pytest.mark.parametrize("info", METHODS, ids=[i.name for i in METHODS])
def test_same_bad_input_same_error(info: MethodInfo) -> None:
    inst, model, x, opts = _build(info)
    target = [0, 1]
    assert torch.isfinite(inst.attribute(x, target=target, **opts)).all()
    snap = ModelSnapshot.take(model)

    with pytest.raises(cg.ConfigError, match="no_such_option"):
        inst.attribute(x, target=target, no_such_option=1, **opts)
    snap.assert_same(model)

    with pytest.raises(cg.InputError):
        inst.attribute(x[0], target=0, **opts)  # no batch dimension
    snap.assert_same(model)

    with pytest.raises(cg.TargetError):
        inst.attribute(x, target=[0, NUM_CLASSES + 5], **opts)
    snap.assert_same(model)

    if not type(inst).reads_model:  # a random control's map does not come from the model's scores
        return
    model.armed = True
    try:
        with pytest.raises(cg.ModelStateError):
            inst.attribute(x, target=target, **opts)
    finally:
        model.armed = False
    snap.assert_same(model)
