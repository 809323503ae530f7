"""The model-left-untouched contract under the conditions users create (issue 16).

Beyond ``test_model_untouched.py`` (one call, a bad target, an error in the forward):
an ambient ``torch.inference_mode()`` / ``torch.no_grad()`` (every method gives the
same map as outside, never a blank one), a model created inside inference mode (a
clear error, model restored), three threads explaining one model at once, interrupts
raised on the 2nd and 3rd forward pass (also ``KeyboardInterrupt``), real torchvision
architectures at small inputs, and the global RNG when ``generator=`` is passed.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch
from helpers import ModelSnapshot, tiny_cnn
from test_model_untouched import CNN_METHODS, EXTRA, _prime_grads
from torch import nn

import cleargrad as cg
from cleargrad import metrics as M
from cleargrad.api import make_method

TARGET = [0, 1]


def _opts(method: str) -> dict:
    """The method's test options, tensors copied (so made in the caller's grad mode)."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in EXTRA.get(method, {}).items()}


# --- ambient inference_mode / no_grad ---------------------------------------------------


@pytest.mark.parametrize("ambient", ["inference_mode", "no_grad"])
@pytest.mark.parametrize("method", CNN_METHODS)
def test_ambient_grad_mode_gives_the_same_map(method: str, ambient: str) -> None:
    model = tiny_cnn()
    _prime_grads(model)
    x = torch.randn(2, 1, 12, 12)
    inst, opts = make_method(model, method, **_opts(method))
    torch.manual_seed(1)
    ref = inst.attribute(x, target=TARGET, **opts)
    assert float(ref.abs().amax()) > 0
    snap = ModelSnapshot.take(model)
    with torch.inference_mode() if ambient == "inference_mode" else torch.no_grad():
        xi = x.clone()  # an inference tensor under inference_mode, as a user's input would be
        inst, opts = make_method(model, method, **_opts(method))  # options made in the mode too
        torch.manual_seed(1)
        out = inst.attribute(xi, target=torch.tensor(TARGET), **opts)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-7)
    snap.assert_same(model)


@pytest.mark.parametrize("method", ["saliency", "gradcam", "integrated_gradients"])
def test_model_made_in_inference_mode_is_a_clear_error(method: str) -> None:
    with torch.inference_mode():
        model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    snap = ModelSnapshot.take(model)
    inst, opts = make_method(model, method, **_opts(method))
    with pytest.raises(cg.ModelStateError, match=r"inference_mode.*outside"):
        inst.attribute(x, target=TARGET, **opts)
    snap.assert_same(model)
    # the documented fix: copies made outside inference mode
    with torch.inference_mode(False):
        model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, assign=True)
    assert float(inst.attribute(x, target=TARGET, **opts).abs().amax()) > 0


def test_gradient_free_cam_still_runs_on_a_model_made_in_inference_mode() -> None:
    with torch.inference_mode():
        model = tiny_cnn()
    snap = ModelSnapshot.take(model)
    out = cg.ScoreCAM(model).attribute(torch.randn(2, 1, 12, 12), target=TARGET)
    assert float(out.abs().amax()) > 0
    snap.assert_same(model)


# --- three threads on one model ---------------------------------------------------------


class _Slow(nn.Module):
    """Identity that sleeps (releasing the GIL), so concurrent forwards interleave."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.003)
        return x


def _slow_model() -> nn.Module:
    return nn.Sequential(_Slow(), tiny_cnn()).eval()


def _in_threads(calls: list, repeats: int = 2) -> tuple[list, list[str]]:
    """Run each of ``calls`` in its own thread ``repeats`` times, started together."""
    barrier = threading.Barrier(len(calls))
    results: list = [[] for _ in calls]
    errors: list[str] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(repeats):
                results[i].append(calls[i]())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


@pytest.mark.parametrize("method", ["integrated_gradients", "gradcam", "guided_backprop"])
def test_three_threads_explaining_one_model(method: str) -> None:
    model = _slow_model()
    _prime_grads(model)
    x = torch.randn(2, 1, 12, 12)
    inst, opts = make_method(model, method, **_opts(method))
    ref = inst.attribute(x, target=TARGET, **opts)
    snap = ModelSnapshot.take(model)
    results, errors = _in_threads([lambda: inst.attribute(x, target=TARGET, **opts)] * 3)
    assert not errors, errors
    for out in (o for r in results for o in r):
        torch.testing.assert_close(out, ref)
    snap.assert_same(model)


def test_three_threads_mixing_methods_and_a_metric_on_one_model() -> None:
    model = _slow_model()
    x = torch.randn(2, 1, 12, 12)
    maps = torch.rand(2, 1, 12, 12)
    calls = [
        lambda: cg.IntegratedGradients(model).attribute(x, target=TARGET, n_steps=4),
        lambda: cg.GradCAMPlusPlus(model).attribute(x, target=TARGET),
        lambda: M.deletion(model, x, maps, TARGET, step=24),
    ]
    refs = [c() for c in calls]
    snap = ModelSnapshot.take(model)
    results, errors = _in_threads(calls)
    assert not errors, errors
    for ref, outs in zip(refs, results):
        for out in outs:
            torch.testing.assert_close(out, ref)
    snap.assert_same(model)
