"""The model-left-untouched contract under the conditions users create (issue 16).

Beyond ``test_model_untouched.py`` (one call, a bad target, an error in the forward):
an ambient ``torch.inference_mode()`` / ``torch.no_grad()`` (every method gives the
same map as outside, never a blank one), a model created inside inference mode (a
clear error, model restored), three threads explaining one model at once, interrupts
raised on the 2nd and 3rd forward pass (also ``KeyboardInterrupt``), real torchvision
architectures at small inputs, and the global RNG when ``generator=`` is passed.

Real architectures (densenet121, efficientnet_b0, mobilenet_v3_small, convnext_tiny,
regnet_y_400mf; random init, 2 x 3 x 32 x 32 inputs): every registered method on the
three small ones, all but the per-channel CAMs on densenet121, the six core methods
on convnext_tiny (28M parameters); at 32 px the last block is 1 x 1, so CAM maps of a
random model are often blank (all zero): the state of the model is what is checked.
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


# --- interrupts on the 2nd and 3rd forward pass, also KeyboardInterrupt ------------------


def _interrupt_call(model: nn.Module, module: nn.Module, call, n: int, exc: BaseException) -> bool:
    """Run ``call()`` with ``exc`` raised on the ``n``-th forward of ``module``; True if it completed.

    Asserts that the call raised exactly when the forward ran ``n`` times, and that the
    model (with the test's own hook still on it) is left as it was found.
    """
    calls = 0

    def hook(_m: nn.Module, _inp: object) -> None:
        nonlocal calls
        calls += 1
        if calls == n:
            raise exc

    handle = module.register_forward_pre_hook(hook)
    try:
        snap = ModelSnapshot.take(model)
        try:
            call()
            completed = True
        except type(exc):
            completed = False
        assert completed == (calls < n), f"{calls} forward(s), interrupt on #{n}, completed={completed}"
        snap.assert_same(model)
    finally:
        handle.remove()
    return completed


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("exc", [RuntimeError("interrupted"), KeyboardInterrupt()], ids=["error", "keyboard"])
@pytest.mark.parametrize("method", CNN_METHODS)
def test_interrupt_on_a_later_forward_leaves_the_model_untouched(method: str, exc: BaseException, n: int) -> None:
    model = tiny_cnn()
    _prime_grads(model)
    x = torch.randn(2, 1, 12, 12)
    inst, opts = make_method(model, method, **_opts(method))
    inst.attribute(x, target=TARGET, **opts)  # the first call's one-off work (layer, class count) done
    mid = model.features[1]  # a block in the middle of the network
    _interrupt_call(model, mid, lambda: inst.attribute(x, target=TARGET, **opts), n, exc)
    # a fresh instance, whose first call also does its one-off probes
    inst, opts = make_method(model, method, **_opts(method))
    _interrupt_call(model, mid, lambda: inst.attribute(x, target=TARGET, **opts), n, exc)


def test_interrupts_do_hit_multi_pass_methods() -> None:
    """The interrupt test is not vacuous: methods with several forwards are stopped."""
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    ig = cg.IntegratedGradients(model)
    assert not _interrupt_call(
        model, model.features[1], lambda: ig.attribute(x, target=TARGET, n_steps=4, internal_batch_size=2), 3,
        KeyboardInterrupt(),
    )


@pytest.mark.parametrize("exc", [RuntimeError("interrupted"), KeyboardInterrupt()], ids=["error", "keyboard"])
@pytest.mark.parametrize("metric", ["insertion", "infidelity", "max_sensitivity"])
def test_interrupted_metric_leaves_the_model_untouched(metric: str, exc: BaseException) -> None:
    model = tiny_cnn().train()  # metrics switch to eval mode for the call and must switch back
    x = torch.randn(2, 1, 12, 12)
    maps = torch.rand(2, 1, 12, 12)
    calls = {
        "insertion": lambda: M.insertion(model, x, maps, TARGET, step=12, batch_size=3),
        "infidelity": lambda: M.infidelity(model, x, maps, TARGET, n_perturb=4, batch_size=2),
        "max_sensitivity": lambda: M.max_sensitivity(
            cg.Saliency(model, allow_train_mode=True).attribute, x, TARGET, n_samples=3, batch_size=2
        ),
    }
    assert not _interrupt_call(model, model.features[1], calls[metric], 2, exc)


# --- the global RNG when generator= is passed ----------------------------------------------


def _takes_generator(method: str) -> bool:
    """Whether the method accepts ``generator=`` (tried on one tiny image)."""
    inst, opts = make_method(tiny_cnn(), method, **_opts(method))
    try:
        inst.attribute(torch.zeros(1, 1, 12, 12), target=0, generator=torch.Generator().manual_seed(0), **opts)
    except (TypeError, cg.ExplanationError) as e:
        if "generator" in str(e):
            return False
        raise
    return True


RANDOM_METHODS = [m for m in CNN_METHODS if _takes_generator(m)]


def _global_rng() -> tuple:
    import random

    import numpy as np

    return torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()


def _same_rng(a: tuple, b: tuple) -> bool:
    import numpy as np

    return torch.equal(a[0], b[0]) and a[1] == b[1] and np.array_equal(a[2], b[2])


def test_random_methods_are_found() -> None:
    assert {"smoothgrad", "expected_gradients", "smooth_gradcam_pp", "expected_gradcam"} <= set(RANDOM_METHODS)


@pytest.mark.parametrize("method", RANDOM_METHODS)
def test_generator_leaves_the_global_rng_alone(method: str) -> None:
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    inst, opts = make_method(model, method, **_opts(method))
    before = _global_rng()
    a = inst.attribute(x, target=TARGET, generator=torch.Generator().manual_seed(3), **opts)
    assert _same_rng(before, _global_rng()), f"{method} drew from the global RNG although generator= was given"
    b = inst.attribute(x, target=TARGET, generator=torch.Generator().manual_seed(3), **opts)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_metric_generators_leave_the_global_rng_alone() -> None:
    model = tiny_cnn()
    x = torch.randn(2, 1, 12, 12)
    maps = torch.rand(2, 1, 12, 12)
    before = _global_rng()
    M.infidelity(model, x, maps, TARGET, n_perturb=3, generator=torch.Generator().manual_seed(0))
    M.max_sensitivity(cg.Saliency(model).attribute, x, TARGET, n_samples=2, generator=torch.Generator().manual_seed(0))
    M.max_sensitivity(
        lambda xi, t: cg.SmoothGrad(model).attribute(xi, t, n_samples=2, generator=torch.Generator().manual_seed(1)),
        x, TARGET, n_samples=2, generator=torch.Generator().manual_seed(0),
    )
    assert _same_rng(before, _global_rng())


# --- real torchvision architectures, random init, small inputs ------------------------------

tvm = pytest.importorskip("torchvision.models")

ARCHS = ("densenet121", "efficientnet_b0", "mobilenet_v3_small", "convnext_tiny", "regnet_y_400mf")
#: a shallow layer per architecture for the CAMs that run one forward pass per channel
SHALLOW = {
    "densenet121": "features.conv0",
    "efficientnet_b0": "features.0",
    "mobilenet_v3_small": "features.0",
    "convnext_tiny": "features.0",
    "regnet_y_400mf": "stem",
}
PER_CHANNEL_CAMS = ("scorecam", "ablationcam", "sscam", "iscam")
#: methods that must give a map on every architecture (the others may refuse one with a
#: clear ExplanationError, e.g. CAM needs global pooling right before a linear layer)
MUST_WORK = ("saliency", "guided_backprop", "integrated_gradients", "gradcam", "gradcam_pp", "layercam")
ARCH_EXTRA: dict[str, dict] = {
    "integrated_gradients": {"n_steps": 2},
    "smoothgrad": {"n_samples": 2},
    "expected_gradients": {"n_samples": 2, "references": torch.zeros(1, 3, 32, 32)},
    "smooth_gradcam_pp": {"n_samples": 2},
    "integrated_gradcam": {"n_steps": 2},
    "expected_gradcam": {"n_samples": 2, "references": torch.zeros(1, 3, 32, 32)},
    "deeplift_shap": {"baselines": torch.zeros(2, 3, 32, 32)},
    "sscam": {"n_samples": 1},  # N*S*K masked passes: one sample keeps it at Score-CAM's cost
    "iscam": {"n_samples": 1},
}
#: the two slowest architectures (convnext_tiny: 28M parameters) run fewer methods
FEWER = {"convnext_tiny": MUST_WORK, "densenet121": tuple(m for m in CNN_METHODS if m not in PER_CHANNEL_CAMS)}
ARCH_CASES = [(a, m) for a in ARCHS for m in CNN_METHODS if a not in FEWER or m in FEWER[a]]
_BUILT: dict[str, nn.Module] = {}


def _arch(name: str) -> nn.Module:
    """A randomly initialised torchvision model (built once per session, 4 classes)."""
    if name not in _BUILT:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _BUILT[name] = getattr(tvm, name)(num_classes=4).eval()
    return _BUILT[name]


def _arch_opts(arch: str, method: str) -> dict:
    opts = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in ARCH_EXTRA.get(method, {}).items()}
    if method in PER_CHANNEL_CAMS:
        opts["layer"] = SHALLOW[arch]
    return opts


def test_every_method_runs_on_some_real_architecture() -> None:
    assert {m for _, m in ARCH_CASES} == set(CNN_METHODS)


@pytest.mark.parametrize("arch,method", ARCH_CASES)
def test_real_architecture_left_untouched(arch: str, method: str) -> None:
    model = _arch(arch)
    _prime_grads(model)
    x = torch.randn(2, 3, 32, 32)
    snap = ModelSnapshot.take(model)
    inst, opts = make_method(model, method, **_arch_opts(arch, method))
    try:
        out = inst.attribute(x, target=TARGET, **opts)
    except cg.ExplanationError:
        assert method not in MUST_WORK
        snap.assert_same(model)
        return
    assert out.shape[0] == 2 and out.shape[-2:] == (32, 32) and torch.isfinite(out).all()
    snap.assert_same(model)


@pytest.mark.parametrize("arch", ARCHS)
def test_real_architecture_interrupted_and_under_inference_mode(arch: str) -> None:
    """Grad-CAM++ and IG interrupted on the 2nd forward (KeyboardInterrupt / an error), and
    Grad-CAM under an ambient inference_mode equal to outside it."""
    model = _arch(arch)
    x = torch.randn(2, 3, 32, 32)
    mid = next(m for name, m in model.named_modules() if name.count(".") == 1)  # an early block
    cam = cg.GradCAMPlusPlus(model)
    cam.attribute(x, target=TARGET)
    _interrupt_call(model, mid, lambda: cam.attribute(x, target=TARGET), 2, KeyboardInterrupt())
    ig = cg.IntegratedGradients(model)
    assert not _interrupt_call(
        model, mid, lambda: ig.attribute(x, target=TARGET, n_steps=2, internal_batch_size=2), 2, RuntimeError("x")
    )
    ref = cg.GradCAM(model).attribute(x, target=TARGET, relu=False)  # signed: never blank at random init
    snap = ModelSnapshot.take(model)
    with torch.inference_mode():
        out = cg.GradCAM(model).attribute(x.clone(), target=TARGET, relu=False)
    assert float(ref.abs().amax()) > 0
    torch.testing.assert_close(out, ref)
    snap.assert_same(model)


def test_three_threads_on_a_real_architecture() -> None:
    model = _arch("mobilenet_v3_small")
    x = torch.randn(2, 3, 32, 32)
    calls = [
        lambda: cg.GradCAM(model).attribute(x, target=TARGET),
        lambda: cg.IntegratedGradients(model).attribute(x, target=TARGET, n_steps=2),
        lambda: cg.GuidedBackprop(model).attribute(x, target=TARGET),
    ]
    refs = [c() for c in calls]
    snap = ModelSnapshot.take(model)
    results, errors = _in_threads(calls)
    assert not errors, errors
    for ref, outs in zip(refs, results):
        for out in outs:
            torch.testing.assert_close(out, ref)
    snap.assert_same(model)
