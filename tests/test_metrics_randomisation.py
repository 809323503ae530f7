"""Randomisation sanity checks: MPRT (cascading and independent), smooth and efficient
MPRT, random logit. Equal to Quantus on the same model with the same seed; an
edge detector that ignores the model fails, a gradient method passes; the user's model
is left exactly as found, also when the explainer raises part-way."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from helpers import ModelSnapshot, tiny_cnn

import cleargrad as cg
from cleargrad.metrics import (
    efficient_mprt,
    explanation_entropy,
    mprt,
    random_logit,
    randomisable_layers,
    randomised_copies,
    sanity_check,
    smooth_mprt,
)
from cleargrad.metrics.similarity import pearson, spearman, ssim, ssim_flat

X = torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 3])


def saliency(model, x, t):
    return cg.Saliency(model).attribute(x, t)


def edges(model, x, t):
    """An 'explainer' that ignores the model: the image's gradient magnitude."""
    gx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    gy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    return (gx**2 + gy**2).sqrt()


def _qexp(model, inputs, targets, **kw):
    return saliency(model, torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()


# -- similarities against scipy / scikit-image ------------------------------------------------


def test_similarities_equal_scipy_and_skimage() -> None:
    skm = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(1)
    a = torch.rand(3, 1, 10, 9, generator=g)
    b = a + 0.3 * torch.rand(3, 1, 10, 9, generator=g)
    a[0, 0, :3] = 0.5  # ties
    for i in range(3):
        ai, bi = a[i].flatten().numpy().astype(np.float64), b[i].flatten().numpy().astype(np.float64)
        assert spearman(a, b)[i].item() == pytest.approx(scipy.stats.spearmanr(ai, bi)[0], abs=1e-12)
        assert pearson(a, b)[i].item() == pytest.approx(scipy.stats.pearsonr(ai, bi)[0], abs=1e-12)
        rng = float(max(ai.max(), bi.max()) - min(ai.min(), bi.min()))
        s2 = skm.structural_similarity(a[i, 0].double().numpy(), b[i, 0].double().numpy(), data_range=rng)
        s1 = skm.structural_similarity(ai, bi, data_range=rng)
        assert ssim(a, b)[i].item() == pytest.approx(s2, abs=1e-10)
        assert ssim_flat(a, b)[i].item() == pytest.approx(s1, abs=1e-10)


def test_entropy_equals_numpy_histogram_entropy() -> None:
    a = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(2)) ** 3
    for n_bins in (10, 100):
        for i in range(3):
            hist, _ = np.histogram(a[i].numpy(), bins=n_bins)
            assert explanation_entropy(a, n_bins)[i].item() == pytest.approx(scipy.stats.entropy(hist), abs=1e-10)


# -- the randomised copies -------------------------------------------------------------------


def test_copies_leave_the_model_and_the_global_rng_as_found() -> None:
    model = tiny_cnn(seed=1)
    snap = ModelSnapshot.take(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    steps = list(n for n, _ in randomised_copies(model, order="top_down", seed=3))
    assert steps == randomisable_layers(model)[::-1]
    assert torch.equal(torch.get_rng_state(), rng)
    snap.assert_same(model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_independent_randomises_exactly_one_layer_at_a_time() -> None:
    model = tiny_cnn(seed=1)
    ref = model.state_dict()
    for name, work in randomised_copies(model, order="independent", seed=0):
        changed = {k.rsplit(".", 1)[0] for k, v in work.state_dict().items() if not torch.equal(v, ref[k])}
        assert changed <= {name} and changed  # only this layer differs from the original


def test_cascading_is_reproducible_and_accumulates() -> None:
    model = tiny_cnn(seed=1)
    a = [{k: v.clone() for k, v in w.state_dict().items()} for _, w in randomised_copies(model, seed=5)]
    b = [{k: v.clone() for k, v in w.state_dict().items()} for _, w in randomised_copies(model, seed=5)]
    for sa, sb in zip(a, b):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ref = model.state_dict()
    n_changed = [sum(not torch.equal(s[k], ref[k]) for k in s) for s in a]
    assert n_changed == sorted(n_changed) and n_changed[-1] > n_changed[0]


# -- against Quantus ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["top_down", "independent", "bottom_up"])
def test_mprt_curves_equal_quantus(order: str) -> None:
    quantus = pytest.importorskip("quantus")
    model = tiny_cnn(seed=1).eval()
    a = _qexp(model, X.numpy(), Y.numpy())
    for sim, qsim in (("spearman", quantus.similarity_func.correlation_spearman),
                      ("pearson", quantus.similarity_func.correlation_pearson)):
        q = quantus.MPRT(layer_order=order, seed=42, similarity_func=qsim, disable_warnings=True)(
            model=model, x_batch=X.numpy(), y_batch=Y.numpy(), a_batch=a, explain_func=_qexp, device="cpu")
        ours = mprt(model, X, saliency, Y, order=order, similarity=sim, seed=43, return_curves=True)
        names = [k for k in q if k != "original"]
        assert list(ours.layers) == names
        np.testing.assert_allclose(ours.curves.numpy(), np.array([q[k] for k in names]).T, atol=1e-6)


def test_random_logit_equals_quantus() -> None:
    quantus = pytest.importorskip("quantus")
    model = tiny_cnn(seed=2, num_classes=5).eval()
    a = _qexp(model, X.numpy(), Y.numpy())
    # normalise=False: Quantus divides the whole batch by its largest value, we each map by its own
    q = quantus.RandomLogit(num_classes=5, seed=7, normalise=False, disable_warnings=True)(
        model=model, x_batch=X.numpy(), y_batch=Y.numpy(), a_batch=a, explain_func=_qexp, device="cpu")
    np.random.seed(7)  # Quantus's draw: an index into the other classes in increasing order
    r = torch.from_numpy(np.random.randint(0, 4, 4))
    off = r + (r >= Y).long()
    ours = random_logit(model, X, saliency, Y, similarity="ssim_flat", off_target=off, normalise=False)
    np.testing.assert_allclose(ours.numpy(), q, atol=1e-6)


def test_efficient_mprt_equals_quantus() -> None:
    quantus = pytest.importorskip("quantus")
    model = tiny_cnn(seed=3).eval()
    a = _qexp(model, X.numpy(), Y.numpy())
    q = quantus.EfficientMPRT(seed=42, complexity_func_kwargs={"n_bins": 50}, disable_warnings=True)(
        model=model, x_batch=X.numpy(), y_batch=Y.numpy(), a_batch=a, explain_func=_qexp, device="cpu")
    ours = efficient_mprt(model, X, saliency, Y, seed=43, n_bins=50)
    np.testing.assert_allclose(ours.numpy(), q, atol=1e-6)


# -- the sanity verdict --------------------------------------------------------------------------


def test_edge_detector_fails_and_gradient_passes() -> None:
    model = tiny_cnn(seed=1).eval()
    x = torch.randn(8, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    e = mprt(model, x, edges, return_curves=True)
    assert torch.allclose(e.curves, torch.ones_like(e.curves))
    assert not sanity_check(e)["passes"]
    g = mprt(model, x, "saliency")
    assert sanity_check(g)["passes"], sanity_check(g)
    assert not sanity_check(smooth_mprt(model, x, edges, n_samples=3, generator=torch.Generator().manual_seed(0)))[
        "passes"]
    assert efficient_mprt(model, x, edges).abs().max() < 1e-12  # the edge map's entropy does not move
    assert random_logit(model, x, edges).min() > 1 - 1e-6  # the same map whatever the class


def test_smooth_mprt_with_one_sample_is_mprt_and_is_reproducible() -> None:
    model = tiny_cnn(seed=1).eval()
    a = smooth_mprt(model, X, saliency, Y, n_samples=1, order="top_down", return_curves=True)
    b = mprt(model, X, saliency, Y, order="top_down", return_curves=True)
    torch.testing.assert_close(a.curves, b.curves)
    c = smooth_mprt(model, X, saliency, Y, n_samples=4, generator=torch.Generator().manual_seed(1))
    d = smooth_mprt(model, X, saliency, Y, n_samples=4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(c, d)


def test_method_instance_and_name_agree() -> None:
    model = tiny_cnn(seed=1).eval()
    by_name = mprt(model, X, "gradcam", Y)
    inst = mprt(model, X, cg.GradCAM(model), Y)
    torch.testing.assert_close(by_name, inst, equal_nan=True)  # NaN: an all-zero original CAM
    layer_mod = cg.GradCAM(model, layer=model.features[2])
    torch.testing.assert_close(mprt(model, X, layer_mod, Y), mprt(model, X, cg.GradCAM(model, layer="features.2"), Y),
                               equal_nan=True)


# -- model untouched and bad inputs -------------------------------------------------------------


@pytest.mark.parametrize("fn", [mprt, smooth_mprt, efficient_mprt, random_logit])
def test_model_untouched_also_when_the_explainer_raises_part_way(fn) -> None:
    model = tiny_cnn(seed=1)
    model.classifier.weight.grad = torch.randn_like(model.classifier.weight)
    snap = ModelSnapshot.take(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = {"n_samples": 2} if fn is smooth_mprt else {}
    out = fn(model, X[:2], "saliency", [0, 1], **kw)
    assert out.shape == (2,)
    snap.assert_same(model)
    calls = []

    def flaky(m, x, t):
        calls.append(m)
        if len(calls) == (2 if fn is efficient_mprt else 3):  # the 2nd randomised copy (eMPRT: its only one)
            raise RuntimeError("boom")
        return saliency(m, x, t)

    if fn is not random_logit:
        with pytest.raises(RuntimeError, match="boom"):
            fn(model, X[:2], flaky, [0, 1], **({"n_samples": 1} if fn is smooth_mprt else {}),
               **({"order": "top_down"} if fn is efficient_mprt else {}))
    snap.assert_same(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(m is model for m in calls[:1]) and all(m is not model for m in calls[1:])


def test_bad_inputs_raise_specific_errors() -> None:
    model = tiny_cnn()
    with pytest.raises(cg.ConfigError, match="order"):
        mprt(model, X, "saliency", order="random")
    with pytest.raises(cg.ConfigError, match="similarity"):
        mprt(model, X, "saliency", similarity="hog")
    with pytest.raises(cg.ConfigError, match="cannot randomise"):
        mprt(model, X, "saliency", layers=["nope"])
    with pytest.raises(cg.InputError, match="explainer"):
        mprt(model, X, 42)
    with pytest.raises(cg.InputError, match="another model"):
        mprt(model, X, cg.Saliency(tiny_cnn(seed=9)))
    with pytest.raises(cg.InputError, match="explanations for"):
        mprt(model, X, lambda m, x, t: torch.rand(1, 1, 12, 12))
    with pytest.raises(cg.ConfigError, match="n_samples"):
        smooth_mprt(model, X, "saliency", n_samples=0)
    with pytest.raises(cg.ConfigError, match="fully randomised"):
        efficient_mprt(model, X, "saliency", order="independent")
    with pytest.raises(cg.InputError, match="differ"):
        random_logit(model, X, "saliency", Y, off_target=Y)
    with pytest.raises(cg.TargetError):
        mprt(model, X, "saliency", [0, 1, 2, 99])
    with pytest.raises(cg.InputError, match="at least 7"):
        mprt(model, torch.randn(2, 1, 5, 5), "saliency", similarity="ssim")
    with pytest.raises(cg.InputError, match="finite"):
        sanity_check(torch.tensor([float("nan")]))
