"""The closed-form BatchNorm double backward (cleargrad.training.batchnorm) equals autograd's.

Checked in float64 against PyTorch's own double backward, for every output of the first
backward (dx, dγ, dβ), for BatchNorm1d/2d/3d, with and without running statistics; plus the
running statistics, the cases routed around it, and the one-value-per-channel error.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cleargrad.training.batchnorm import BatchNormTrain
from cleargrad.training.double_backward import double_backward_kernels


def _bn_net(kind: str, track: bool) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if kind == "2d":
        net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4, track_running_stats=track), nn.ReLU(),
                            nn.Conv2d(4, 3, 3), nn.BatchNorm2d(3, track_running_stats=track), nn.Tanh(),
                            nn.Flatten(), nn.Linear(3 * 6 * 6, 3))
        x = torch.randn(5, 2, 8, 8)
    elif kind == "1d_ncl":
        net = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4, track_running_stats=track), nn.Tanh(),
                            nn.Flatten(), nn.Linear(4 * 6, 3))
        x = torch.randn(5, 2, 8)
    elif kind == "1d_nc":
        net = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4, track_running_stats=track), nn.Tanh(), nn.Linear(4, 3))
        x = torch.randn(7, 6)
    else:  # 3d
        net = nn.Sequential(nn.Conv3d(1, 3, 2), nn.BatchNorm3d(3, track_running_stats=track), nn.Tanh(),
                            nn.Flatten(), nn.Linear(3 * 27, 3))
        x = torch.randn(4, 1, 4, 4, 4)
    with torch.no_grad():  # non-trivial affine parameters
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net.double().train(), x.double()


def _second_order(kind: str, track: bool, fast: bool, through_params: bool):
    """Gradient of a loss on the first-order gradients (dx, and dγ/dβ when asked) with
    respect to every parameter, plus the buffers afterwards."""
    net, x = _bn_net(kind, track)
    xi = x.clone().requires_grad_(True)
    if fast:
        with double_backward_kernels():
            out = net(xi)
    else:
        out = net(xi)
    score = (out[:, 0] ** 2).sum() + out[:, 1].sum()
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    wrt = [xi] + ([p for m in bns for p in (m.weight, m.bias)] if through_params else [])
    grads = torch.autograd.grad(score, wrt, create_graph=True)
    gen = torch.Generator().manual_seed(1)
    loss = sum((g * torch.randn(g.shape, generator=gen, dtype=g.dtype)).sum() + (g**2).sum() for g in grads)
    loss.backward()
    return [p.grad.clone() for p in net.parameters()], [b.clone() for b in net.buffers()]


@pytest.mark.parametrize("kind", ["2d", "1d_ncl", "1d_nc", "3d"])
@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("through_params", [False, True], ids=["loss_on_dx", "loss_on_dx_dgamma_dbeta"])
def test_double_backward_equals_autograds(kind: str, track: bool, through_params: bool) -> None:
    ref, ref_buffers = _second_order(kind, track, fast=False, through_params=through_params)
    got, buffers = _second_order(kind, track, fast=True, through_params=through_params)
    scale = max(float(g.abs().max()) for g in ref)
    assert scale > 1e-3
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12 * scale)
    for a, b in zip(buffers, ref_buffers):
        assert torch.equal(a, b)


def test_first_order_values_and_running_stats_are_native() -> None:
    net, x = _bn_net("2d", True)
    twin, _ = _bn_net("2d", True)
    with double_backward_kernels():
        out = net(x)
    ref = twin(x)
    assert torch.equal(out, ref)
    for a, b in zip(net.buffers(), twin.buffers()):
        assert torch.equal(a, b)


def test_routes_only_training_mode_affine_batchnorm() -> None:
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    seen = []

    def record(_m, _i, out):
        seen.append(type(out.grad_fn).__name__)

    cases = [nn.BatchNorm2d(3).train(), nn.BatchNorm2d(3).eval(), nn.BatchNorm2d(3, affine=False).train(),
             nn.BatchNorm2d(3, track_running_stats=False).eval()]
    for bn in cases:
        bn.register_forward_hook(record)
        with double_backward_kernels():
            bn(x)
    fast = BatchNormTrain.__name__ + "Backward"
    # batch statistics with affine weights: routed (also in eval mode without running stats)
    assert seen[0] == fast and seen[3] == fast
    # running statistics, or no affine weights: PyTorch's own function
    assert seen[1] != fast and seen[2] != fast


def test_one_value_per_channel_is_refused_as_by_torch() -> None:
    bn = nn.BatchNorm1d(3).train()
    x = torch.randn(1, 3, requires_grad=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(x)
    with pytest.raises(ValueError, match="more than 1 value per channel"), double_backward_kernels():
        bn(x)


# --- 2-D convolutions (cleargrad.training.conv) ---------------------------------------------


@pytest.mark.parametrize(
    "conv",
    [dict(stride=1, padding=1), dict(stride=2, padding=1), dict(stride=1, padding=2, dilation=2),
     dict(stride=2, padding=0, groups=2), dict(stride=1, padding=1, groups=4, bias=False),
     dict(stride=1, padding="same"), dict(stride=(2, 1), padding=(0, 1), padding_mode="reflect")],
    ids=["plain", "stride2", "dilated", "grouped", "depthwise_nobias", "same", "reflect_asym"],
)
def test_conv_input_gradient_double_backward_equals_autograds(conv: dict) -> None:
    """Loss on dL/dx of a conv net, then every parameter gradient: equal to PyTorch's own."""

    def run(fast: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(4, 4, 3, **conv), nn.Tanh(), nn.Conv2d(4, 2, 2), nn.Flatten(), nn.LazyLinear(3))
        x = torch.randn(3, 4, 9, 9).requires_grad_(True)
        net(x)  # materialise the lazy layer
        net = net.double()
        xi = x.detach().double().requires_grad_(True)
        if fast:
            with double_backward_kernels() as phase:
                out = net(xi)
            phase.input_only = True
        else:
            out = net(xi)
        (g,) = torch.autograd.grad((out[:, 0] ** 2).sum() + out[:, 1].sum(), xi, create_graph=True)
        if fast:
            phase.input_only = False
        gen = torch.Generator().manual_seed(1)
        ((g * torch.randn(g.shape, generator=gen, dtype=g.dtype)).sum() + (out**2).sum()).backward()
        return [p.grad.clone() for p in net.parameters()]

    ref, got = run(False), run(True)
    scale = max(float(g.abs().max()) for g in ref)
    assert scale > 1e-3
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12 * scale)


def test_input_only_phase_skips_parameter_gradients_and_clearing_it_restores_them() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 2)).train()
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    with double_backward_kernels() as phase:
        out = net(x)
    phase.input_only = True
    conv_w, bn_w = net[0].weight, net[1].weight
    g_conv, g_bn = torch.autograd.grad(out.sum(), [conv_w, bn_w], retain_graph=True, allow_unused=True)
    assert g_conv is None and g_bn is None  # not computed, as documented
    phase.input_only = False
    out.sum().backward()
    twin = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 2)).train()
    twin.load_state_dict(net.state_dict())
    # (the twin's BatchNorm running statistics advanced once less; the output uses batch statistics)
    twin(x).sum().backward()
    for p, q in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


# --- the loss that records with these kernels leaves the model as it found it ----------------


def _resnet() -> nn.Module:
    from cleargrad.models import cifar_resnet18

    torch.manual_seed(0)
    return cifar_resnet18(in_channels=1, num_classes=5, width=0.125)


def test_loss_leaves_an_eval_mode_model_untouched() -> None:
    from helpers import ModelSnapshot

    from cleargrad.training import InterpretableGradientLoss

    model = _resnet().eval()
    snap = ModelSnapshot.take(model)
    x, y = torch.randn(3, 1, 12, 12), torch.tensor([0, 1, 2])
    InterpretableGradientLoss("cosine", lam=0.5)(model, x, y)
    snap.assert_same(model)  # state too: eval-mode BatchNorm keeps its statistics


def test_loss_interrupted_mid_forward_leaves_no_mode_and_no_routing() -> None:
    from helpers import ModelSnapshot

    from cleargrad.training import InterpretableGradientLoss

    model = _resnet().train()
    snap = ModelSnapshot.take(model)

    def boom(*_):
        raise KeyboardInterrupt

    handle = model.layer2.register_forward_hook(boom)
    x, y = torch.randn(3, 1, 12, 12), torch.tensor([0, 1, 2])
    with pytest.raises(KeyboardInterrupt):
        InterpretableGradientLoss("cosine", lam=0.5)(model, x, y)
    handle.remove()
    # (the running statistics of the layers before the interrupt advanced, as in any
    # interrupted training forward; everything else is as it was)
    snap.state = {k: v for k, v in model.state_dict().items()}
    snap.assert_same(model)
    out = nn.BatchNorm2d(3).train()(torch.randn(4, 3, 5, 5, requires_grad=True))
    assert type(out.grad_fn).__name__ != BatchNormTrain.__name__ + "Backward"
