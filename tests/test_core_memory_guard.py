"""A chunk that cannot be allocated is a clear ResourceError naming the setting, not a bare allocator error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cleargrad as cg
from cleargrad.metrics import SharedBatch


class Hungry(nn.Module):
    """Fails like the allocator once a forward pass holds more than ``limit`` images."""

    def __init__(self, limit: int, error: type[BaseException] = RuntimeError) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
        self.limit, self.error = limit, error

    def forward(self, x):
        if x.shape[0] > self.limit:
            msg = "[enforce fail at alloc_cpu.cpp:118] . DefaultCPUAllocator: can't allocate memory: you tried to " \
                  "allocate 123456789 bytes. Error code 12 (Cannot allocate memory)"
            raise self.error(msg)
        return self.inner(x)


@pytest.mark.parametrize("error", [RuntimeError, torch.OutOfMemoryError])
def test_a_chunk_that_does_not_fit_names_batch_size(error):
    torch.manual_seed(0)
    model = Hungry(limit=4, error=error).eval()
    x = torch.randn(3, 1, 8, 8)
    sal = torch.rand(3, 1, 8, 8)
    with pytest.raises(cg.ResourceError, match=r"chunk of \d+ inputs of shape 1x8x8 .* smaller batch_size"):
        cg.metrics.insertion(model, x, sal, target=0, step=8)  # 27 curve images in one default chunk
    assert model.training is False and not model._forward_hooks
    # the advice works: chunks of 4 fit
    out = cg.metrics.insertion(model, x, sal, target=0, step=8, batch_size=4)
    assert out.shape == (3,) and torch.isfinite(out).all()
    shared = SharedBatch(model, x, batch_size=4)
    got = shared.score("insertion", {"m": sal}, shared.targets(0), {"step": 8})["m"]
    torch.testing.assert_close(got, out)


def test_other_runtime_errors_pass_through():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="mat1 and mat2") as info:
        cg.metrics.average_drop(Broken(), torch.randn(2, 1, 4, 4), torch.rand(2, 1, 4, 4), target=0)
    assert not isinstance(info.value, cg.ResourceError)
