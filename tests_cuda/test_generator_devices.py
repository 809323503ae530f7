"""A generator on another device than the input (issue 16, item 5).

``check_generator`` accepts a ``torch.Generator`` of any device: every sampler draws on the
generator's device and moves the draws to the input's device. These tests need a CUDA
device (a second device is the point): they live in ``tests_cuda`` (``make test-cuda``), not in
the CPU suite, and fail without one. A CPU generator must give the same
maps for a CPU and a CUDA input (float tolerance), and a CUDA generator must work for a
CPU input as well as a CUDA one, reproducibly.
"""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_cnn

import cleargrad as cg

X = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(1))
REFS = torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(2))
STOCHASTIC = {
    "smoothgrad": {"n_samples": 3, "stdevs": 0.2},
    "expected_gradients": {"n_samples": 3, "references": REFS},
    "smooth_gradcam_pp": {"n_samples": 3, "stdevs": 0.2},
    "expected_gradcam": {"n_samples": 3, "stdevs": 0.2},
}


def _explain(method: str, device: str, gen_device: str) -> torch.Tensor:
    model = tiny_cnn().eval().to(device)
    opts = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in STOCHASTIC[method].items()}
    g = torch.Generator(device=gen_device).manual_seed(0)
    out = cg.explain(model, X.to(device), method=method, target=0, generator=g, **opts)
    out = out if isinstance(out, torch.Tensor) else out.attributions
    assert out.device.type == torch.device(device).type
    return out.detach().cpu()


@pytest.mark.parametrize("method", sorted(STOCHASTIC))
def test_cpu_generator_gives_the_same_maps_on_cuda(method: str) -> None:
    on_cpu = _explain(method, "cpu", "cpu")
    on_cuda = _explain(method, "cuda", "cpu")
    assert on_cpu.abs().sum() > 0
    torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("method", sorted(STOCHASTIC))
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_cuda_generator_works_for_either_input(method: str, device: str) -> None:
    a = _explain(method, device, "cuda")
    b = _explain(method, device, "cuda")
    assert torch.isfinite(a).all() and a.abs().sum() > 0
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # draws come from the generator's device, so the input's device does not change them
    other = _explain(method, "cuda" if device == "cpu" else "cpu", "cuda")
    torch.testing.assert_close(a, other, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("gen_device", ["cpu", "cuda"])
def test_metrics_take_a_generator_on_another_device(gen_device: str) -> None:
    model = tiny_cnn().eval().to("cuda")
    x = X.to("cuda")
    expl = cg.Saliency(model).attribute(x, target=0)
    vals = []
    for _ in range(2):
        g = torch.Generator(device=gen_device).manual_seed(0)
        vals.append(cg.metrics.infidelity(model, x, expl, target=0, n_perturb=8, generator=g))
    assert torch.isfinite(vals[0]).all()
    torch.testing.assert_close(vals[0], vals[1])
    g = torch.Generator(device=gen_device).manual_seed(0)
    sens = cg.metrics.max_sensitivity(cg.Saliency(model).attribute, x, target=0, n_samples=3, generator=g)
    assert torch.isfinite(sens).all()
