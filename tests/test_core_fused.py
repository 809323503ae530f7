"""Batch-norm folding of the metrics' passes (cleargrad.core.FoldedForward): folded weights
equal the hand-computed ones, outputs equal the model's to float rounding, the model is
left as it was, and every case where folding would be wrong runs the model unfolded."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from helpers import ModelSnapshot, small_cnn_with_statistics
from torch import nn

from cleargrad.core import FoldedForward, folded_forward
from cleargrad.models import SmallCNN


def _bn(c: int, mean: float, var: float, gamma: float, beta: float) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.fill_(mean)
        bn.running_var.fill_(var)
        bn.weight.fill_(gamma)
        bn.bias.fill_(beta)
    return bn.eval()


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(2.0)
        self.bn = _bn(1, mean=1.0, var=3.0, gamma=0.5, beta=0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).flatten(1)


def test_folded_weights_and_output_equal_the_hand_computed_ones() -> None:
    model = ConvBN().eval()
    f = FoldedForward(model)
    x = torch.full((1, 1, 2, 2), 4.0)
    with torch.inference_mode():
        y = f(x)
    assert f.folded == [("conv", "bn")]
    s = 0.5 / math.sqrt(3.0 + 1e-5)  # gamma / sqrt(var + eps)
    conv = f._copy.conv
    torch.testing.assert_close(conv.weight.flatten(), torch.tensor([2.0 * s]))
    torch.testing.assert_close(conv.bias, torch.tensor([0.25 - 1.0 * s]))  # beta - mean * s
    assert isinstance(f._copy.bn, nn.Identity)
    torch.testing.assert_close(y, torch.full((1, 4), (2.0 * 4.0 - 1.0) * s + 0.25))
    assert isinstance(model.bn, nn.BatchNorm2d) and model.conv.bias is None  # the model itself unchanged


def test_small_cnn_folds_every_block_equal_to_rounding_and_leaves_the_model_untouched() -> None:
    model = small_cnn_with_statistics()
    snap = ModelSnapshot.take(model)
    f = folded_forward(model)
    x = torch.randn(6, 1, 12, 12)
    with torch.inference_mode():
        got = f(x)
    assert [b for _, b in f.folded] == [f"features.{i}.1" for i in range(4)]
    snap.assert_same(model)
    with torch.inference_mode():
        ref = model(x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    copy_params = {p.data_ptr() for p in f._copy.parameters()}
    assert not copy_params & {p.data_ptr() for p in model.parameters()}
    assert not any(p.requires_grad for p in f._copy.parameters())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in f._copy.modules())


def test_training_mode_runs_the_model_itself() -> None:
    model = SmallCNN(in_channels=1, num_classes=3, width=2).train()
    f = FoldedForward(model)
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    f(torch.randn(2, 1, 8, 8))
    handle.remove()
    assert calls == [1] and f._copy is None and not f.folded
    assert folded_forward(model, False) is model


class Residual(nn.Module):
    """The convolution's output is used twice: by the norm and by the sum; folding would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.bn = _bn(2, mean=0.3, var=2.0, gamma=1.5, beta=-0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class Shared(nn.Module):
    """One convolution called twice, each time before another norm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.bn1 = _bn(2, mean=0.1, var=1.5, gamma=1.2, beta=0.0)
        self.bn2 = _bn(2, mean=-0.4, var=0.7, gamma=0.8, beta=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv(self.bn1(self.conv(x))))


class Branchy(ConvBN):
    """Data-dependent Python control flow and a side effect: the model's own forward code runs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        y = self.bn(self.conv(x))
        return (y * 2 if float(y.sum()) > 0 else y - 1).flatten(1)


def test_unsafe_or_pointless_folds_run_unfolded() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 2, 5, 5)
    res = FoldedForward(Residual().eval())
    with torch.inference_mode():
        torch.testing.assert_close(res(x), res.model(x))
    assert res._copy is None and "differed" in res.reason
    shared = FoldedForward(Shared().eval())
    with torch.inference_mode():
        torch.testing.assert_close(shared(x), shared.model(x))
    assert shared._copy is None and "no batch norm applied straight" in shared.reason
    plain = FoldedForward(nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU()).eval())
    plain(x)
    assert plain._copy is None and "no batch norm" in plain.reason


def test_model_code_with_control_flow_runs_in_the_copy() -> None:
    model = Branchy().eval()
    f = FoldedForward(model)
    for x in (torch.full((1, 1, 2, 2), 4.0), torch.full((1, 1, 2, 2), -4.0)):
        with torch.inference_mode():
            torch.testing.assert_close(f(x), model(x))
    assert f.folded == [("conv", "bn")]
    assert model.calls == 2  # the model's own two reference calls above; the copy counts its own


def test_first_calls_from_several_threads_make_one_copy() -> None:
    torch.manual_seed(1)
    model = SmallCNN(in_channels=1, num_classes=4, width=2).eval()
    f = FoldedForward(model)
    x = torch.randn(4, 1, 8, 8)
    outs: list[torch.Tensor] = []
    copies: list[object] = []

    def work() -> None:
        with torch.inference_mode():
            outs.append(f(x))
        copies.append(f._copy)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outs) == 4 and len({id(c) for c in copies}) == 1 and copies[0] is not None
    for o in outs[1:]:
        assert torch.equal(o, outs[0])


class ViewHead(nn.Module):
    """Flattens a feature map with ``.view``: fails on channels-last inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = _bn(3, mean=0.2, var=1.3, gamma=0.9, beta=0.1)
        self.head = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.bn(self.conv(x))
        return self.head(f.view(f.shape[0], -1))


def test_model_that_needs_contiguous_inputs_still_folds_and_the_layout_fallback_still_works() -> None:
    import cleargrad as cg
    from cleargrad.runtime import layout

    model = ViewHead().eval()
    f = FoldedForward(model)
    x = torch.randn(3, 2, 4, 4)
    old = cg.get_memory_format()
    cg.set_memory_format("auto")
    try:
        with layout.fast_layout(), torch.inference_mode():
            got = layout.run_model(f, x)  # channels-last first: fails in the copy, retried as given
    finally:
        cg.set_memory_format(old)
    assert f.folded == [("conv", "bn")] and f in layout._incompatible
    with torch.inference_mode():
        torch.testing.assert_close(got, model(x), rtol=1e-5, atol=1e-6)


class Failing(ConvBN):
    """A forward that raises after its norm: the probe fails, the model's own error surfaces."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.bn(self.conv(x))
        raise RuntimeError("forward exploded")


def test_a_failing_forward_leaves_the_model_as_found_and_raises_its_own_error() -> None:
    model = Failing().eval()
    snap = ModelSnapshot.take(model)
    f = FoldedForward(model)
    with pytest.raises(RuntimeError, match="forward exploded"), torch.inference_mode():
        f(torch.randn(1, 1, 2, 2))
    snap.assert_same(model)
    assert f._copy is None and "forward exploded" in f.reason


def test_a_model_with_hooks_runs_as_it_is_and_its_hooks_count() -> None:
    """A hook is part of what the model computes: here a pre-hook that doubles the input and a
    forward hook that shifts the output. A hook-free folded copy would silently drop both."""
    model = small_cnn_with_statistics()
    x = torch.randn(3, 1, 12, 12)
    with torch.inference_mode():
        plain = model(x)
    seen = []
    pre = model.features[0].register_forward_pre_hook(lambda _m, a: (seen.append("pre"), (2 * a[0],))[1])
    post = model.register_forward_hook(lambda _m, _a, out: out + 1.0)
    snap = ModelSnapshot.take(model)
    f = FoldedForward(model)
    with torch.inference_mode():
        got = [f(x), f(x)]
    snap.assert_same(model)
    assert seen == ["pre", "pre"]  # each call fired it once; no probe or copy did
    assert f._copy is None and not f.folded and "hooks" in f.reason
    pre.remove()
    post.remove()
    with torch.inference_mode():
        ref = model(2 * x) + 1.0
    for y in got:
        torch.testing.assert_close(y, ref)
    assert not torch.allclose(got[0], plain + 1.0)  # the pre-hook mattered
