"""One declarative case table (method x model) driving the model-left-untouched suite.

Every registered method is covered automatically; ``EXTRA`` gives the options a method
needs (references, a layer, fewer steps to stay fast). Each case checks: model
bit-identical and no hook / mode left after a normal call, after a call with a bad
target, and after an error raised inside the model's forward; also with the model
in training mode and ``allow_train_mode=True`` (BatchNorm statistics restored).
"""

from __future__ import annotations

import pytest
import torch
from helpers import BoomNet, FunctionalReLUNet, ModelSnapshot, tiny_cnn

import cleargrad as cg
from cleargrad.api import make_method
from cleargrad.core import get_method

# per-method options (constructor or attribute); keep every case fast
EXTRA: dict[str, dict] = {
    "integrated_gradients": {"n_steps": 4},
    "smoothgrad": {"n_samples": 3},
    "expected_gradients": {"n_samples": 3, "references": torch.zeros(2, 1, 12, 12)},
    "smooth_gradcam_pp": {"n_samples": 2},
    "integrated_gradcam": {"n_steps": 3},
    "expected_gradcam": {"n_samples": 3},
    "shapley_value_sampling": {"n_samples": 1},
    "lime": {"n_samples": 12, "interpretable_model": "linear"},  # the default Lasso zeroes tiny-model maps
    "kernel_shap": {"n_samples": 12},
    "rise": {"n_masks": 8},
    "deeplift_shap": {"baselines": torch.zeros(2, 1, 12, 12)},
    "sscam": {"n_samples": 2},
    "iscam": {"n_samples": 2},
}

MODELS = {
    "small_cnn": lambda: tiny_cnn(),
    "functional_relu": lambda: FunctionalReLUNet().eval(),
}

#: methods that explain CNNs (the attention methods need a transformer: test_transformers.py)
CNN_METHODS = [m for m in cg.methods() if get_method(m).family != "attention"]

CASES = [(m, k) for m in CNN_METHODS for k in MODELS]

#: methods that never run the model on the input (the random control): an error inside
#: the forward cannot happen; the test checks that instead
NO_FORWARD = {"random"}


def _opts(method: str) -> dict:
    return dict(EXTRA.get(method, {}))


def _prime_grads(model: torch.nn.Module) -> None:
    """Give some parameters an existing .grad, which must survive untouched."""
    for i, p in enumerate(model.parameters()):
        if i % 2 == 0:
            p.grad = torch.randn_like(p)


@pytest.mark.parametrize("method,model_name", CASES)
def test_model_left_untouched(method: str, model_name: str) -> None:
    model = MODELS[model_name]()
    _prime_grads(model)
    x = torch.randn(2, 1, 12, 12)
    snap = ModelSnapshot.take(model)
    inst, opts = make_method(model, method, **_opts(method))
    out = inst.attribute(x, target=[0, 1], **opts)
    assert torch.isfinite(out).all()
    snap.assert_same(model)
    with pytest.raises(cg.TargetError):
        inst.attribute(x, target=[0, 99], **opts)
    snap.assert_same(model)


@pytest.mark.parametrize("method", CNN_METHODS)
def test_model_untouched_after_error_inside_forward(method: str) -> None:
    model = BoomNet().eval()
    _prime_grads(model)
    x = torch.randn(2, 1, 12, 12)
    snap = ModelSnapshot.take(model)
    inst, opts = make_method(model, method, **_opts(method))
    model.boom.armed = True
    if method in NO_FORWARD:
        assert torch.isfinite(inst.attribute(x, target=[0, 1], **opts)).all()
    else:
        with pytest.raises(RuntimeError, match="boom"):
            inst.attribute(x, target=[0, 1], **opts)
    model.boom.armed = False
    snap.assert_same(model)


@pytest.mark.parametrize("method", CNN_METHODS)
def test_training_mode_refused_then_allowed_and_restored(method: str) -> None:
    model = tiny_cnn().train()
    x = torch.randn(2, 1, 12, 12)
    snap = ModelSnapshot.take(model)
    inst, opts = make_method(model, method, **_opts(method))
    with pytest.raises(cg.ModelStateError):
        inst.attribute(x, target=[0, 1], **opts)
    snap.assert_same(model)
    inst, opts = make_method(model, method, allow_train_mode=True, **_opts(method))
    inst.attribute(x, target=[0, 1], **opts)
    snap.assert_same(model)  # BatchNorm running stats restored, still in train mode
