"""InterpretableGradientLoss (spec § 4.1, 4.3, 4.6): lambda = 0 is plain training, no-ReLU
networks have delta = delta', finite-difference check of the regulariser's parameter
gradient, guided gradient = GuidedBackprop, BatchNorm statistics updated once, and one
training step on the reference models and a torchvision model."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import FunctionalReLUNet
from torch import nn

import cleargrad as cg
from cleargrad import ConfigError, InputError
from cleargrad.models import SmallCNN, cifar_mobilenet_v2, cifar_resnet18
from cleargrad.training import ERRORS, InterpretableGradientLoss

NAMES = list(ERRORS)


def _batch(n: int = 4, c: int = 1, hw: int = 8, classes: int = 5, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, hw, hw, generator=g, dtype=dtype), torch.randint(0, classes, (n,), generator=g)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: intra-op threads only add overhead (and contention on shared CI cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class DropoutCNN(nn.Module):
    """Conv, BN, in-place ReLU, Dropout, GAP-linear: BatchNorm and randomness in one net."""

    def __init__(self, act: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(6, 5)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv1(x))
        h = F.relu(h, inplace=True) if self.act else torch.tanh(h)
        h = self.drop(self.conv2(h))
        h = h.relu() if self.act else torch.sigmoid(h)
        return self.fc(h.mean(dim=(2, 3)))


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name", NAMES)
def test_lambda_zero_is_exactly_plain_training(name: str) -> None:
    torch.manual_seed(1)
    a = DropoutCNN().train()
    b = copy.deepcopy(a)
    x, y = _batch()
    torch.manual_seed(7)
    parts = InterpretableGradientLoss(name, lam=0.0)(a, x, y)
    parts.loss.backward()
    rng_a = torch.get_rng_state()
    torch.manual_seed(7)
    ce = F.cross_entropy(b(x), y)
    ce.backward()
    assert torch.equal(parts.loss.detach(), ce.detach())
    assert torch.equal(parts.classification.detach(), ce.detach())
    for ga, gb in zip(_grads(a), _grads(b)):
        assert torch.equal(ga, gb)
    for ba, bb in zip(a.buffers(), b.buffers()):
        assert torch.equal(ba, bb)
    # the guided pass replays the RNG: the global state advances exactly as in a plain step
    assert torch.equal(rng_a, torch.get_rng_state())
    # the regulariser itself was computed (non-trivial), only weighted by 0
    assert parts.regulariser.item() != 0.0


def test_total_is_ce_plus_lambda_times_regulariser() -> None:
    model = SmallCNN(width=4, num_classes=5).train()
    x, y = _batch()
    parts = InterpretableGradientLoss("cosine", lam=0.3)(model, x, y)
    torch.testing.assert_close(parts.loss, parts.classification + 0.3 * parts.regulariser)
    torch.testing.assert_close(parts.classification, F.cross_entropy(parts.logits, y))
    assert parts.regulariser.item() > 1e-3  # ReLU network: delta != delta'


@pytest.mark.parametrize("name", NAMES)
def test_network_without_relu_has_equal_gradients(name: str) -> None:
    # tanh/sigmoid instead of ReLU, plus BatchNorm and Dropout in training mode: the guided
    # pass must see the same batch statistics and the same dropout masks
    model = DropoutCNN(act=False).train()
    x, y = _batch()
    parts = InterpretableGradientLoss(name, lam=1.0)(model, x, y)
    assert torch.equal(parts.gradient, parts.guided_gradient)
    at_min = ERRORS[name](parts.gradient, parts.gradient).mean()
    torch.testing.assert_close(parts.regulariser.detach(), at_min)
    if name in ("mae", "mse"):
        assert parts.regulariser.item() == 0.0
    if name == "cosine":
        assert abs(parts.regulariser.item()) < 1e-6


def test_guided_gradient_differs_from_standard_on_relu_network() -> None:
    model = DropoutCNN().train()
    x, y = _batch()
    parts = InterpretableGradientLoss()(model, x, y)
    assert not torch.allclose(parts.gradient, parts.guided_gradient)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SmallCNN(width=4, num_classes=5),
        lambda: FunctionalReLUNet(num_classes=5),
        lambda: cifar_mobilenet_v2(in_channels=1, num_classes=5, width=0.25),
    ],
    ids=["small_cnn_inplace_relu", "functional_relu", "mobilenet_relu6"],
)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_guided_gradient_equals_guided_backprop(make, mode: str) -> None:
    torch.manual_seed(0)
    model = make()
    model.train(mode == "train")
    x, y = _batch(hw=16)
    torch.manual_seed(11)  # same Dropout masks (MobileNet's classifier) in both calls
    parts = InterpretableGradientLoss("cosine")(model, x, y)
    torch.manual_seed(11)
    # the loss runs the model in the default layout; the public call would feed channels-last
    # inputs (other convolution kernels), and train-mode BatchNorm over 2x2 maps of 4 images
    # magnifies that rounding past the ReLU6 thresholds: compare the same kernels
    old = cg.get_memory_format()
    cg.set_memory_format("contiguous")
    try:
        gb = cg.GuidedBackprop(model, allow_train_mode=True).attribute(x, target=y)
    finally:
        cg.set_memory_format(old)
    torch.testing.assert_close(parts.guided_gradient, gb, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(parts.guided_gradient, parts.gradient)


@pytest.mark.parametrize("score", ["logit", "prob", "log_prob"])
def test_scores(score: str) -> None:
    model = SmallCNN(width=4, num_classes=5).eval()
    x, y = _batch()
    loss = InterpretableGradientLoss(score=score)
    g, logits = loss.standard_gradient(model, x, y, create_graph=False)
    s = {"logit": logits, "prob": logits.softmax(1), "log_prob": logits.log_softmax(1)}[score]
    xi = x.clone().requires_grad_(True)
    out = model(xi)
    out = {"logit": out, "prob": out.softmax(1), "log_prob": out.log_softmax(1)}[score]
    (ref,) = torch.autograd.grad(out.gather(1, y[:, None]).sum(), xi)
    torch.testing.assert_close(g, ref)
    torch.testing.assert_close(loss.target_scores(logits, y), s.gather(1, y[:, None]).squeeze(1))


# --- finite differences (float64) ------------------------------------------------------------


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv1(x)))
        h = F.relu(self.conv2(h))
        return self.fc(h.mean(dim=(2, 3)))


def _numeric_grad(f, params: list[torch.Tensor], h: float = 1e-6, per_tensor: int = 20):
    """Central differences of ``f`` for up to ``per_tensor`` seeded-random entries of each
    parameter: ``[(flat indices, derivatives)]``."""
    g = torch.Generator().manual_seed(0)
    out = []
    with torch.no_grad():
        for p in params:
            flat = p.view(-1)
            idx = torch.randperm(flat.numel(), generator=g)[:per_tensor]
            d = torch.zeros(len(idx), dtype=p.dtype)
            for j, i in enumerate(idx.tolist()):
                old = flat[i].item()
                flat[i] = old + h
                fp = f()
                flat[i] = old - h
                fm = f()
                flat[i] = old
                d[j] = (fp - fm) / (2 * h)
            out.append((idx, d))
    return out


@pytest.mark.parametrize(
    ("name", "detach", "score"),
    [(n, True, "logit") for n in NAMES]
    + [("cosine", False, "logit"), ("mse", False, "logit"), ("cosine", True, "log_prob")],
)
def test_regulariser_parameter_gradient_matches_finite_differences(name: str, detach: bool, score: str) -> None:
    torch.manual_seed(3)
    model = TinyNet().double().train()
    x, y = _batch(n=3, hw=5, classes=3, seed=4, dtype=torch.float64)
    loss = InterpretableGradientLoss(name, lam=1.0, score=score, detach_guided=detach)
    params = list(model.parameters())
    # (the last bias does not change d logit / dx: unused, i.e. a zero gradient)
    analytic = torch.autograd.grad(loss(model, x, y).regulariser, params, allow_unused=True)
    analytic = [torch.zeros_like(p) if a is None else a for a, p in zip(analytic, params)]

    fixed_guided = loss.guided_gradient(model, x, y)

    def f() -> float:
        with torch.enable_grad():
            delta, _ = loss.standard_gradient(model, x, y, create_graph=False)
            guided = fixed_guided if detach else loss.guided_gradient(model, x, y)
            return loss.regulariser(delta, guided).item()

    numeric = _numeric_grad(f, params)
    scale = max(float(a.abs().max()) for a in analytic)
    assert scale > 0  # a non-trivial gradient is checked
    for a, (idx, n) in zip(analytic, numeric):
        torch.testing.assert_close(a.reshape(-1)[idx], n, rtol=1e-4, atol=1e-5 * scale)


def test_detaching_matters() -> None:
    # the two gradient-flow options give different parameter gradients (so the FD test
    # above can tell them apart)
    torch.manual_seed(3)
    model = TinyNet().double().train()
    x, y = _batch(n=3, hw=5, classes=3, seed=4, dtype=torch.float64)
    params = [model.conv1.weight, model.conv2.weight, model.fc.weight]
    g1 = torch.autograd.grad(InterpretableGradientLoss("mse", detach_guided=True)(model, x, y).regulariser, params)
    g2 = torch.autograd.grad(InterpretableGradientLoss("mse", detach_guided=False)(model, x, y).regulariser, params)
    assert any(not torch.allclose(a, b) for a, b in zip(g1, g2))


# --- BatchNorm, models ------------------------------------------------------------------------


def test_batchnorm_running_stats_updated_once() -> None:
    torch.manual_seed(0)
    a = SmallCNN(width=4, num_classes=5).train()
    b = copy.deepcopy(a)
    before = [t.clone() for t in a.buffers()]
    x, y = _batch()
    InterpretableGradientLoss("cosine")(a, x, y).loss.backward()
    F.cross_entropy(b(x), y).backward()
    for (name, ba), bb, old in zip(a.named_buffers(), b.buffers(), before):
        assert torch.equal(ba, bb), name
        if "running_mean" in name or "num_batches_tracked" in name:
            assert not torch.equal(ba, old), name  # the step did update them (once)
    assert all(int(t) == 1 for n, t in a.named_buffers() if n.endswith("num_batches_tracked"))


def test_eval_mode_model_keeps_buffers() -> None:
    model = SmallCNN(width=4, num_classes=5).eval()
    before = [t.clone() for t in model.buffers()]
    InterpretableGradientLoss()(model, *_batch())
    assert all(torch.equal(t, o) for t, o in zip(model.buffers(), before))


def _torchvision_resnet18() -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=5)


@pytest.mark.parametrize(
    ("make", "c", "hw"),
    [
        (lambda: SmallCNN(width=4, num_classes=5), 1, 8),
        (lambda: cifar_resnet18(in_channels=1, num_classes=5, width=0.125), 1, 28),
        (lambda: cifar_mobilenet_v2(in_channels=3, num_classes=5, width=0.25), 3, 16),
        (_torchvision_resnet18, 3, 32),
    ],
    ids=["small_cnn", "cifar_resnet18", "cifar_mobilenet_v2", "torchvision_resnet18"],
)
def test_one_training_step_on_reference_models(make, c: int, hw: int) -> None:
    torch.manual_seed(0)
    model = make().train()
    x, y = _batch(n=2, c=c, hw=hw)
    loss = InterpretableGradientLoss("cosine", lam=7.5e-3)
    parts = loss(model, x, y)
    assert torch.isfinite(parts.loss)
    assert parts.regulariser.item() > 1e-4  # the guided rule caught the model's ReLUs
    # the regulariser trains the weights (double backprop reaches every conv)
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    reg_grads = torch.autograd.grad(parts.regulariser, convs, retain_graph=True, allow_unused=True)
    assert all(g is not None for g in reg_grads)
    assert sum(float(g.abs().sum()) for g in reg_grads) > 0
    parts.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="unknown gradient error"):
        InterpretableGradientLoss("l1")
    with pytest.raises(ConfigError, match="lam"):
        InterpretableGradientLoss(lam=-1.0)
    with pytest.raises(ConfigError, match="score"):
        InterpretableGradientLoss(score="softmax")
    model = SmallCNN(width=4, num_classes=5)
    x, y = _batch()
    with pytest.raises(InputError, match="one entry per image"):
        InterpretableGradientLoss()(model, x, y[:2])
    with pytest.raises(InputError, match="integer"):
        InterpretableGradientLoss()(model, x, y.float())


def test_exported_from_package() -> None:
    assert cg.InterpretableGradientLoss is InterpretableGradientLoss
    assert "lam=0.0075" in repr(InterpretableGradientLoss())


def _two_pass_parts(loss_fn: InterpretableGradientLoss, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The step as the spec describes it: a separate guided forward/backward pass (running
    statistics frozen, RNG replayed), then the standard pass with double backprop."""
    guided = loss_fn.guided_gradient(model, x, y, create_graph=not loss_fn.detach_guided)
    if loss_fn.detach_guided:
        guided = guided.detach()
    gradient, logits = loss_fn.standard_gradient(model, x, y, create_graph=True)
    ce = F.cross_entropy(logits, y)
    reg = loss_fn.regulariser(gradient, guided)
    return ce + loss_fn.lam * reg, reg, guided


# float64 shows the formulas agree (the one-forward step also uses a different BatchNorm
# double backward, see cleargrad.training.batchnorm); float32 shows they agree to float32
# rounding, measured against the model's largest gradient entry
TOLERANCES = {torch.float64: (1e-7, 1e-10), torch.float32: (1e-4, 1e-5)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize(
    ("make", "c", "hw"),
    [
        (lambda: DropoutCNN(), 1, 8),
        (lambda: cifar_resnet18(in_channels=1, num_classes=5, width=0.125), 1, 12),
        (lambda: cifar_mobilenet_v2(in_channels=3, num_classes=5, width=0.25), 3, 12),
    ],
    ids=["bn_dropout_inplace", "cifar_resnet18", "cifar_mobilenet_v2_relu6"],
)
def test_one_forward_step_equals_the_two_pass_step(make, c: int, hw: int, detach: bool, dtype) -> None:
    """The shared-forward loss equals the two-pass computation: loss, guided gradient,
    parameter gradients, BatchNorm buffers and the RNG state afterwards."""
    rtol, atol = TOLERANCES[dtype]
    torch.manual_seed(0)
    model = make().train().to(dtype)
    twin = copy.deepcopy(model)
    x, y = _batch(n=6, c=c, hw=hw, dtype=dtype)
    loss_fn = InterpretableGradientLoss("cosine", lam=0.5, detach_guided=detach)

    torch.manual_seed(1)
    parts = loss_fn(model, x, y)
    parts.loss.backward()
    rng_after = torch.get_rng_state()

    torch.manual_seed(1)
    ref_loss, ref_reg, ref_guided = _two_pass_parts(loss_fn, twin, x, y)
    ref_loss.backward()

    assert parts.regulariser.item() > 1e-4  # the guided rule did change the gradient
    torch.testing.assert_close(parts.guided_gradient, ref_guided.detach(), rtol=rtol / 10, atol=atol / 10)
    torch.testing.assert_close(parts.loss, ref_loss, rtol=rtol / 10, atol=atol / 10)
    torch.testing.assert_close(parts.regulariser, ref_reg, rtol=rtol / 10, atol=atol / 10)
    # (scale: the largest gradient entry of the model; a bias before a BatchNorm has a zero
    # gradient up to rounding, so a per-tensor scale would compare rounding noise)
    scale = max(float(q.grad.abs().max()) for q in twin.parameters())
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=rtol, atol=atol * scale, msg=name)
    for (name, b), b2 in zip(model.named_buffers(), twin.buffers()):
        torch.testing.assert_close(b, b2, msg=name)
    assert torch.equal(rng_after, torch.get_rng_state())


def test_rule_switch_gives_guided_and_plain_gradients_from_one_forward() -> None:
    from cleargrad.core.relu_rules import relu_rule_switch

    torch.manual_seed(0)
    model = FunctionalReLUNet().eval()
    x = torch.randn(3, 1, 8, 8, requires_grad=True)
    with relu_rule_switch() as switch:
        score = model(x)[:, 1].sum()
    switch.rule = "guided"
    (guided,) = torch.autograd.grad(score, x, retain_graph=True)
    switch.rule = None
    (plain,) = torch.autograd.grad(score, x, retain_graph=True)
    switch.rule = "deconv"
    (deconv,) = torch.autograd.grad(score, x)
    x0 = x.detach()
    torch.testing.assert_close(guided, cg.GuidedBackprop(model).attribute(x0, target=1))
    torch.testing.assert_close(plain, cg.Saliency(model).attribute(x0, target=1, abs=False))
    torch.testing.assert_close(deconv, cg.Deconvolution(model).attribute(x0, target=1))
    assert not torch.allclose(guided, plain)
