"""Infidelity (spec 7.3) and Max-Sensitivity (spec 7.4), by hand and against Captum.

Agreement with Captum uses the same deterministic perturbations (a fixed tensor
handed to both, rows image-major as both libraries expand the batch).
"""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_cnn
from torch import nn

import cleargrad as cg
from cleargrad.metrics import gaussian_noise, infidelity, max_sensitivity, square_removal


class Linear(nn.Module):
    """Class-0 logit ``w . x``; class 1 logit ``-w . x``."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x * self.w).flatten(1).sum(1)
        return torch.stack([z, -z], 1)


W = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])


def fixed(perts: torch.Tensor):
    """A deterministic perturbation: hands out the given rows in order."""
    return lambda x_rep, generator: perts[: x_rep.shape[0]].to(x_rep.dtype)


def test_infidelity_by_hand() -> None:
    m = Linear(W).eval()
    x = torch.ones(1, 1, 2, 2)
    phi = torch.ones(1, 1, 2, 2)
    i1 = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    i2 = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    perts = torch.stack([i1, i2])
    # draw 1: I.phi = 1, df = w.I = 1 -> 0 ; draw 2: I.phi = 2, df = 2 + 4 = 6 -> 16 ; mean 8
    got = infidelity(m, x, phi, 0, perturbation=fixed(perts), n_perturb=2, normalize=False)
    assert got.item() == pytest.approx(8.0)
    # beta = mean(I.phi * df) / mean((I.phi)^2) = (1 + 12) / 2 / ((1 + 4) / 2) = 2.6
    # -> ((2.6 - 1)^2 + (5.2 - 6)^2) / 2 = (2.56 + 0.64) / 2 = 1.6
    got = infidelity(m, x, phi, 0, perturbation=fixed(perts), n_perturb=2, normalize=True)
    assert got.item() == pytest.approx(1.6, rel=1e-5)


@pytest.mark.parametrize("kind", ["gaussian", "square", "baseline"])
def test_infidelity_of_exact_linear_gradient_is_zero(kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 8, 8, generator=g)
    m = Linear(w).eval()
    x = torch.randn(2, 3, 8, 8, generator=g)
    phi = w.expand(2, 3, 8, 8)
    for normalize in (False, True):
        v = infidelity(m, x, phi, 0, perturbation=kind, n_perturb=20, normalize=normalize, generator=g)
        assert torch.allclose(v, torch.zeros(2), atol=1e-6)


@pytest.mark.parametrize("kind", ["square", "baseline"])
def test_infidelity_closed_form_with_deterministic_named_perturbation(kind: str) -> None:
    # a full-image square and a noise-free baseline both give I = x - b exactly, so for a
    # linear model df = w.(x - b) and INFD(phi) = (phi.(x - b) - w.(x - b))^2 per image
    g = torch.Generator().manual_seed(3)
    w = torch.randn(1, 4, 4, generator=g)
    m = Linear(w).eval()
    x = torch.randn(2, 1, 4, 4, generator=g)
    b = 0.5
    opts = {"square_size": 4} if kind == "square" else {"noise_std": 0.0}
    df = ((x - b) * w).flatten(1).sum(1)
    for phi, expect in (
        (w.expand(2, 1, 4, 4), torch.zeros(2)),
        (2 * w.expand(2, 1, 4, 4), df**2),
        (torch.ones(2, 1, 4, 4), ((x - b).flatten(1).sum(1) - df) ** 2),
    ):
        got = infidelity(m, x, phi, 0, perturbation=kind, baseline=b, n_perturb=3, normalize=False, **opts)
        assert torch.allclose(got, expect, atol=1e-5), (kind, got, expect)
    # the scale-invariant variant fits beta = 1/2 to phi = 2w: exact again
    got = infidelity(m, x, 2 * w.expand(2, 1, 4, 4), 0, perturbation=kind, baseline=b, n_perturb=3, **opts)
    assert torch.allclose(got, torch.zeros(2), atol=1e-5)


def test_noisy_baseline_draws_are_x_minus_noisy_baseline() -> None:
    from cleargrad.metrics import baseline_difference

    x = torch.randn(4, 1, 5, 5)
    i = baseline_difference(0.25, 0.2)(x, torch.Generator().manual_seed(0))
    eps = torch.empty(x.shape).normal_(0.0, 0.2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x - i, 0.25 + eps)


def test_infidelity_by_hand_and_zero_map_is_undefined() -> None:
    w = torch.randn(1, 4, 4)
    m = Linear(w).eval()
    x = torch.randn(2, 1, 4, 4)
    phi = torch.randn(2, 4, 4)
    got = infidelity(m, x, phi, 0, n_perturb=30, normalize=False, generator=torch.Generator().manual_seed(5))
    # the same draws, reproduced: I ~ N(0, 0.1^2) for 2 x 30 rows, df = w . I, I^T phi
    perts = gaussian_noise(0.1)(x.repeat_interleave(30, 0), torch.Generator().manual_seed(5))
    df = (perts * w).flatten(1).sum(1).view(2, 30)
    dot = (perts * phi.repeat_interleave(30, 0)[:, None]).flatten(1).sum(1).view(2, 30)
    assert torch.allclose(got, ((dot - df) ** 2).mean(1), rtol=1e-5)
    # an all-zero explanation explains nothing: NaN, the other image keeps its value
    phi[1] = 0
    with pytest.warns(RuntimeWarning, match=r"infidelity is undefined .*1 of 2 image\(s\): 1\)"):
        got2 = infidelity(m, x, phi, 0, n_perturb=30, normalize=False, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(got2[0], got[0]) and torch.isnan(got2[1])


def test_normalised_infidelity_never_exceeds_plain_and_generator_reproducible() -> None:
    model = tiny_cnn()
    x = torch.randn(3, 1, 12, 12)
    phi = torch.randn(3, 1, 12, 12)
    kw = dict(n_perturb=8, perturbation="square", square_size=3)
    plain = infidelity(model, x, phi, [0, 1, 2], normalize=False, generator=torch.Generator().manual_seed(1), **kw)
    norm = infidelity(model, x, phi, [0, 1, 2], normalize=True, generator=torch.Generator().manual_seed(1), **kw)
    assert (norm <= plain + 1e-6).all()
    again = infidelity(model, x, phi, [0, 1, 2], normalize=True, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(norm, again)


def test_square_removal_is_one_square_of_x_minus_baseline() -> None:
    x = torch.randn(5, 2, 9, 9)
    pert = square_removal(3, baseline=0.5)(x, torch.Generator().manual_seed(0))
    for i in range(5):
        nz = (pert[i, 0] != 0).nonzero()
        (r0, c0), (r1, c1) = nz.min(0).values.tolist(), nz.max(0).values.tolist()
        assert (r1 - r0, c1 - c0) == (2, 2) and len(nz) == 9
        assert torch.allclose(pert[i, :, r0 : r0 + 3, c0 : c0 + 3], x[i, :, r0 : r0 + 3, c0 : c0 + 3] - 0.5)


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_agrees_with_captum(normalize: bool) -> None:
    captum_metrics = pytest.importorskip("captum.metrics")
    model = tiny_cnn()
    x = torch.randn(3, 1, 12, 12)
    phi = torch.randn(3, 1, 12, 12)
    n = 6
    perts = torch.randn(3 * n, 1, 12, 12, generator=torch.Generator().manual_seed(2)) * 0.3
    ours = infidelity(model, x, phi, [0, 1, 2], perturbation=fixed(perts), n_perturb=n, normalize=normalize)
    theirs = captum_metrics.infidelity(
        model, lambda inp: (perts, inp - perts), x, phi, target=torch.tensor([0, 1, 2]),
        n_perturb_samples=n, normalize=normalize,
    )
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-7)


# --- max-sensitivity -----------------------------------------------------------------------


def test_max_sensitivity_constant_and_linear_gradient_are_zero() -> None:
    x = torch.randn(2, 1, 4, 4)
    const = max_sensitivity(lambda inp, t: torch.ones(inp.shape[0], 4, 4), x, [0, 0], n_samples=5)
    assert torch.equal(const, torch.zeros(2))
    m = Linear(torch.randn(1, 4, 4)).eval()
    sal = cg.Saliency(m)
    v = max_sensitivity(sal.attribute, x, [0, 1], n_samples=5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(v, torch.zeros(2), atol=1e-7)


def test_max_sensitivity_input_x_gradient_bound_r_norm_w() -> None:
    w = torch.tensor([[[1.0, -2.0], [3.0, 0.5]]])
    m = Linear(w).eval()
    x = torch.randn(1, 1, 2, 2)
    ixg = cg.InputXGradient(m)
    r = 0.05
    bound = r * float(w.norm())  # ||w * delta|| <= r ||w|| with equality at the ball's corners
    few = max_sensitivity(ixg.attribute, x, 0, radius=r, n_samples=5, normalize=False,
                          generator=torch.Generator().manual_seed(0))
    many = max_sensitivity(ixg.attribute, x, 0, radius=r, n_samples=4000, normalize=False,
                           generator=torch.Generator().manual_seed(0))
    assert few.item() <= bound + 1e-7 and many.item() <= bound + 1e-7
    assert many.item() >= 0.95 * bound and many.item() >= few.item()
    rel = max_sensitivity(ixg.attribute, x, 0, radius=r, n_samples=4000, normalize=True,
                          generator=torch.Generator().manual_seed(0))
    assert rel.item() == pytest.approx(many.item() / float((w * x).norm()), rel=1e-5)


def test_max_sensitivity_agrees_with_captum() -> None:
    captum_metrics = pytest.importorskip("captum.metrics")
    model = tiny_cnn()
    x = torch.randn(3, 1, 12, 12)
    n = 5
    deltas = (torch.rand(3 * n, 1, 12, 12, generator=torch.Generator().manual_seed(3)) * 2 - 1) * 0.05
    sal = cg.Saliency(model)

    def for_captum(inp, target):  # Captum passes a tuple and wants a tuple back
        return (sal.attribute(inp[0] if isinstance(inp, tuple) else inp, target),)

    ours = max_sensitivity(sal.attribute, x, [0, 1, 2], n_samples=n, perturbation=fixed(deltas))
    theirs = captum_metrics.sensitivity_max(
        for_captum, x, perturb_func=lambda inp: inp + deltas, n_perturb_samples=n, target=torch.tensor([0, 1, 2])
    )
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_max_sensitivity_resolves_target_on_clean_input() -> None:
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    seen = []

    def fn(inp, t):
        seen.append(t)
        return cg.Saliency(model).attribute(inp, t)

    max_sensitivity(fn, x, None, model=model, n_samples=3, batch_size=2)
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert torch.equal(seen[0], pred)
    assert [len(t) for t in seen[1:]] == [2, 2, 2]  # 6 perturbed copies in chunks of batch_size=2
    assert torch.equal(torch.cat(seen[1:]), pred.repeat_interleave(3))


def test_robustness_bad_inputs() -> None:
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    with pytest.raises(cg.ConfigError):
        infidelity(model, x, torch.rand(2, 12, 12), perturbation="salt")
    with pytest.raises(cg.ConfigError):
        infidelity(model, x, torch.rand(2, 12, 12), n_perturb=0)
    with pytest.raises(cg.InputError):
        infidelity(model, x, torch.rand(2, 3, 12, 12))
    with pytest.raises(cg.InputError, match="explain_fn returned"):
        max_sensitivity(lambda inp, t: torch.ones(1, 12, 12), x, 0)
