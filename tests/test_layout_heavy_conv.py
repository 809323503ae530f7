"""The heavy-convolution rule of the ``"auto"`` layout (cleargrad.runtime.layout.heavy_conv):
hand-computed cases of the rule, its effect inside a public call (a wide 3x3 convolution on a
small map gets a contiguous input, a light one stays channels-last), the same values as the
other layouts and on every run, and no dispatch mode left behind, also on error."""

from __future__ import annotations

import pytest
import torch
from helpers import ModelSnapshot
from torch import nn

import cleargrad as cg
from cleargrad.runtime import layout

CL = torch.channels_last


def cl(*shape: int) -> torch.Tensor:
    return torch.randn(*shape).contiguous(memory_format=CL)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs", "expected"),
    [
        ((2, 256, 4, 4), (256, 256, 3, 3), {"padding": 1}, True),  # 32 pixels < 12 * 256
        ((2, 256, 4, 4), (256, 256, 1, 1), {}, False),  # 1x1: channels-last is not slower
        ((2, 64, 4, 4), (64, 64, 3, 3), {"padding": 1}, False),  # too few channels
        ((2, 256, 4, 4), (256, 1, 3, 3), {"padding": 1, "groups": 256}, False),  # depthwise
        # the threshold, 12 * 128 = 1536 output pixels: 6 * 16 * 16 = 1536 is not below it
        ((6, 128, 16, 16), (128, 128, 3, 3), {"padding": 1}, False),
        ((6, 128, 16, 16), (128, 128, 3, 3), {"padding": 0}, True),  # 6 * 14 * 14 = 1176
        ((6, 128, 32, 32), (128, 128, 3, 3), {"padding": 1, "stride": 2}, False),  # 6 * 16 * 16
        ((6, 128, 31, 31), (128, 128, 3, 3), {"padding": 1, "stride": 2}, False),  # 6 * 16 * 16
        ((6, 128, 29, 29), (128, 128, 3, 3), {"padding": 1, "stride": 2}, True),  # 6 * 15 * 15
        ((1, 128, 40, 10), (128, 128, 3, 3), {"padding": "same"}, True),  # 400 < 1536
        ((1, 128, 40, 40), (128, 128, 3, 3), {"padding": "valid", "dilation": 2}, True),  # 36 * 36 = 1296
        ((1, 128, 44, 44), (128, 128, 3, 3), {"padding": "valid", "dilation": 2}, False),  # 40 * 40 = 1600
    ],
)
def test_heavy_conv_rule_by_hand(x_shape, w_shape, kwargs, expected) -> None:
    x, w = cl(*x_shape), torch.randn(*w_shape)
    assert layout.heavy_conv(x, w, **kwargs) is expected


def test_heavy_conv_needs_a_channels_last_cpu_input() -> None:
    w = torch.randn(256, 256, 3, 3)
    assert layout.heavy_conv(cl(2, 256, 4, 4), w, padding=1)
    assert not layout.heavy_conv(torch.randn(2, 256, 4, 4), w, padding=1)  # already contiguous
    assert not layout.heavy_conv(cl(2, 256, 4, 4)[:, :, :, :1], w)  # neither layout: left alone
    assert not layout.heavy_conv(cl(2, 256, 4, 4), torch.randn(256, 256, 3))  # not a 2-D kernel


class DeepNet(nn.Module):
    """A light stage (16 channels, full resolution) and a heavy one (128 channels, 3x3,
    4x4 map): the first stays channels-last in ``auto``, the second runs contiguous."""

    def __init__(self) -> None:
        super().__init__()
        self.light = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 128, 1), nn.ReLU())
        self.heavy = nn.Sequential(nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1))
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Linear(128, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.heavy(self.pool(self.light(x)))
        return self.head(f.mean(dim=(2, 3)))


def output_layouts(model: DeepNet) -> tuple[dict[str, list[str]], list]:
    seen: dict[str, list[str]] = {"light": [], "heavy": []}

    def spy(name):
        def hook(_m, _args, out):
            cl_ = out.is_contiguous(memory_format=CL)
            seen[name].append("contiguous" if out.is_contiguous() else "channels_last" if cl_ else "?")
        return hook

    handles = [model.light[2].register_forward_hook(spy("light")), model.heavy[0].register_forward_hook(spy("heavy"))]
    return seen, handles


@pytest.fixture
def mode():
    old = cg.get_memory_format()
    yield cg.set_memory_format
    cg.set_memory_format(old)


@pytest.mark.parametrize(("fmt", "light", "heavy"), [
    ("auto", "channels_last", "contiguous"),
    ("channels_last", "channels_last", "channels_last"),
    ("contiguous", "contiguous", "contiguous"),
])
def test_auto_runs_heavy_convolutions_contiguous_inside_a_call(mode, fmt, light, heavy) -> None:
    torch.manual_seed(0)
    model = DeepNet().eval()
    x = torch.randn(2, 3, 16, 16)
    mode(fmt)
    seen, handles = output_layouts(model)
    try:
        cg.GradCAM(model, layer="heavy").attribute(x, target=1)
    finally:
        for h in handles:
            h.remove()
    assert seen["light"] and set(seen["light"]) == {light}
    assert seen["heavy"] and set(seen["heavy"]) == {heavy}


def test_auto_values_equal_the_other_layouts_and_repeat_exactly(mode) -> None:
    torch.manual_seed(0)
    model = DeepNet().double().eval()
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    maps = {}
    for fmt in ("auto", "contiguous", "channels_last"):
        mode(fmt)
        maps[fmt] = [cg.GradCAM(model, layer="light").attribute(x, target=2) for _ in range(2)]
        maps[fmt + " ig"] = cg.IntegratedGradients(model).attribute(x, target=2, n_steps=8)
    assert torch.equal(maps["auto"][0], maps["auto"][1])  # shapes decide, not timing: every run the same
    torch.testing.assert_close(maps["auto"][0], maps["contiguous"][0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(maps["auto"][0], maps["channels_last"][0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(maps["auto ig"], maps["contiguous ig"], rtol=1e-10, atol=1e-12)
    assert maps["auto"][0].is_contiguous()


def test_the_rule_is_entered_only_for_models_with_heavy_kernels_and_left_on_error(mode) -> None:
    mode("auto")
    small = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 4)).eval()
    assert not layout._has_heavy_convs(small)
    assert layout._has_heavy_convs(DeepNet())
    depth = torch._C._len_torch_function_stack()
    with layout.fast_layout(small) as scope:
        assert not scope.rule and torch._C._len_torch_function_stack() == depth
    with layout.fast_layout(DeepNet().to("meta")) as scope:  # not on the CPU: inputs as given, no rule
        assert not scope.rule and torch._C._len_torch_function_stack() == depth
    mode("channels_last")
    with layout.fast_layout(DeepNet()) as scope:
        assert not scope.rule
    mode("auto")
    with layout.fast_layout(DeepNet()) as scope:
        assert scope.rule and torch._C._len_torch_function_stack() == depth + 1
        with layout.fast_layout(DeepNet()) as inner:  # nested calls share the outer rule
            assert inner.rule and torch._C._len_torch_function_stack() == depth + 1
    assert torch._C._len_torch_function_stack() == depth

    class Failing(DeepNet):
        def forward(self, x):
            super().forward(x)
            raise ValueError("boom")

    model = Failing().eval()
    snap = ModelSnapshot.take(model)
    with pytest.raises(ValueError, match="boom"):
        cg.GradCAM(model, layer="heavy").attribute(torch.randn(1, 3, 16, 16), target=0)
    assert torch._C._len_torch_function_stack() == depth
    snap.assert_same(model)
