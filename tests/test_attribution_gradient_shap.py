"""GradientSHAP: cleargrad's ``gradient_shap`` is Expected Gradients with ``stdevs`` noise,
which is Captum's ``GradientShap`` exactly: per sample, a random baseline ``b`` from the
distribution, Gaussian noise on the input, a uniform ``alpha``, and
``(x_noisy - b) * grad f(b + alpha (x_noisy - b))``, averaged over the samples.

Equality under shared draws: Captum draws the baseline indices with
``np.random.choice(R, n * N)``, then the noise with ``torch.normal`` over the
``repeat_interleave``-d input, then ``alpha`` with ``np.random.uniform(0, 1, n * N)``
(numpy and torch have separate generators, so only the order within each counts). The
test seeds both, runs Captum, re-seeds, repeats the same three draws and hands them to
ours in the same (image-major) order by replacing our sampling functions; the results
must then agree to float rounding. A wrong draw order or a different formula fails.
"""

from __future__ import annotations

import captum.attr as ca
import numpy as np
import pytest
import torch
from helpers import tiny_cnn

import cleargrad as cg
import cleargrad.attribution.expected as expected_mod


@pytest.mark.parametrize("stdevs", [0.0, 0.3])
def test_gradient_shap_equals_captum_under_shared_draws(monkeypatch, stdevs: float) -> None:
    torch.set_num_threads(1)
    model = tiny_cnn(3)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 1, 12, 12, generator=gen)
    refs = torch.randn(5, 1, 12, 12, generator=gen)
    t, n = [1, 3], 4

    np.random.seed(123)
    torch.manual_seed(123)
    ref = ca.GradientShap(model).attribute(x, baselines=refs, n_samples=n, stdevs=stdevs, target=t)

    np.random.seed(123)
    torch.manual_seed(123)
    idx = torch.tensor(np.random.choice(refs.shape[0], n * x.shape[0]).tolist())
    noise = torch.normal(0, torch.tensor(stdevs).repeat((x.shape[0] * n, *x.shape[1:])))
    alpha = torch.tensor(np.random.uniform(0.0, 1.0, n * x.shape[0]), dtype=x.dtype)

    calls = {"idx": 0, "alpha": 0, "noise": 0}

    def draw_indices(high, size, generator, device):  # noqa: ANN001
        i = calls["idx"]
        calls["idx"] += size
        return idx[i : i + size].to(device)

    def draw_uniform(size, generator, like):  # noqa: ANN001
        i = calls["alpha"]
        calls["alpha"] += size
        return alpha[i : i + size].to(like)

    def standard_normal(shape, generator, like):  # noqa: ANN001
        k = calls["noise"]
        calls["noise"] += 1
        return (noise[k] / stdevs).to(like)

    monkeypatch.setattr(expected_mod, "draw_indices", draw_indices)
    monkeypatch.setattr(expected_mod, "draw_uniform", draw_uniform)
    monkeypatch.setattr(expected_mod, "standard_normal", standard_normal)
    ours = cg.explain(model, x, method="gradient_shap", target=t, references=refs, n_samples=n, stdevs=stdevs,
                      internal_batch_size=3)
    assert calls["idx"] == calls["alpha"] == n * x.shape[0]
    assert calls["noise"] == (n * x.shape[0] if stdevs else 0)
    assert float((ours - ref).abs().max() / ref.abs().max()) <= 1e-5


def test_gradient_shap_is_the_expected_gradients_class() -> None:
    assert cg.core.get_method("gradient_shap").cls is cg.ExpectedGradients
