"""Monotonicity (Nguyen), region perturbation, IROF, sufficiency, continuity, relative
input/output/representation stability, non-sensitivity and input invariance: each equals
Quantus 0.6 on the same model, images, maps and perturbations (Quantus's numpy draws are
reproduced and injected on our side), has a hand-computed case or an invariant, and
rejects bad input. Where our definition differs from Quantus's by design, the test uses
the setting where they coincide and checks ours by hand otherwise."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import ModelSnapshot, tiny_cnn
from torch import nn

import cleargrad as cg
from cleargrad.metrics import (
    continuity,
    grid_segments,
    input_invariance,
    irof,
    monotonicity_nguyen,
    non_sensitivity,
    region_perturbation,
    relative_input_stability,
    relative_output_stability,
    relative_representation_stability,
    shifted_model,
    slic_segments,
    sufficiency,
)

quantus = pytest.importorskip("quantus")

MODEL = tiny_cnn(seed=1).eval()
X = torch.randn(3, 1, 10, 10, generator=torch.Generator().manual_seed(0))
A = torch.rand(3, 1, 10, 10, generator=torch.Generator().manual_seed(1))  # distinct values: no ties
Y = np.array([0, 1, 2])


def _q(cls: str, x=X, a=A, model=MODEL, explain_func=None, **kw):
    """Quantus's per-image values of metric ``cls`` (constructor options ``kw``)."""
    call = {} if explain_func is None else {"explain_func": explain_func}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array(getattr(quantus, cls)(disable_warnings=True, **kw)(
            model=model, x_batch=x.numpy(), y_batch=Y[: len(x)], a_batch=None if a is None else a.numpy(),
            device="cpu", **call), dtype=float)


class _Lin(nn.Module):
    """Two logits ``z, -z`` with ``z = sum w * x``."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone(), requires_grad=False)

    def forward(self, x):
        z = (x * self.w).flatten(1).sum(1)
        return torch.stack([z, -z], 1)


# -- monotonicity (Nguyen) ------------------------------------------------------------------


def test_monotonicity_nguyen_equals_quantus_with_its_uniform_draws() -> None:
    np.random.seed(0)
    vals = np.zeros((3, 100, 3))
    for k in range(100):  # Quantus: per group, per sample, one uniform value per image
        for j in range(3):
            vals[:, k, j] = np.random.uniform(0.0, 1.0, size=3)
    np.random.seed(0)
    q = _q("MonotonicityCorrelation", nr_samples=3)
    ours = monotonicity_nguyen(MODEL, X, A, Y.tolist(), fill_values=torch.from_numpy(vals))
    np.testing.assert_allclose(ours.numpy(), q, atol=1e-6)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(monotonicity_nguyen(MODEL, X, A, 0, n_samples=2, step=10, generator=g1),
                       monotonicity_nguyen(MODEL, X, A, 0, n_samples=2, step=10, generator=g2))


def test_monotonicity_nguyen_of_the_exact_contributions_is_one() -> None:
    w = torch.randn(1, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    x = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(1)) + 0.5
    # baseline 0, logit: removing pixel i changes the logit by w_i x_i, so the variance is (w_i x_i)^2,
    # a monotone function of |w_i x_i|: Spearman 1
    v = monotonicity_nguyen(_Lin(w), x, w * x, 0, baseline=0.0, score="logit")
    torch.testing.assert_close(v, torch.ones(2, dtype=v.dtype))
    # the reversed ranking is anti-correlated
    v = monotonicity_nguyen(_Lin(w), x, 1 / (w * x).abs(), 0, baseline=0.0, score="logit")
    torch.testing.assert_close(v, -torch.ones(2, dtype=v.dtype))


def test_monotonicity_nguyen_bad_inputs() -> None:
    with pytest.raises(cg.ConfigError, match="step"):
        monotonicity_nguyen(MODEL, X, A, 0, step=0)
    with pytest.raises(cg.InputError, match="fill_values"):
        monotonicity_nguyen(MODEL, X, A, 0, fill_values=torch.zeros(3, 7, 2))
    with pytest.raises(cg.ConfigError, match="uniform_range"):
        monotonicity_nguyen(MODEL, X, A, 0, uniform_range=(1.0, 0.0))
    with pytest.raises(cg.ConfigError, match="baseline"):
        monotonicity_nguyen(MODEL, X, A, 0, baseline="grey")


# -- region perturbation ---------------------------------------------------------------------


@pytest.mark.parametrize(("order", "patch", "regions"), [("morf", 3, 10), ("lerf", 3, 100), ("morf", 5, 100)])
def test_region_perturbation_curves_equal_quantus(order: str, patch: int, regions: int) -> None:
    q = _q("RegionPerturbation", patch_size=patch, order=order, regions_evaluation=regions)
    value, curves = region_perturbation(MODEL, X, A, Y.tolist(), patch_size=patch, order=order, regions=regions,
                                        return_curves=True)
    np.testing.assert_allclose(curves.numpy(), q, atol=1e-6)
    torch.testing.assert_close(value, curves.sum(1) / (curves.shape[1] + 1))


def test_region_perturbation_by_hand() -> None:
    w = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]] * 4]])  # column weights 1..4
    x = torch.ones(1, 1, 4, 4)
    # 2x2 patches: sums of w: left two columns 6 per patch, right two 14: MoRF removes the right ones first
    value, curves = region_perturbation(_Lin(w), x, w, 0, patch_size=2, baseline=0.0, score="logit",
                                        return_curves=True)
    assert curves.tolist() == [[14.0, 28.0, 34.0, 40.0]]
    assert value.item() == pytest.approx((14 + 28 + 34 + 40) / 5)
    _, lerf = region_perturbation(_Lin(w), x, w, 0, patch_size=2, order="lerf", baseline=0.0, score="logit",
                                  return_curves=True)
    assert lerf.tolist() == [[6.0, 12.0, 26.0, 40.0]]
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    r1 = region_perturbation(MODEL, X, A, 0, order="random", patch_size=3, generator=g1)
    assert torch.equal(r1, region_perturbation(MODEL, X, A, 0, order="random", patch_size=3, generator=g2))
    with pytest.raises(cg.ConfigError, match="order"):
        region_perturbation(MODEL, X, A, 0, order="middle")
    with pytest.raises(cg.ConfigError, match="patch_size"):
        region_perturbation(MODEL, X, A, 0, patch_size=0)
    with pytest.raises(cg.ConfigError, match="regions"):
        region_perturbation(MODEL, X, A, 0, regions=0)


# -- IROF ------------------------------------------------------------------------------------


def test_irof_curve_gives_quantus_aoc(monkeypatch: pytest.MonkeyPatch) -> None:
    # Quantus 0.6 calls np.trapz, removed in numpy 2: give it the renamed function
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    a = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    # a fixed baseline: Quantus's "mean" is the mean of the whole batch's current perturbed images
    q = _q("IROF", x=x, a=a, perturb_baseline=0.0, return_aggregate=False)
    value, curves = irof(MODEL, x, a, Y.tolist(), baseline=0.0, return_curves=True)
    s = np.array([len(torch.unique(v)) for v in slic_segments(x)])
    # Quantus: (number of segments) - trapz of the curve without its l = 0 point, zero-padded to the longest
    quantus_aoc = s - np.trapezoid(np.nan_to_num(curves[:, 1:].numpy()), axis=1)
    np.testing.assert_allclose(quantus_aoc, q, atol=1e-5)
    full = [curves[i, : s[i] + 1] for i in range(3)]
    want = [1 - (c.sum() - c[0] / 2 - c[-1] / 2).item() / (len(c) - 1) for c in full]
    np.testing.assert_allclose(value.numpy(), want, rtol=1e-6)


def test_irof_by_hand_on_a_grid() -> None:
    w = torch.tensor([[[[1.0, 1.0, 3.0, 3.0]] * 2]])  # 2x4: two 2x2 segments, weights 4 and 12 in total
    x = torch.ones(1, 1, 2, 4)

    class Pos(nn.Module):  # a positive score: the sum of w x
        def forward(self, z):
            s = (z * w).flatten(1).sum(1)
            return torch.stack([s, torch.zeros_like(s)], 1)

    value, curves = irof(Pos(), x, w, 0, segments=grid_segments(x, 2), baseline=0.0, score="logit",
                         return_curves=True)
    assert curves.tolist() == [[1.0, 4 / 16, 0.0]]  # the weight-12 segment goes first
    assert value.item() == pytest.approx(1 - (1 / 2 + 4 / 16 + 0 / 2) / 2)
    with pytest.raises(cg.InputError, match="segments"):
        irof(Pos(), x, w, 0, segments=torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(cg.InputError, match="at least 2"):
        irof(Pos(), x, w, 0, segments=torch.zeros(1, 2, 4, dtype=torch.long))


# -- sufficiency -----------------------------------------------------------------------------


def test_sufficiency_equals_quantus_where_defined() -> None:
    base = torch.rand(2, 1, 10, 10, generator=torch.Generator().manual_seed(3))
    noise = 0.3 * torch.rand(8, 1, 10, 10, generator=torch.Generator().manual_seed(4))
    a = base[torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])] + noise  # two clusters of similar maps
    x = torch.rand(8, 1, 10, 10, generator=torch.Generator().manual_seed(5))
    for th in (0.5, 0.7, 0.9):
        q = np.array(quantus.Sufficiency(threshold=th, disable_warnings=True)(
            model=MODEL, x_batch=x.numpy(), y_batch=np.zeros(8, int), a_batch=a.numpy(), device="cpu"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = sufficiency(MODEL, x, a, threshold=th, normalise=False).numpy()
        assert np.isfinite(ours).sum() >= 4
        # Quantus returns 0 for an image with no similar explanation; ours: undefined
        np.testing.assert_allclose(np.where(np.isfinite(ours), ours, 0.0), q, atol=1e-12)


def test_sufficiency_by_hand() -> None:
    lin = _Lin(torch.ones(1, 1, 2, 2))
    x = torch.tensor([1.0, 1.0, -1.0, 1.0]).view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()  # classes 0, 0, 1, 0
    a = torch.tensor([0.0, 0.1, 0.2, 5.0]).view(4, 1, 1, 1) + torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # euclidean distances of the maps: 0-1 0.2, 0-2 0.4, 1-2 0.2, to map 3 ~ 10: threshold 0.1 of the max
    with pytest.warns(RuntimeWarning, match="no similar explanation"):
        got = sufficiency(lin, x, a, threshold=0.1, distance="euclidean", normalise=False)
    assert got[:3].tolist() == [pytest.approx(1 / 2), pytest.approx(1 / 2), 0.0] and torch.isnan(got[3])
    with pytest.warns(RuntimeWarning, match="a batch of one image"):
        assert torch.isnan(sufficiency(lin, x[:1], a[:1])).all()
    with pytest.raises(cg.ConfigError, match="threshold"):
        sufficiency(lin, x, a, threshold=2.0)
    with pytest.raises(cg.ConfigError, match="distance"):
        sufficiency(lin, x, a, distance="cosine")


# -- continuity ------------------------------------------------------------------------------


def _qexp(method: str):
    def explain(model, inputs, targets, **kw):
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        return getattr(cg, method)(model).attribute(x, torch.as_tensor(np.asarray(targets))).detach().numpy()

    return explain


def test_continuity_equals_quantus() -> None:
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    sal = cg.Saliency(MODEL).attribute
    for steps in (8, 12):  # Quantus fails on shifts beyond the width (more steps)
        q = _q("Continuity", x=x, a=None, nr_steps=steps, normalise=False, explain_func=_qexp("Saliency"))
        np.testing.assert_allclose(continuity(sal, x, Y.tolist(), n_steps=steps, normalize=False).numpy(), q,
                                   rtol=1e-5)


def test_continuity_by_hand() -> None:
    x = torch.zeros(1, 1, 1, 4)
    x[..., 1] = 1.0
    # the explanation is the input itself: moving the bright column by one: L1 2, L2 sqrt 2 -> sqrt 2
    v = continuity(lambda z, t: z, x, 0, shifts=[1], baseline=0.0, normalize=False)
    assert v.item() == pytest.approx(2 ** 0.5)
    # an explanation that ignores the input does not change: 0; an unmoved image is skipped
    const = continuity(lambda z, t: torch.ones_like(z), x, 0, shifts=[0, 1, -2], baseline=0.0)
    assert const.item() == 0.0
    with pytest.raises(cg.ConfigError, match="n_steps"):
        continuity(lambda z, t: z, x, 0, n_steps=0)
    with pytest.raises(cg.ConfigError, match="target"):
        continuity(lambda z, t: z, x, None, shifts=[1])


# -- relative stability ----------------------------------------------------------------------


def _shared_draws(n: int, shape: tuple[int, ...], samples: int) -> torch.Tensor:
    """Quantus's draws in its order (sample-major), as our image-major rows."""
    np.random.seed(0)
    d = [np.random.uniform(0.02, 0.2, size=(n, int(np.prod(shape)))) for _ in range(samples)]
    np.random.seed(0)
    return torch.tensor(np.stack(d, 1).reshape(n * samples, *shape), dtype=torch.float32)


@pytest.mark.parametrize(("ours", "cls", "kw", "qkw"), [
    (relative_input_stability, "RelativeInputStability", {}, {}),
    (relative_output_stability, "RelativeOutputStability", {}, {}),
    (relative_representation_stability, "RelativeRepresentationStability", {"layer": "features.3.2"},
     {"layer_names": ["features.3.2"]}),
])
def test_relative_stability_equals_quantus_with_shared_draws(ours, cls, kw, qkw) -> None:
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    a = cg.Saliency(MODEL).attribute(x, torch.from_numpy(Y)).detach()
    d = _shared_draws(3, (1, 12, 12), 5)
    q = _q(cls, x=x, a=a, nr_samples=5, explain_func=_qexp("Saliency"), **qkw)
    assert np.isfinite(q).all()  # no draw changed the prediction: the two definitions coincide
    got = ours(MODEL, cg.Saliency(MODEL).attribute, x, Y.tolist(), a, n_samples=5, perturbation=lambda xi, g: d,
               **kw)
    np.testing.assert_allclose(got.numpy(), q, rtol=1e-4)


def test_relative_stability_by_hand_and_prediction_changes() -> None:
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0)) + 0.5
    d = torch.full_like(x, 0.1)
    # a constant explanation never changes: 0
    const = relative_input_stability(MODEL, lambda z, t: torch.ones_like(z), x, [0, 1], n_samples=1,
                                     perturbation=lambda xi, g: d)
    assert torch.equal(const, torch.zeros(2))
    # explanation = input: RIS = ||(x - x')/x|| / ||(x - x')/x|| = 1
    ident = relative_input_stability(MODEL, lambda z, t: z, x, [0, 1], n_samples=1, perturbation=lambda xi, g: d)
    torch.testing.assert_close(ident, torch.ones(2), rtol=1e-5, atol=0)
    # a draw that flips the prediction is left out; all flipped: NaN with a warning
    lin = _Lin(torch.ones(1, 1, 12, 12))
    flips = [torch.full_like(x[:1], -2.0), torch.full_like(x[:1], 0.1)]  # the first flips class 0 to 1
    mixed = relative_input_stability(lin, lambda z, t: z, x[:1], None, n_samples=2,
                                     perturbation=lambda xi, g: torch.cat(flips))
    torch.testing.assert_close(mixed, torch.ones(1), rtol=1e-5, atol=0)
    with pytest.warns(RuntimeWarning, match="change the predicted class"):
        nan = relative_output_stability(lin, lambda z, t: z, x[:1], None, n_samples=1,
                                        perturbation=lambda xi, g: flips[0])
    assert torch.isnan(nan).all()
    with pytest.raises(cg.ConfigError, match="n_samples"):
        relative_input_stability(MODEL, lambda z, t: z, x, n_samples=0)
    with pytest.raises(cg.ConfigError, match="eps_min"):
        relative_input_stability(MODEL, lambda z, t: z, x, eps_min=0)
    with pytest.raises(cg.LayerError):
        relative_representation_stability(MODEL, lambda z, t: z, x, layer="nope")


# -- non-sensitivity -------------------------------------------------------------------------


def test_non_sensitivity_equals_quantus() -> None:
    a = A * (A > 0.5)  # half the attributions zero
    for amap in (A, a):
        q = _q("NonSensitivity", a=amap, normalise=False)
        np.testing.assert_array_equal(non_sensitivity(MODEL, X, amap, Y.tolist(), normalise=False).numpy(), q)


def test_non_sensitivity_by_hand() -> None:
    w = torch.tensor([[[[1.0, 0.0], [2.0, 0.0]]]])  # the model ignores the right column
    x = torch.ones(1, 1, 2, 2) * 3.0
    lin = _Lin(w)
    assert non_sensitivity(lin, x, w * x, 0, baseline=0.0, score="logit").item() == 0  # zero exactly where ignored
    wrong = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])  # pixel (0,1) ignored but credited; (1,0) used, not credited
    assert non_sensitivity(lin, x, wrong, 0, baseline=0.0, score="logit").item() == 2
    with pytest.raises(cg.ConfigError, match="eps"):
        non_sensitivity(lin, x, w, 0, eps=-1.0)


# -- input invariance ------------------------------------------------------------------------


class _Unpadded(nn.Module):
    def __init__(self, padding: int = 0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=padding)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_shifted_model_absorbs_the_shift_and_equals_quantus_on_an_unpadded_conv() -> None:
    from quantus.helpers.model.pytorch_model import PyTorchModel

    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    m = _Unpadded().eval()
    ours = shifted_model(m, -1.0, x)
    theirs = PyTorchModel(m, channel_first=True, softmax=False, device="cpu").add_mean_shift_to_first_layer(
        -1, (1, 1, 8, 8))
    torch.testing.assert_close(ours.conv.bias, theirs.conv.bias, rtol=0, atol=1e-6)
    # exact also where zero padding sees an unshifted border (SmallCNN: padded convs + BatchNorm)
    for model in (tiny_cnn(seed=2), _Unpadded(padding=1).eval()):
        snap = ModelSnapshot.take(model)
        xx = torch.randn(2, 1, 8, 8)
        for s in (-1.0, 0.7):
            twin = shifted_model(model, s, xx)
            torch.testing.assert_close(twin(xx + s), model(xx), rtol=1e-5, atol=1e-5)
        snap.assert_same(model)


def test_input_invariance_equals_quantus() -> None:
    def shift_all(arr, indices, indexed_axes, input_shift, **kw):
        # Quantus's perturb_batch passes each image's indices without the first one, so its
        # default shift leaves pixel (0, 0) unshifted; shift the whole input, as the paper does
        return arr + input_shift

    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    m = _Unpadded().eval()
    seen = set()
    for method in ("Saliency", "InputXGradient", "IntegratedGradients"):
        q = _q("InputInvariance", x=x, a=None, model=m, explain_func=_qexp(method), perturb_func=shift_all)
        ours = input_invariance(m, x, method.lower().replace("inputxgradient", "input_x_gradient")
                                .replace("integratedgradients", "integrated_gradients"), Y.tolist())
        np.testing.assert_array_equal(ours.numpy(), q.astype(float))
        seen |= set(ours.tolist())
    assert seen == {0.0, 1.0}  # gradients are invariant, gradient x input and IG are not


def test_input_invariance_by_hand_and_bad_inputs() -> None:
    model = tiny_cnn(seed=2)
    x = torch.randn(2, 1, 8, 8)
    snap = ModelSnapshot.take(model)
    assert input_invariance(model, x, cg.Saliency(model), [0, 1]).tolist() == [1.0, 1.0]
    assert input_invariance(model, x, lambda m, z, t: z, [0, 1]).tolist() == [0.0, 0.0]  # the input moved
    snap.assert_same(model)
    with pytest.raises(cg.ConfigError, match="atol"):
        input_invariance(model, x, "saliency", atol=-1)
    with pytest.raises(cg.InputError, match="channels"):
        input_invariance(model, x, "saliency", shift=[1.0, 2.0])
    with pytest.raises(cg.ConfigError, match="no layer named"):
        input_invariance(model, x, "saliency", first_layer="nope")
    with pytest.raises(cg.ConfigError, match="Conv2d or Linear"):
        shifted_model(nn.Sequential(nn.ReLU()), 1.0, x)


# -- from the command line -------------------------------------------------------------------


def test_the_new_metrics_run_from_cleargrad_evaluate(tmp_path) -> None:  # noqa: ANN001
    import sqlite3

    from cli_support import make_images, make_model_file
    from typer.testing import CliRunner

    from cleargrad.cli import app

    names = ["monotonicity_nguyen", "region_perturbation", "irof", "sufficiency", "continuity",
             "relative_input_stability", "relative_output_stability", "relative_representation_stability",
             "non_sensitivity"]
    store = tmp_path / "eval.sqlite"
    args = ["evaluate", "--model", f"{make_model_file(tmp_path)}:factory", "--dataset", str(make_images(tmp_path)),
            "--methods", "saliency", "--metrics", ",".join(names), "--store", str(store), "--batch-size", "4",
            "--limit", "2", "-q"]
    options = ["monotonicity_nguyen.step=64", "monotonicity_nguyen.n_samples=2", "continuity.n_steps=3",
               "sufficiency.threshold=1.0"]
    options += [f"relative_{k}_stability.n_samples=2" for k in ("input", "output", "representation")]
    for opt in options:
        args += ["--metric-option", opt]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    con = sqlite3.connect(str(store))
    got = {m for (m,) in con.execute("SELECT DISTINCT metric FROM results")}
    con.close()
    assert got == set(names)


# -- local Lipschitz estimate with Quantus's Gaussian draws -----------------------------------


def test_local_lipschitz_estimate_equals_quantus_with_shared_draws() -> None:
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    a = cg.Saliency(MODEL).attribute(x, torch.from_numpy(Y)).detach()
    np.random.seed(0)
    d = [np.random.normal(0.0, 0.1, size=(3, 144)) for _ in range(6)]  # Quantus: one (N, D) draw per sample
    draws = torch.tensor(np.stack(d, 1).reshape(18, 1, 12, 12), dtype=torch.float32)
    np.random.seed(0)
    q = _q("LocalLipschitzEstimate", x=x, a=a, nr_samples=6, normalise=False, explain_func=_qexp("Saliency"))
    got = cg.metrics.local_lipschitz_estimate(cg.Saliency(MODEL).attribute, x, Y.tolist(), n_samples=6,
                                              perturbation=lambda xi, g: draws)
    np.testing.assert_allclose(got.numpy(), q, rtol=1e-4)


# -- smooth MPRT with our noise fed to Quantus ------------------------------------------------


def test_smooth_mprt_curves_equal_quantus_with_shared_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    import quantus.metrics.randomisation.smooth_mprt as qsm

    x = torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    model = tiny_cnn(seed=1).eval()
    n_samples = 3
    g = torch.Generator().manual_seed(5)
    draws = [torch.randn(x.shape, generator=g) for _ in range(n_samples - 1)]  # ours: the same for every model
    calls = iter(range(10_000))

    def replay(*shape):
        # Quantus draws np.random.randn for each noisy copy and model; give it our draws in our order
        return draws[next(calls) % (n_samples - 1)].double().numpy()

    def explain(model, inputs, targets, **kw):  # Quantus's smooth MPRT always calls quantus.explain
        xi = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        return cg.Saliency(model).attribute(xi, torch.as_tensor(np.asarray(targets))).detach().numpy()

    monkeypatch.setattr(qsm.np.random, "randn", replay)
    monkeypatch.setattr(qsm.quantus, "explain", explain)
    ours = cg.metrics.smooth_mprt(model, x, "saliency", y, n_samples=n_samples, seed=43,
                                  generator=torch.Generator().manual_seed(5), return_curves=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a0 = np.stack([explain(model, (x + 0.1 * (x.amax((1, 2, 3), keepdim=True) - x.amin((1, 2, 3), keepdim=True))
                                       * dz).numpy(), y.numpy()) for dz in [*draws, torch.zeros_like(x)]]).mean(0)
        q = quantus.SmoothMPRT(nr_samples=n_samples, seed=42, disable_warnings=True)(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a0, explain_func=explain, device="cpu")
    names = [k for k in q if k != "original"]
    assert list(ours.layers) == names
    np.testing.assert_allclose(ours.curves.numpy(), np.array([q[k] for k in names]).T, atol=1e-5)
