"""Batch-norm folding of the metrics' passes on a GPU: the copy lives on the model's device and
computes what the model computes."""

from __future__ import annotations

import torch
from torch import nn

from cleargrad.core import FoldedForward
from cleargrad.models import SmallCNN


def test_folded_copy_on_cuda_equals_the_model():
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=5, width=4)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    model = model.cuda().eval()
    f = FoldedForward(model)
    x = torch.randn(6, 1, 12, 12, device="cuda")
    with torch.inference_mode():
        got, ref = f(x), model(x)
    assert len(f.folded) == 4, f.reason
    assert all(p.device.type == "cuda" for p in f._copy.parameters())
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
