"""The memory check on a GPU: the device's own free memory, predictions on CUDA tensors, and a
chunk far beyond the device stopped before it is allocated."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cleargrad as cg
from cleargrad.runtime import memplan


def test_cuda_availability_is_within_the_device():
    free, total = torch.cuda.mem_get_info()
    avail = memplan.available_bytes("cuda")
    assert avail is not None and free <= avail <= total


def test_predictions_on_cuda_equal_the_hand_computed_bytes():
    model = nn.Linear(100, 50).cuda()
    assert memplan.pass_bytes_per_sample(model, (100,), torch.float32, "cuda", grad=False) == 600
    assert memplan.pass_bytes_per_sample(model, (100,), torch.float32, "cuda", grad=True) == 1000


def test_a_chunk_beyond_the_gpu_fails_before_it_is_allocated():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(64, 10)).cuda().eval()
    x = torch.randn(2, 3, 224, 224, device="cuda")
    before = torch.cuda.max_memory_allocated()
    # 2 images x 4096 steps in one chunk: 8192 inputs x some 40 MB of activations and gradients each
    with pytest.raises(cg.ResourceError, match="set internal_batch_size to at most"):
        cg.IntegratedGradients(model).attribute(x, target=0, n_steps=4096, internal_batch_size=8192)
    assert torch.cuda.max_memory_allocated() - before < 2**30  # nothing of the chunk was allocated
    # the default chunk fits by construction and runs
    out = cg.IntegratedGradients(model).attribute(x, target=0, n_steps=8)
    assert out.shape == x.shape and torch.isfinite(out).all()
