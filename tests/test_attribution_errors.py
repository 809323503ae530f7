"""Bad input -> its specific error class and a message that says what to do; target and
output-selector forms that must work."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_cnn
from torch import nn

import cleargrad as cg
from cleargrad.core import find_layer

X = torch.randn(2, 1, 12, 12)


def _saliency(model: nn.Module, x: torch.Tensor, **kw) -> torch.Tensor:  # noqa: ANN003
    return cg.Saliency(model).attribute(x, **kw)


def _ig(model: nn.Module, x: torch.Tensor, **kw) -> torch.Tensor:  # noqa: ANN003
    return cg.IntegratedGradients(model).attribute(x, n_steps=3, **kw)


def _eg(model: nn.Module, x: torch.Tensor, **kw) -> torch.Tensor:  # noqa: ANN003
    return cg.ExpectedGradients(model).attribute(x, n_samples=2, **kw)


def _nt(model: nn.Module, x: torch.Tensor, **kw) -> torch.Tensor:  # noqa: ANN003
    return cg.NoiseTunnel(cg.Saliency(model)).attribute(x, n_samples=2, **kw)


# (id, call(model) -> anything, error class, regex the message must match: what to do)
BAD = [
    ("rank_1d", lambda m: _saliency(m, torch.randn(12), target=0), cg.InputError, r"\(N, C, H, W\), got shape \(12,\)"),
    ("rank_1d_linear", lambda m: _saliency(nn.Linear(12, 3).eval(), torch.randn(12), target=0), cg.InputError,
     r"unsqueeze\(0\)"),
    ("rank_3d_no_batch", lambda m: _saliency(m, torch.randn(1, 12, 12), target=0), cg.InputError,
     r"\(N, C, H, W\).*unsqueeze\(0\)"),
    ("rank_5d", lambda m: _saliency(m, torch.randn(1, 1, 1, 12, 12), target=0), cg.InputError, r"\(N, C, H, W\)"),
    ("not_a_tensor", lambda m: _saliency(m, X.numpy(), target=0), cg.InputError, r"torch.as_tensor"),
    ("integer_dtype", lambda m: _saliency(m, torch.ones(2, 1, 12, 12, dtype=torch.long), target=0),
     cg.InputError, r"x\.float\(\)"),
    ("nan", lambda m: _saliency(m, X.clone().index_put_((torch.tensor([1]),), torch.tensor(float("nan"))),
                                target=0), cg.InputError, r"NaN or Inf.*clean"),
    ("inf", lambda m: _ig(m, torch.where(X > 1, float("inf"), X), target=0), cg.InputError, r"NaN or Inf"),
    ("empty_batch", lambda m: _saliency(m, torch.randn(0, 1, 12, 12), target=0), cg.InputError, r"empty"),
    ("target_out_of_range", lambda m: _saliency(m, X, target=5), cg.TargetError, r"valid: 0\.\.4"),
    ("target_negative", lambda m: _saliency(m, X, target=[0, -1]), cg.TargetError, r"-1 is out of range.*0\.\.4"),
    ("target_length_mismatch", lambda m: _saliency(m, X, target=[0, 1, 2]), cg.TargetError,
     r"3 targets for a batch of 2.*one target per image"),
    ("target_float_tensor", lambda m: _saliency(m, X, target=torch.tensor([0.0, 1.0])), cg.TargetError,
     r"integers"),
    ("target_bool", lambda m: _saliency(m, X, target=True), cg.TargetError, r"not bool"),
    ("target_2d_tensor", lambda m: _saliency(m, X, target=torch.zeros(2, 1, dtype=torch.long)), cg.TargetError,
     r"1-D"),
    ("target_string", lambda m: _saliency(m, X, target="cat"), cg.TargetError, r"int"),
    ("target_out_of_range_ig", lambda m: _ig(m, X, target=[0, 7]), cg.TargetError, r"valid: 0\.\.4"),
    ("target_out_of_range_nt", lambda m: _nt(m, X, target=9), cg.TargetError, r"valid: 0\.\.4"),
    ("unknown_layer", lambda m: find_layer(m, "features.3.1.conv"), cg.LayerError, r"Did you mean: features\.3\.1"),
    ("unknown_layer_no_match", lambda m: find_layer(m, "zzz"), cg.LayerError,
     r"Top-level layers: features, classifier"),
    ("training_mode", lambda m: _saliency(m.train(), X, target=0), cg.ModelStateError,
     r"model\.eval\(\).*allow_train_mode=True"),
    ("training_mode_submodule", lambda m: _ig(_train_one(m), X, target=0), cg.ModelStateError, r"model\.eval\(\)"),
    ("ig_bad_baseline_shape", lambda m: _ig(m, X, target=0, baselines=torch.zeros(3, 1, 12, 12)), cg.InputError,
     r"broadcast.*give a scalar"),
    ("ig_nan_baseline", lambda m: _ig(m, X, target=0, baselines=float("nan")), cg.InputError, r"finite"),
    ("ig_bad_n_steps", lambda m: cg.IntegratedGradients(m).attribute(X, target=0, n_steps=0), cg.ConfigError,
     r"positive int"),
    ("ig_unknown_method", lambda m: _ig(m, X, target=0, method="simpson"), cg.ConfigError, r"valid: riemann_left"),
    ("eg_no_references", lambda m: _eg(m, X, target=0), cg.InputError, r"references="),
    ("eg_reference_shape", lambda m: _eg(m, X, target=0, references=torch.zeros(3, 1, 8, 8)), cg.InputError,
     r"\(R, 1, 12, 12\)"),
    ("eg_nan_reference", lambda m: _eg(m, X, target=0, references=torch.full((3, 1, 12, 12), float("nan"))),
     cg.InputError, r"finite"),
    ("nt_unknown_type", lambda m: _nt(m, X, target=0, nt_type="smooth"), cg.ConfigError, r"valid: smoothgrad"),
    ("nt_negative_std", lambda m: _nt(m, X, target=0, stdevs=-1.0), cg.ConfigError, r">= 0"),
    ("nt_both_stds", lambda m: _nt(m, X, target=0, stdevs=1.0, noise_level=0.1), cg.ConfigError, r"exactly one"),
    ("nt_convergence_delta", lambda m: cg.NoiseTunnel(cg.IntegratedGradients(m)).attribute(
        X, target=0, n_samples=2, n_steps=2, return_convergence_delta=True), cg.ConfigError,
     r"wrapped method directly"),
    ("nt_zero_samples", lambda m: cg.SmoothGrad(m).attribute(X, target=0, n_samples=0), cg.ConfigError,
     r"positive int"),
    ("unknown_method_name", lambda m: cg.explain(m, X, method="saliancy"), cg.ConfigError, r"Did you mean"),
]


def _train_one(m: nn.Module) -> nn.Module:
    m.features[2][1].train()  # one BatchNorm in training mode is enough to refuse
    return m


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_raises_its_error(case: tuple) -> None:
    _, call, err, msg = case
    model = tiny_cnn(num_classes=5)
    with pytest.raises(err, match=msg) as info:
        call(model)
    assert isinstance(info.value, cg.ExplanationError)


# ---------------------------------------------------------------- accepted target forms
def test_target_none_is_argmax() -> None:
    m = tiny_cnn(num_classes=5)
    with torch.no_grad():
        top = m(X).argmax(1)
    for make, kw in ((cg.Saliency, {}), (cg.GuidedBackprop, {}), (cg.IntegratedGradients, {"n_steps": 3})):
        torch.testing.assert_close(make(m).attribute(X, **kw), make(m).attribute(X, target=top, **kw))
    torch.testing.assert_close(
        cg.SmoothGrad(m).attribute(X, n_samples=2, generator=torch.Generator().manual_seed(0)),
        cg.SmoothGrad(m).attribute(X, target=top.tolist(), n_samples=2, generator=torch.Generator().manual_seed(0)),
    )


def test_target_forms_agree() -> None:
    m = tiny_cnn(num_classes=5)
    s = cg.Saliency(m)
    ref = torch.cat([s.attribute(X[:1], target=3), s.attribute(X[1:], target=1)])
    for t in ([3, 1], (3, 1), torch.tensor([3, 1]), torch.tensor([3, 1], dtype=torch.int32)):
        torch.testing.assert_close(s.attribute(X, target=t), ref)
    same = torch.cat([s.attribute(X[:1], target=2), s.attribute(X[1:], target=2)])
    for t in (2, torch.tensor(2)):
        torch.testing.assert_close(s.attribute(X, target=t), same)
    assert not torch.allclose(ref, same)


class TupleModel(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.mean(dim=(1, 2, 3)), self.inner(x)


class DictModel(TupleModel):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"aux": x.mean(dim=(1, 2, 3)), "logits": self.inner(x)}


@pytest.mark.parametrize("method", ["saliency", "guided_backprop", "integrated_gradients", "expected_gradients"])
def test_output_selector_for_tuple_and_dict_models(method: str) -> None:
    m = tiny_cnn(num_classes=5)
    opts = {"n_steps": 3} if method == "integrated_gradients" else {}
    if method == "expected_gradients":
        opts = {"references": torch.zeros(2, 1, 12, 12), "n_samples": 2}

    def run(model: nn.Module, **kw) -> torch.Tensor:  # noqa: ANN003
        g = {"generator": torch.Generator().manual_seed(0)} if method == "expected_gradients" else {}
        return cg.explain(model, X, method=method, target=[1, 4], **opts, **g, **kw)

    ref = run(m)
    torch.testing.assert_close(run(TupleModel(m).eval(), output=1), ref)
    torch.testing.assert_close(run(TupleModel(m).eval(), output=lambda out: out[1]), ref)
    torch.testing.assert_close(run(DictModel(m).eval(), output="logits"), ref)
    with pytest.raises(cg.InputError, match="output="):
        run(TupleModel(m).eval())
    with pytest.raises(cg.InputError, match="keys"):
        run(DictModel(m).eval(), output="scores")
