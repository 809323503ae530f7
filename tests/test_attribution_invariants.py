"""Invariants of the pixel methods (spec §1): formulas that must hold whatever the model."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import FunctionalReLUNet, tiny_cnn
from test_attribution_reference import one_thread  # noqa: F401  (autouse: one intra-op thread)
from torch import nn

import cleargrad as cg
from cleargrad.attribution import Attribution


def linear_model(d: int = 12, classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, classes)).eval()


def relu_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return FunctionalReLUNet(in_channels=1, num_classes=4).eval()


def score(model: nn.Module, x: torch.Tensor, t: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(x).gather(1, torch.tensor(t).view(-1, 1)).squeeze(1)


# ---------------------------------------------------------------- linear models
def test_saliency_of_linear_model_is_abs_weight() -> None:
    m = linear_model()
    x = torch.randn(4, 3, 2, 2)
    a = cg.Saliency(m).attribute(x, target=[0, 1, 2, 1])
    w = m[1].weight.detach().view(3, 3, 2, 2)
    assert torch.equal(a, w[[0, 1, 2, 1]].abs())
    assert torch.equal(cg.Saliency(m).attribute(x, target=[0, 1, 2, 1], abs=False), w[[0, 1, 2, 1]])


def test_input_x_gradient_sums_to_score_minus_bias_on_linear_model() -> None:
    m = linear_model()
    x = torch.randn(4, 3, 2, 2)
    t = [2, 0, 1, 2]
    a = cg.InputXGradient(m).attribute(x, target=t)
    b = m[1].bias.detach()[t]
    torch.testing.assert_close(a.flatten(1).sum(1), score(m, x, t) - b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "method", ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]
)
@pytest.mark.parametrize("n_steps", [2, 3, 17])
def test_ig_exact_on_linear_model_at_any_n_steps(method: str, n_steps: int) -> None:
    m = linear_model()
    x, base = torch.randn(3, 3, 2, 2), torch.randn(3, 3, 2, 2)
    t = [0, 1, 2]
    a, delta = cg.IntegratedGradients(m).attribute(
        x, target=t, baselines=base, n_steps=n_steps, method=method, return_convergence_delta=True
    )
    w = m[1].weight.detach().view(3, 3, 2, 2)[t]
    torch.testing.assert_close(a, (x - base) * w, rtol=1e-5, atol=1e-6)
    assert delta.abs().max() < 1e-5


# ---------------------------------------------------------------- IG completeness
def test_ig_completeness_error_falls_with_n_steps_on_relu_cnn() -> None:
    m = tiny_cnn(seed=0, num_classes=5)
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    base = x - 2.0  # non-degenerate baseline (not zero, not x)
    with torch.no_grad():
        t = (m(x) - m(base)).abs().argmax(1).tolist()  # the class whose score moves most
    gap = score(m, x, t) - score(m, base, t)
    assert gap.abs().min() > 0.05, "choose a case where f(x) - f(x') is far from 0 (float noise ~1e-7)"
    for method in ("riemann_trapezoid", "gausslegendre"):
        errs = {}
        for n in (4, 32, 256):
            a, delta = cg.IntegratedGradients(m).attribute(
                x, target=t, baselines=base, n_steps=n, method=method, return_convergence_delta=True
            )
            # delta is what it claims to be
            torch.testing.assert_close(delta, a.flatten(1).sum(1) - gap, rtol=1e-4, atol=1e-5)
            errs[n] = (delta.abs() / gap.abs()).max().item()
        assert errs[256] < 1e-2, (method, errs)
        assert errs[256] < errs[4], (method, errs)
        assert errs[32] < errs[4], (method, errs)


def test_ig_baseline_forms_agree() -> None:
    m = relu_cnn()
    x = torch.randn(2, 1, 8, 8)
    b = torch.full((1, 1, 1, 1), 0.3)
    ig = cg.IntegratedGradients(m)
    ref = ig.attribute(x, target=1, baselines=torch.full_like(x, 0.3), n_steps=6)
    for form in (0.3, b, lambda z: torch.full_like(z, 0.3)):
        torch.testing.assert_close(ig.attribute(x, target=1, baselines=form, n_steps=6), ref)
    with pytest.raises(cg.InputError, match="broadcast"):
        ig.attribute(x, target=1, baselines=torch.zeros(3, 1, 8, 8))


@pytest.mark.parametrize("ibs", [1, 3, 7, 1000])
def test_ig_result_does_not_depend_on_internal_batch_size(ibs: int) -> None:
    m = tiny_cnn()
    x = torch.randn(3, 1, 12, 12)
    ref = cg.IntegratedGradients(m).attribute(x, target=[0, 1, 2], n_steps=5)
    a = cg.IntegratedGradients(m).attribute(x, target=[0, 1, 2], n_steps=5, internal_batch_size=ibs)
    torch.testing.assert_close(a, ref, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- deconvolution / guided
def test_deconvolution_does_not_depend_on_x_without_max_pool() -> None:
    m = relu_cnn()
    x1, x2 = torch.randn(1, 1, 10, 10), 3 * torch.randn(1, 1, 10, 10) + 1
    d = cg.Deconvolution(m)
    a1, a2 = d.attribute(x1, target=2), d.attribute(x2, target=2)
    assert torch.allclose(a1, a2, atol=1e-6)
    # ... whereas the plain gradient does depend on x
    s = cg.Saliency(m)
    assert not torch.allclose(s.attribute(x1, target=2, abs=False), s.attribute(x2, target=2, abs=False), atol=1e-4)


def test_deconvolution_and_guided_equal_plain_gradient_without_relus() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    x = torch.randn(2, 1, 8, 8)
    plain = cg.Saliency(m).attribute(x, target=[0, 2], abs=False)
    assert torch.equal(cg.Deconvolution(m).attribute(x, target=[0, 2]), plain)
    assert torch.equal(cg.GuidedBackprop(m).attribute(x, target=[0, 2]), plain)


def _all_positive_net() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(inplace=True),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
    ).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.abs_().add_(0.01)  # positive weights and biases
    return m


def test_guided_equals_plain_gradient_when_all_relus_active_and_signals_non_negative() -> None:
    m = _all_positive_net()
    x = torch.rand(2, 1, 6, 6) + 0.1  # positive input: every pre-activation > 0
    plain = cg.Saliency(m).attribute(x, target=[0, 1], abs=False)
    assert (plain > 0).all()
    torch.testing.assert_close(cg.GuidedBackprop(m).attribute(x, target=[0, 1]), plain, rtol=0, atol=0)
    torch.testing.assert_close(cg.Deconvolution(m).attribute(x, target=[0, 1]), plain, rtol=0, atol=0)


class Scaled(nn.Module):
    def __init__(self, inner: nn.Module, c: float) -> None:
        super().__init__()
        self.inner, self.c = inner, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c * self.inner(x)


def test_guided_is_positively_homogeneous_in_the_score() -> None:
    """Scaling y_c by c > 0 scales the guided map by c (normalised map unchanged); a
    negative c does not just flip the sign, because the rule keeps only positive signals."""
    m = relu_cnn()
    x = torch.randn(2, 1, 10, 10)
    a = cg.GuidedBackprop(m).attribute(x, target=[0, 3])
    a3 = cg.GuidedBackprop(Scaled(m, 3.0).eval()).attribute(x, target=[0, 3])
    torch.testing.assert_close(a3, 3.0 * a, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(a3 / a3.abs().amax(), a / a.abs().amax(), rtol=1e-5, atol=1e-7)
    an = cg.GuidedBackprop(Scaled(m, -1.0).eval()).attribute(x, target=[0, 3])
    assert not torch.allclose(an, -a, atol=1e-4)


# ---------------------------------------------------------------- batch = one by one
DETERMINISTIC = {
    "saliency": (lambda m: cg.Saliency(m), {}),
    "saliency_signed": (lambda m: cg.Saliency(m), {"abs": False}),
    "input_x_gradient": (lambda m: cg.InputXGradient(m), {}),
    "guided_backprop": (lambda m: cg.GuidedBackprop(m), {}),
    "deconvolution": (lambda m: cg.Deconvolution(m), {}),
    "integrated_gradients": (lambda m: cg.IntegratedGradients(m), {"n_steps": 6, "baselines": 0.2}),
}
STOCHASTIC = {
    "smoothgrad": (lambda m: cg.SmoothGrad(m), {"n_samples": 4}),
    "noise_tunnel_ig_vargrad": (
        lambda m: cg.NoiseTunnel(cg.IntegratedGradients(m)),
        {"n_samples": 3, "n_steps": 3, "nt_type": "vargrad", "stdevs": 0.3},
    ),
    "expected_gradients": (
        lambda m: cg.ExpectedGradients(m),
        {"n_samples": 5, "references": torch.randn(4, 1, 10, 10, generator=torch.Generator().manual_seed(5))},
    ),
    "gradient_shap": (
        lambda m: cg.ExpectedGradients(m),
        {
            "n_samples": 5,
            "stdevs": 0.2,
            "references": torch.randn(4, 1, 10, 10, generator=torch.Generator().manual_seed(5)),
        },
    ),
}


@pytest.mark.parametrize("name", list(DETERMINISTIC))
def test_batch_equals_one_by_one_deterministic(name: str) -> None:
    make, opts = DETERMINISTIC[name]
    m = tiny_cnn()
    x = torch.randn(3, 1, 10, 10)
    t = [4, 0, 2]
    batch = make(m).attribute(x, target=t, **opts)
    single = torch.cat([make(m).attribute(x[i : i + 1], target=t[i], **opts) for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(STOCHASTIC))
def test_stochastic_batch_equals_one_by_one_with_shared_generator(name: str) -> None:
    """A batch equals its images explained one by one, passing the same generator to each
    successive call (each image draws from its own stream seeded from the generator)."""
    make, opts = STOCHASTIC[name]
    m = tiny_cnn()
    x = torch.randn(3, 1, 10, 10)
    t = [4, 0, 2]
    batch = make(m).attribute(x, target=t, generator=torch.Generator().manual_seed(7), **opts)
    g = torch.Generator().manual_seed(7)
    single = torch.cat([make(m).attribute(x[i : i + 1], target=t[i], generator=g, **opts) for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(STOCHASTIC))
def test_generator_reproducibility_and_chunk_independence(name: str) -> None:
    make, opts = STOCHASTIC[name]
    m = tiny_cnn()
    # 1x10x10 = 100 elements (not a multiple of 16): a draw layout that depends on the chunk
    # size would give different noise here
    x = torch.randn(2, 1, 10, 10)

    def run(seed: int, **kw) -> torch.Tensor:  # noqa: ANN003
        return make(m).attribute(x, target=[1, 3], generator=torch.Generator().manual_seed(seed), **opts, **kw)

    a = run(0)
    assert torch.equal(a, run(0))
    assert not torch.allclose(a, run(1), atol=1e-6)
    for ibs in (3,):
        torch.testing.assert_close(run(0, internal_batch_size=ibs), a, rtol=1e-5, atol=1e-8)
    # generator=None draws from torch's global RNG: reproducible with torch.manual_seed
    torch.manual_seed(3)
    b1 = make(m).attribute(x, target=[1, 3], **opts)
    torch.manual_seed(3)
    assert torch.equal(b1, make(m).attribute(x, target=[1, 3], **opts))


# ---------------------------------------------------------------- NoiseTunnel formulas
class Echo(Attribution):
    """An 'attribution' that returns (a function of) its input and records every call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.seen: list[torch.Tensor] = []

    def _attribute(self, x: torch.Tensor, target: object, power: int = 1) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x**power


def _group_by_image(seen: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
    """Assign each noisy copy to its clean image (nearest; noise is small)."""
    d = torch.cdist(seen.flatten(1), x.flatten(1))
    owner = d.argmin(1)
    return [seen[owner == i] for i in range(x.shape[0])]


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_formulas_on_recorded_noise(nt_type: str) -> None:
    m = tiny_cnn()
    x = torch.stack([torch.full((1, 6, 6), v) for v in (-3.0, 0.0, 4.0)])
    echo = Echo(m)
    out = cg.NoiseTunnel(echo).attribute(
        x, target=0, nt_type=nt_type, n_samples=6, stdevs=0.2, generator=torch.Generator().manual_seed(0),
        internal_batch_size=4, power=3,
    )
    groups = _group_by_image(torch.cat(echo.seen), x)
    assert [len(gp) for gp in groups] == [6, 6, 6]
    a = [gp**3 for gp in groups]  # the per-sample attributions the tunnel saw
    if nt_type == "smoothgrad":
        ref = torch.stack([ai.mean(0) for ai in a])
    elif nt_type == "smoothgrad_sq":
        ref = torch.stack([(ai**2).mean(0) for ai in a])
    else:
        ref = torch.stack([ai.var(0, unbiased=False) for ai in a])
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["stdevs", "noise_level"])
def test_noise_tunnel_noise_has_the_requested_std(mode: str) -> None:
    m = tiny_cnn()
    x = torch.rand(2, 1, 8, 8) * torch.tensor([1.0, 4.0]).view(2, 1, 1, 1)  # different value ranges
    echo = Echo(m)
    kw = {"stdevs": 0.05} if mode == "stdevs" else {"noise_level": 0.1}
    cg.NoiseTunnel(echo).attribute(x, target=0, n_samples=200, generator=torch.Generator().manual_seed(0), **kw)
    groups = _group_by_image(torch.cat(echo.seen), x)
    for i, gp in enumerate(groups):
        want = 0.05 if mode == "stdevs" else 0.1 * (x[i].max() - x[i].min()).item()
        got = (gp - x[i]).std().item()
        assert abs(got - want) < 0.03 * want, (i, got, want)
        assert abs((gp - x[i]).mean().item()) < 0.03 * want


def test_noise_tunnel_zero_noise_equals_base_method() -> None:
    m = tiny_cnn()
    x = torch.randn(2, 1, 10, 10)
    for base, opts in ((cg.Saliency(m), {}), (cg.GuidedBackprop(m), {}), (cg.IntegratedGradients(m), {"n_steps": 4})):
        ref = base.attribute(x, target=[1, 2], **opts)
        sg = cg.NoiseTunnel(base).attribute(x, target=[1, 2], stdevs=0.0, n_samples=3, **opts)
        torch.testing.assert_close(sg, ref, rtol=1e-6, atol=1e-8)
        sq = cg.NoiseTunnel(base).attribute(x, target=[1, 2], nt_type="smoothgrad_sq", stdevs=0.0, n_samples=3, **opts)
        torch.testing.assert_close(sq, ref**2, rtol=1e-5, atol=1e-10)
        vg = cg.NoiseTunnel(base).attribute(x, target=[1, 2], nt_type="vargrad", stdevs=0.0, n_samples=3, **opts)
        assert vg.abs().max() <= 1e-6 * (ref**2).max()
    assert torch.equal(
        cg.SmoothGrad(m).attribute(x, target=[1, 2], noise_level=0.0, n_samples=2),
        cg.Saliency(m).attribute(x, target=[1, 2]),
    )


# ---------------------------------------------------------------- Expected Gradients
def test_expected_gradients_single_reference_equals_ig_in_expectation() -> None:
    """EG with one reference x' is a Monte-Carlo estimate of IG(x, x'): with K draws each
    pixel's error is ~ N(0, s^2/K), s the per-draw std; check |EG - IG| < 5 s/sqrt(K)."""
    m = relu_cnn(seed=2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 8, 8, generator=g)
    ref = 0.5 * torch.randn(1, 1, 8, 8, generator=g)
    k = 2000
    eg = cg.ExpectedGradients(m).attribute(
        x, target=2, references=ref, n_samples=k, generator=torch.Generator().manual_seed(1)
    )
    ig = cg.IntegratedGradients(m).attribute(x, target=2, baselines=ref, n_steps=256)
    # per-draw spread, from an independent set of draws t ~ U(0, 1)
    t = torch.rand(k, generator=torch.Generator().manual_seed(2)).view(-1, 1, 1, 1)
    terms = (x - ref) * cg.Saliency(m).attribute(ref + t * (x - ref), target=2, abs=False)
    se = terms.std(0, keepdim=True) / math.sqrt(k)
    z = (eg - ig).abs() / (se + 1e-12)
    assert z.max() < 5.0, z.max()
    # the tolerance is tight enough to catch a plausible bug: positions t^2 instead of t
    wrong = ((x - ref) * cg.Saliency(m).attribute(ref + t**2 * (x - ref), target=2, abs=False)).mean(0, keepdim=True)
    assert ((wrong - ig).abs() / (se + 1e-12)).max() > 5.0
    # expected completeness
    gap = (score(m, x, [2]) - score(m, ref, [2])).item()
    assert abs(eg.sum().item() - gap) < 5 * terms.flatten(1).sum(1).std().item() / math.sqrt(k)


def test_expected_gradients_completeness_per_draw_on_linear_model() -> None:
    m = linear_model(d=12, classes=3)
    refs = torch.randn(3, 3, 2, 2)
    x = torch.randn(2, 3, 2, 2)
    t = [0, 2]
    fx = score(m, x, t)
    f_refs = torch.stack([score(m, refs, [c] * 3) for c in t])  # (2 images, 3 refs)
    hit = set()
    for seed in range(8):
        for stdevs in (0.0, 0.5):
            eg = cg.ExpectedGradients(m).attribute(
                x, target=t, references=refs, n_samples=1, stdevs=stdevs, generator=torch.Generator().manual_seed(seed)
            )
            s = eg.flatten(1).sum(1)
            for i in range(2):
                if stdevs == 0.0:
                    # one draw: sum EG = f(x) - f(x'_k) for the drawn reference k
                    diffs = (s[i] - (fx[i] - f_refs[i])).abs()
                    assert diffs.min() < 1e-5, diffs
                    hit.add(int(diffs.argmin()))
    assert hit == {0, 1, 2}  # every reference gets drawn
    # many draws: sum EG = f(x) - mean over draws of f(x'), close to the mean over refs
    eg = cg.ExpectedGradients(m).attribute(
        x, target=t, references=refs, n_samples=3000, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(eg.flatten(1).sum(1), fx - f_refs.mean(1), rtol=0, atol=0.1 * f_refs.std().item())


# ---------------------------------------------------------------- dtype / shape
ALL = {**DETERMINISTIC, **STOCHASTIC}


@pytest.mark.parametrize("name", list(ALL))
def test_output_shaped_like_x_same_dtype(name: str) -> None:
    make, opts = ALL[name]
    m = tiny_cnn().double()
    opts = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in opts.items()}
    x = torch.randn(2, 1, 10, 10, dtype=torch.float64)
    a = make(m).attribute(x, target=[0, 1], **opts)
    assert a.shape == x.shape and a.dtype == torch.float64 and a.device == x.device
    assert torch.isfinite(a).all()


def test_zero_gradient_gives_zero_map_not_nan() -> None:
    m = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        m[1].weight.zero_()
    x = torch.randn(1, 1, 2, 2)
    for cls in (cg.Saliency, cg.InputXGradient, cg.GuidedBackprop, cg.Deconvolution, cg.IntegratedGradients):
        a = cls(m).attribute(x, target=0)
        assert torch.equal(a, torch.zeros_like(x))


# ---------------------------------------------------------------- by name, wrapped methods
def test_explain_by_name_equals_the_class() -> None:
    m = tiny_cnn()
    x = torch.randn(2, 1, 10, 10)
    refs = torch.randn(3, 1, 10, 10)
    cases = [
        ("saliency", cg.Saliency, {}),
        ("input_x_gradient", cg.InputXGradient, {}),
        ("guided_backprop", cg.GuidedBackprop, {}),
        ("deconvolution", cg.Deconvolution, {}),
        ("integrated_gradients", cg.IntegratedGradients, {"n_steps": 4}),
        ("ig", cg.IntegratedGradients, {"n_steps": 4}),
        ("smoothgrad", cg.SmoothGrad, {"n_samples": 2}),
        ("expected_gradients", cg.ExpectedGradients, {"n_samples": 2, "references": refs}),
        ("gradient_shap", cg.ExpectedGradients, {"n_samples": 2, "references": refs, "stdevs": 0.1}),
    ]
    names = cg.methods("attribution")
    for name, cls, opts in cases:
        gen = {"generator": torch.Generator().manual_seed(0)} if cls in (cg.SmoothGrad, cg.ExpectedGradients) else {}
        gen2 = {"generator": torch.Generator().manual_seed(0)} if gen else {}
        a = cg.explain(m, x, method=name, target=[1, 2], **opts, **gen)
        b = cls(m).attribute(x, target=[1, 2], **opts, **gen2)
        assert torch.equal(a, b), name
        assert cg.core.get_method(name).cls is cls
    assert {"saliency", "input_x_gradient", "guided_backprop", "deconvolution", "integrated_gradients",
            "smoothgrad", "expected_gradients"} <= set(names)


def test_noise_tunnel_around_guided_and_ig_leaves_model_untouched() -> None:
    from helpers import BoomNet, ModelSnapshot

    for make in (lambda m: cg.NoiseTunnel(cg.GuidedBackprop(m)), lambda m: cg.NoiseTunnel(cg.IntegratedGradients(m))):
        model = BoomNet().eval()
        for i, p in enumerate(model.parameters()):
            if i % 2 == 0:
                p.grad = torch.randn_like(p)
        x = torch.randn(2, 1, 12, 12)
        snap = ModelSnapshot.take(model)
        out = make(model).attribute(x, target=[0, 1], n_samples=2, stdevs=0.1)
        assert out.shape == x.shape
        snap.assert_same(model)
        model.boom.armed = True
        with pytest.raises(RuntimeError, match="boom"):
            make(model).attribute(x, target=[0, 1], n_samples=2, stdevs=0.1)
        model.boom.armed = False
        snap.assert_same(model)  # incl. no ReLU-rule torch-function mode left active
