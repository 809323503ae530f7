"""Does ``torch.compile`` pay for the explanations' passes, as it does for the metrics'?

    python benchmarks/compile_passes.py

The protocol of ``benchmarks/evaluate_pipeline.py`` (Fashion-MNIST reference SmallCNN,
width 16, one thread) spends its explanation time in Integrated Gradients and Expected
Grad-CAM (gradient passes) and Score-CAM (masked forward passes). This times one pass of
each kind, eager and through ``torch.compile(dynamic=True)`` (inductor, as ``--compile``),
at the chunk sizes the protocol runs (64, and 37 for a last, shorter chunk), in the default
layout and channels-last (what cleargrad feeds a CPU model): the median of 20 repetitions
after two warm-up calls, and the compile time of the first call. Gradient passes are timed
two ways: autograd through the compiled module, and the whole gradient compiled as one
function with ``torch.func.grad``.
"""

from __future__ import annotations

import statistics
import time

import torch

from cleargrad.models import SmallCNN
from cleargrad.runtime.layout import channels_last


def forward(f, x):
    with torch.inference_mode():
        return f(x)


def gradient(f, x):
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(f(x)[:, 0].sum(), x)
    return g


def median_time(fn, f, x, reps: int = 20) -> float:
    fn(f, x)
    fn(f, x)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(f, x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def func_gradient(f, x):
    """The gradient as one compiled function (``torch.func.grad``), not autograd through a compiled module."""
    return f(x)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=10, width=16).eval()
    for p in model.parameters():  # as cleargrad's explanations run it
        p.requires_grad_(False)
    compiled = torch.compile(model, dynamic=True)
    whole = torch.compile(torch.func.grad(lambda x: model(x)[:, 0].sum()), dynamic=True)
    print("| layout | pass | chunk | eager (ms) | compiled (ms) | compiled / eager |")
    print("|---|---|---:|---:|---:|---:|")
    for layout, conv in (("default", lambda t: t), ("channels-last", channels_last)):
        x = conv(torch.randn(64, 1, 28, 28))
        for name, fn, f in (("forward", forward, compiled), ("gradient", gradient, compiled),
                            ("gradient, torch.func.grad compiled", func_gradient, whole)):
            t = time.perf_counter()
            fn(f, x)
            print(f"first compiled call ({layout}, {name}): {time.perf_counter() - t:.1f} s", flush=True)
            for b in (64, 37):
                xb = conv(torch.randn(b, 1, 28, 28))
                e, c = median_time(gradient if fn is func_gradient else fn, model, xb), median_time(fn, f, xb)
                print(f"| {layout} | {name} | {b} | {e * 1e3:.1f} | {c * 1e3:.1f} | {c / e:.2f} |", flush=True)


if __name__ == "__main__":
    main()
