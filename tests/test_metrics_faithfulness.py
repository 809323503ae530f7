"""Average drop / gain / increase and insertion / deletion (spec 7.1, 7.2).

Hand-computed cases use a linear two-class model on a 2x2 image whose class-0 logit
is ``w . x`` and class-1 logit is 0, so ``p_0 = sigmoid(w . x)``; every expected
value below is written out as arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import tiny_cnn
from scipy.ndimage import gaussian_filter
from torch import nn

import cleargrad as cg
from cleargrad.metrics import (
    average_drop,
    average_gain,
    average_increase,
    blur,
    blur_kernel,
    deletion,
    insertion,
    mask_image,
)


class TwoClassLinear(nn.Module):
    """logit_0 = sum(w * x) (+ b), logit_1 = 0."""

    def __init__(self, w: torch.Tensor, b: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x * self.w).flatten(1).sum(1) + self.b
        return torch.stack([z, torch.zeros_like(z)], 1)


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


W = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # raster order w = 1, 2, 3, 4
ONES = torch.ones(1, 1, 2, 2)


# --- AD / AG / AI ----------------------------------------------------------------------


def test_average_drop_gain_increase_by_hand() -> None:
    m1 = TwoClassLinear(W).eval()
    s1 = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    # Y = sig(1+2+3+4) = sig(10); masked: 1*1 + 3*0.5 = 2.5 -> O = sig(2.5)
    y, o = sig(10), sig(2.5)
    assert average_drop(m1, ONES, s1, 0).item() == pytest.approx(100 * (y - o) / y, rel=1e-5)
    assert average_gain(m1, ONES, s1, 0).item() == 0.0
    assert average_increase(m1, ONES, s1, 0).item() == 0.0
    # the same map at another scale gives the same values (normalize="max")
    assert average_drop(m1, ONES, 4 * s1, 0).item() == pytest.approx(100 * (y - o) / y, rel=1e-5)

    m2 = TwoClassLinear(torch.tensor([[[1.0, -2.0], [1.0, -1.0]]])).eval()
    s2 = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    # Y = sig(1 - 2 + 1 - 1) = sig(-1); masked: 1 + 1 = 2 -> O = sig(2) > Y
    y, o = sig(-1), sig(2)
    assert average_drop(m2, ONES, s2, 0).item() == 0.0
    assert average_gain(m2, ONES, s2, 0).item() == pytest.approx(100 * (o - y) / (1 - y), rel=1e-5)
    assert average_gain(m2, ONES, s2, 0, ag_denominator="y").item() == pytest.approx(100 * (o - y) / y, rel=1e-5)
    assert average_increase(m2, ONES, s2, 0).item() == 100.0


def test_mask_image_pixel_space_by_hand() -> None:
    x = torch.tensor([[[[1.0, -1.0]]]])  # normalised with mean 0.5, std 0.5: pixels 1.0 and 0.0
    s = torch.tensor([[[[0.5, 0.5]]]])
    out = mask_image(x, s, mean=0.5, std=0.5)
    # pixel 1.0 * 0.5 = 0.5 -> (0.5 - 0.5) / 0.5 = 0 ; pixel 0.0 * 0.5 = 0 -> (0 - 0.5) / 0.5 = -1
    assert out.flatten().tolist() == pytest.approx([0.0, -1.0])
    assert mask_image(x, s, space="normalized").flatten().tolist() == pytest.approx([0.5, -0.5])


def test_all_ones_map_gives_zero_ad_ag_ai() -> None:
    model = tiny_cnn()
    x = torch.randn(4, 1, 12, 12)
    s = torch.ones(4, 12, 12)
    for f in (average_drop, average_gain, average_increase):
        assert torch.equal(f(model, x, s), torch.zeros(4))


def test_all_zero_map_drops_confidence_and_ranges() -> None:
    # class-0 logit 10 + w.x with w > 0, x > 0: an all-zero map (black image) lowers p_0
    m = TwoClassLinear(W, b=-5.0).eval()
    x = torch.rand(3, 1, 2, 2) + 1
    keep_one = torch.zeros(3, 2, 2)
    keep_one[:, 0, 0] = 1.0  # keeps one pixel of four: the rest is black
    ad = average_drop(m, x, keep_one, 0)
    assert (ad > 0).all() and (ad <= 100).all()
    # a map that keeps nothing is undefined (NaN), not a confidence drop that enters the mean
    with pytest.warns(RuntimeWarning, match="average_drop is undefined"):
        assert torch.isnan(average_drop(m, x, torch.zeros(3, 2, 2), 0)).all()
    model = tiny_cnn()
    x = torch.randn(6, 1, 12, 12)
    s = torch.rand(6, 1, 12, 12)
    for f in (average_drop, average_gain):
        v = f(model, x, s)
        assert ((v >= 0) & (v <= 100)).all()


# --- insertion / deletion ---------------------------------------------------------------


def test_deletion_and_insertion_by_hand_logit() -> None:
    m = TwoClassLinear(W).eval()
    s = W.clone()  # exact attribution w * x with x = 1: order pixels 4, 3, 2, 1 (values)
    r = deletion(m, ONES, s, 0, step=1, score="logit", return_curves=True)
    # logit after removing 0..4 pixels: 10, 10-4=6, 6-3=3, 3-2=1, 0
    assert r.curves[0].tolist() == pytest.approx([10, 6, 3, 1, 0])
    assert r.auc.item() == pytest.approx((10 + 6 + 3 + 1 + 0 - 10 / 2 - 0 / 2) / 4)  # 3.75
    # two pixels per step: 10, 3, 0 -> (13 - 5) / 2 = 4 ; three per step: ceil(4/3) = 2 steps: 10, 1, 0 -> 3
    assert deletion(m, ONES, s, 0, step=2, score="logit").item() == pytest.approx(4.0)
    assert deletion(m, ONES, s, 0, step=3, score="logit").item() == pytest.approx(3.0)
    r = insertion(m, ONES, s, 0, step=1, score="logit", substrate="zero", return_curves=True)
    assert r.curves[0].tolist() == pytest.approx([0, 4, 7, 9, 10])
    assert r.auc.item() == pytest.approx((0 + 4 + 7 + 9 + 10 - 0 - 10 / 2) / 4)  # 6.25


def test_deletion_by_hand_probability_and_ties() -> None:
    m = TwoClassLinear(W).eval()
    auc = deletion(m, ONES, W, 0, step=1).item()
    z = [10, 6, 3, 1, 0]
    p = [sig(v) for v in z]
    assert auc == pytest.approx((sum(p) - p[0] / 2 - p[-1] / 2) / 4, rel=1e-6)
    # a constant map: ties broken by raster index, pixel (0,0) first: 10, 9, 7, 4, 0
    r = deletion(m, ONES, torch.ones(1, 2, 2), 0, step=1, score="logit", return_curves=True)
    assert r.curves[0].tolist() == pytest.approx([10, 9, 7, 4, 0])


def test_blur_kernel_and_blur_by_hand() -> None:
    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    assert torch.allclose(blur_kernel(11, 5.0), torch.from_numpy(gaussian_filter(delta, 5, mode="reflect")))
    k = blur_kernel(3, 1.0)
    x = torch.full((1, 2, 5, 5), 2.0)
    b = blur(x, 3, 1.0)
    # interior: 2 * sum(k) = 2 ; corner (zero padding): 2 * sum of the kernel's lower-right 2x2 block
    assert b[0, :, 2, 2].tolist() == pytest.approx([2.0, 2.0])
    assert b[0, 1, 0, 0].item() == pytest.approx(2 * float(k[1:, 1:].sum()))


def test_curve_endpoints_and_length() -> None:
    model = tiny_cnn()
    x = torch.randn(3, 1, 12, 12)
    s = torch.rand(3, 1, 12, 12)
    t = [0, 1, 2]
    r = deletion(model, x, s, t, step=10, return_curves=True)
    assert r.curves.shape == (3, math.ceil(144 / 10) + 1)
    with torch.no_grad():
        px = model(x).softmax(1)[range(3), t]
        pz = model(torch.zeros_like(x)).softmax(1)[range(3), t]
        pb = model(blur(x)).softmax(1)[range(3), t]
    assert torch.allclose(r.curves[:, 0], px, atol=1e-6)
    assert torch.allclose(r.curves[:, -1], pz, atol=1e-6)
    r = insertion(model, x, s, t, step=10, return_curves=True)
    assert torch.allclose(r.curves[:, 0], pb, atol=1e-6)
    assert torch.allclose(r.curves[:, -1], px, atol=1e-6)
    # batch size does not change the result; one image at a time gives the same
    assert torch.allclose(insertion(model, x, s, t, step=10, batch_size=7), r.auc, atol=1e-6)
    for i in range(3):
        one = insertion(model, x[i : i + 1], s[i : i + 1], t[i], step=10)
        assert torch.allclose(one, r.auc[i : i + 1], atol=1e-6)


def test_constant_curve_auc_is_the_constant() -> None:
    m = TwoClassLinear(torch.zeros(1, 3, 3), b=0.7).eval()  # output independent of the input
    x = torch.randn(2, 1, 3, 3)
    auc = deletion(m, x, torch.rand(2, 3, 3), 0, step=2)
    assert torch.allclose(auc, torch.full((2,), sig(0.7)))


def test_true_contribution_order_beats_random_orders() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.rand(3, 6, 6, generator=g)
    m = TwoClassLinear(w, b=-20.0).eval()
    x = torch.rand(4, 3, 6, 6, generator=g) + 0.5
    exact = x * w  # the exact attribution of the linear class-0 logit (w . x), all positive
    d_exact = deletion(m, x, exact, 0, step=3)
    i_exact = insertion(m, x, exact, 0, step=3, substrate="zero")
    for _ in range(5):
        rnd = torch.rand(4, 6, 6, generator=g)
        assert (d_exact < deletion(m, x, rnd, 0, step=3)).all()
        assert (i_exact > insertion(m, x, rnd, 0, step=3, substrate="zero")).all()


def test_predicted_class_ignores_target() -> None:
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    s = torch.rand(2, 12, 12)
    with torch.no_grad():
        pred = model(x).argmax(1)
    a = deletion(model, x, s, [3, 3], which_class="predicted", step=16)
    assert torch.allclose(a, deletion(model, x, s, pred, step=16))
    assert torch.allclose(a, deletion(model, x, s, None, step=16))


def test_numpy_and_lowres_maps_accepted() -> None:
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    s = torch.rand(2, 1, 3, 3)
    up = torch.nn.functional.interpolate(s, size=(12, 12), mode="bilinear", align_corners=False)
    assert torch.allclose(deletion(model, x, s, 0, step=16), deletion(model, x, up, 0, step=16))
    assert torch.allclose(deletion(model, x, s.numpy(), 0, step=16), deletion(model, x, up, 0, step=16))


def test_quantus_pixel_flipping_curve_agrees() -> None:
    """Quantus PixelFlipping = our deletion curve without its first point, when the
    substrate is Quantus's "black" (the image's minimum) and the step matches.

    Its AUC differs by definition (np.trapz over the points with unit spacing, without
    the clean point), so only the curve points are compared.
    """
    quantus = pytest.importorskip("quantus")
    model = tiny_cnn()
    x = torch.randn(3, 1, 8, 8)
    s = torch.rand(3, 1, 8, 8)
    y = np.array([0, 1, 2])
    q = quantus.PixelFlipping(features_in_step=8, perturb_baseline="black", disable_warnings=True)
    theirs = np.array(q(model=model, x_batch=x.numpy(), y_batch=y, a_batch=s.numpy(), device="cpu"))
    substrate = x.amin(dim=(1, 2, 3), keepdim=True)
    ours = deletion(model.eval(), x, s, y.tolist(), step=8, substrate=substrate, return_curves=True).curves
    assert np.allclose(ours[:, 1:].numpy(), theirs, atol=1e-5)


def test_bad_inputs() -> None:
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    with pytest.raises(cg.InputError, match="holds 3 maps"):
        deletion(model, x, torch.rand(3, 12, 12))
    with pytest.raises(cg.InputError, match="channels"):
        insertion(model, x, torch.rand(2, 2, 12, 12))
    nan = torch.rand(2, 12, 12)
    nan[0, 0, 0] = float("nan")
    with pytest.raises(cg.InputError, match="NaN"):
        average_drop(model, x, nan)
    with pytest.raises(cg.ConfigError):
        deletion(model, x, torch.rand(2, 12, 12), step=0)
    with pytest.raises(cg.ConfigError):
        insertion(model, x, torch.rand(2, 12, 12), substrate="noise")
    with pytest.raises(cg.ConfigError):
        average_gain(model, x, torch.rand(2, 12, 12), ag_denominator="2")
    with pytest.raises(cg.TargetError):
        deletion(model, x, torch.rand(2, 12, 12), target=[0, 99])


def test_insertion_auto_canvas_is_zero_below_64_px_and_rise_blur_above() -> None:
    for side, kind in ((28, "zero"), (63, "zero"), (64, "blur")):
        g = torch.Generator().manual_seed(side)
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                              nn.Linear(16, 3)).eval()
        x = torch.randn(2, 1, side, side, generator=g)
        s = torch.rand(2, side, side, generator=g)
        auto = insertion(model, x, s, [0, 2], step=4 * side, return_curves=True)
        named = insertion(model, x, s, [0, 2], step=4 * side, substrate=kind, return_curves=True)
        other = insertion(model, x, s, [0, 2], step=4 * side, substrate="blur" if kind == "zero" else "zero",
                          return_curves=True)
        torch.testing.assert_close(auto.curves, named.curves)
        assert not torch.allclose(auto.curves[:, 0], other.curves[:, 0])
