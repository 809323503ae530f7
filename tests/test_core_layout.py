"""Channels-last model inputs (cleargrad.runtime.layout): used where allowed, same results,
safe fallback for models whose forward needs a contiguous tensor."""

from __future__ import annotations

import pytest
import torch
from helpers import ModelSnapshot
from torch import nn

import cleargrad as cg
from cleargrad.errors import ConfigError
from cleargrad.runtime import layout


class GapNet(nn.Module):
    """Conv-BN-ReLU blocks, global pooling, linear head: takes any input layout."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class ViewNet(GapNet):
    """Flattens the spatial map with ``.view``, which fails on a channels-last tensor."""

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.head = nn.Linear(8 * size * size, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.head(f.view(f.shape[0], -1))


class LayoutSpy:
    """Forward pre-hook on the first convolution recording whether its input was channels-last."""

    def __init__(self, model: nn.Module) -> None:
        self.seen: list[bool] = []
        self.handle = model.features[0].register_forward_pre_hook(self)

    def __call__(self, _m: nn.Module, args: tuple) -> None:
        x = args[0]
        self.seen.append(not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last))


@pytest.fixture
def mode():
    """Restore the process-wide mode after the test."""
    old = cg.get_memory_format()
    yield cg.set_memory_format
    cg.set_memory_format(old)


def _run(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {
        "saliency": cg.Saliency(model).attribute(x, target=t),
        "ig": cg.IntegratedGradients(model).attribute(x, target=t, n_steps=8),
        "gradcam": cg.GradCAM(model, layer="features.3").attribute(x, target=t),
        "scorecam": cg.ScoreCAM(model, layer="features.3").attribute(x, target=t),
        "ablationcam": cg.AblationCAM(model, layer="features.3").attribute(x, target=t),
    }
    saliency = out["saliency"].abs().amax(dim=1, keepdim=True)
    out["deletion"] = cg.metrics.deletion(model, x, saliency, t, step=8)
    return out


@pytest.mark.parametrize("net", [GapNet, ViewNet])
def test_results_equal_in_both_layouts(net: type[nn.Module], mode) -> None:
    model = net().eval()
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([0, 2, 4])
    mode("contiguous")
    ref = _run(model, x, t)
    mode("auto")
    snap = ModelSnapshot.take(model)
    got = _run(model, x, t)
    snap.assert_same(model)
    for k in ref:
        assert got[k].is_contiguous(), k
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-5, msg=k)


def test_auto_feeds_channels_last_on_cpu_and_contiguous_mode_does_not(mode) -> None:
    model = GapNet().eval()
    spy = LayoutSpy(model)
    x = torch.randn(2, 3, 8, 8)
    mode("auto")
    cg.Saliency(model).attribute(x, target=0)
    cg.GradCAM(model, layer="features.3").attribute(x, target=0)
    cg.metrics.deletion(model, x, torch.rand(2, 1, 8, 8), 0, step=16)
    assert spy.seen and all(spy.seen)
    spy.seen.clear()
    mode("contiguous")
    cg.Saliency(model).attribute(x, target=0)
    cg.metrics.deletion(model, x, torch.rand(2, 1, 8, 8), 0, step=16)
    assert spy.seen and not any(spy.seen)
    spy.handle.remove()


def test_model_that_needs_contiguous_input_falls_back_once_and_is_remembered(mode) -> None:
    mode("auto")
    model = ViewNet().eval()
    spy = LayoutSpy(model)
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(RuntimeError, match="view size"):  # the failure the fallback catches
        model(x.contiguous(memory_format=torch.channels_last))
    spy.seen.clear()
    cg.GradCAM(model, layer="features.3").attribute(x, target=1)
    assert spy.seen == [True, False]  # tried channels-last once, then as given
    assert model in layout._incompatible
    spy.seen.clear()
    cg.Saliency(model).attribute(x, target=1)
    cg.metrics.deletion(model, x, torch.rand(2, 1, 8, 8), 1, step=16)
    assert spy.seen and not any(spy.seen)
    spy.handle.remove()


def test_metric_passes_fall_back_per_chunk(mode) -> None:
    """Hook-free metric passes retry the chunk itself (run_model) and remember the model."""
    model = ViewNet().eval()
    x, s = torch.randn(2, 3, 8, 8), torch.rand(2, 1, 8, 8)
    mode("contiguous")
    ref = cg.metrics.insertion(model, x, s, 3, step=16, substrate="zero")
    mode("auto")
    got = cg.metrics.insertion(model, x, s, 3, step=16, substrate="zero")
    assert model in layout._incompatible
    torch.testing.assert_close(got, ref)


def test_other_errors_are_not_retried(mode) -> None:
    mode("auto")
    calls = []

    class Broken(GapNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            raise RuntimeError("something else went wrong")

    model = Broken().eval()
    with pytest.raises(RuntimeError, match="something else"):
        cg.Saliency(model).attribute(torch.randn(1, 3, 8, 8), target=0)
    assert len(calls) == 1
    assert model not in layout._incompatible


def test_stride_errors_are_retried_only_after_a_conversion(mode) -> None:
    calls = []

    class StrideError(GapNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.is_contiguous())
            raise RuntimeError("a stride error that has nothing to do with us")

    model = StrideError().eval()
    mode("contiguous")
    with pytest.raises(RuntimeError, match="stride"):
        cg.Saliency(model).attribute(torch.randn(1, 3, 8, 8), target=0)
    assert calls == [True]
    calls.clear()
    mode("auto")
    with pytest.raises(RuntimeError, match="stride"):
        cg.Saliency(model).attribute(torch.randn(1, 3, 8, 8), target=0)
    assert calls == [False, True]  # channels-last, then once more as given; then the error is the model's


def test_set_memory_format_validates() -> None:
    with pytest.raises(ConfigError, match="channels_last"):
        cg.set_memory_format("nhwc")
    assert cg.get_memory_format() in layout.MEMORY_FORMATS


def test_model_input_only_inside_public_calls(mode) -> None:
    mode("channels_last")
    model = GapNet()
    x = torch.randn(1, 3, 4, 4)
    assert layout.model_input(model, x) is x  # outside a call: untouched
    with layout.fast_layout():
        assert layout.model_input(model, x).is_contiguous(memory_format=torch.channels_last)
        assert layout.model_input(model, torch.randn(2, 3)).is_contiguous()  # not 4-D


class OneChannelNet(nn.Module):
    """A 1-channel conv net with max-pooling, like the Fashion-MNIST reference CNN."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def test_one_channel_inputs_get_strides_that_convolutions_read_as_channels_last() -> None:
    x = torch.randn(3, 1, 5, 7)
    assert x.contiguous(memory_format=torch.channels_last).stride() == x.stride()  # the no-op this fixes
    y = layout.channels_last(x)
    assert y.stride() == (35, 1, 7, 1)
    assert torch.equal(y, x)
    conv = nn.Conv2d(1, 4, 3, padding=1)
    out = conv(y)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert not conv(x).is_contiguous(memory_format=torch.channels_last)
    assert layout.channels_last(y) is y  # already so: no copy
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((layout.channels_last(xg) * torch.arange(105.0).view(3, 1, 5, 7)).sum(), xg)
    assert torch.equal(g, torch.arange(105.0).view(3, 1, 5, 7))  # differentiable, gradient in place
    rgb = torch.randn(2, 3, 4, 4)
    assert layout.channels_last(rgb).stride() == (48, 1, 12, 3)


def test_one_channel_model_runs_channels_last_inside_a_call_with_the_same_results(mode) -> None:
    model = OneChannelNet().eval()
    seen: list[bool] = []
    handle = model.features[3].register_forward_pre_hook(  # the max-pool's input
        lambda _m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last) and not a[0].is_contiguous())
    )
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 2, 1])
    mode("contiguous")
    ref = {
        "saliency": cg.Saliency(model).attribute(x, target=t),
        "scorecam": cg.ScoreCAM(model, layer="features.5").attribute(x, target=t),
        "deletion": cg.metrics.deletion(model, x, torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                                        t, step=8),
    }
    assert seen and not any(seen)
    seen.clear()
    mode("auto")
    snap = ModelSnapshot.take(model)
    got = {
        "saliency": cg.Saliency(model).attribute(x, target=t),
        "scorecam": cg.ScoreCAM(model, layer="features.5").attribute(x, target=t),
        "deletion": cg.metrics.deletion(model, x, torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                                        t, step=8),
    }
    snap.assert_same(model)
    handle.remove()
    assert seen and all(seen)
    for k in ref:
        assert got[k].is_contiguous(), k
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-5, msg=k)
