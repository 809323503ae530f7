"""Cost of one interpretable-gradient training step, and where it goes.

Times, interleaved on one batch (no data loading), on the CIFAR-style ResNet-18
(1 input channel, width ``--width``) at batch ``--batch`` on 28x28 inputs:

- a cross-entropy step (forward, backward, SGD step): the unit;
- the interpretable-gradient step as it is now (one forward shared by the guided and the
  standard gradient, see ``InterpretableGradientLoss.__call__``, recorded with the lean
  BatchNorm and convolution kernels of ``cleargrad.training.double_backward``);
- the same one-forward step with PyTorch's own kernels (before);
- the two-pass step the spec describes (a separate guided forward/backward pass first),
  which is what the loss ran before;
- the phases of the step: forward; guided input gradient; standard input gradient with
  ``create_graph``; the second-order backward (``loss.backward()``).

    python benchmarks/training_step.py                  # resnet18 width 0.25, batch 128
    python benchmarks/training_step.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved  # noqa: E402

import cleargrad.training.loss as loss_module  # noqa: E402
from cleargrad.core.relu_rules import relu_rule_switch  # noqa: E402
from cleargrad.data import load_fashion_mnist  # noqa: E402
from cleargrad.models import cifar_resnet18  # noqa: E402
from cleargrad.training import ClassificationLoss, InterpretableGradientLoss  # noqa: E402
from cleargrad.training.double_backward import BackwardPhase, double_backward_kernels  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.repeats, args.width = 16, 2, 0.125
    torch.set_num_threads(args.threads)
    data = load_fashion_mnist("train", normalize=True, limit=args.batch)
    x, y = data.images, data.labels
    torch.manual_seed(0)
    model = cifar_resnet18(in_channels=1, num_classes=10, width=args.width).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    ce, ig = ClassificationLoss(), InterpretableGradientLoss("cosine", lam=7.5e-3)

    def step(loss_of) -> None:
        opt.zero_grad(set_to_none=True)
        loss_of().backward()
        opt.step()

    def native_bn_step() -> None:
        loss_module.double_backward_kernels = lambda: nullcontext(BackwardPhase())
        try:
            step(lambda: ig(model, x, y).loss)
        finally:
            loss_module.double_backward_kernels = double_backward_kernels

    def two_pass():
        guided = ig.guided_gradient(model, x, y).detach()
        gradient, logits = ig.standard_gradient(model, x, y, create_graph=True)
        return F.cross_entropy(logits, y) + ig.lam * ig.regulariser(gradient, guided)

    # phases of the shared-forward step, each timed on its own (the earlier phases are rerun untimed)
    state: dict = {}

    def forward() -> None:
        state["x"] = xi = x.detach().requires_grad_(True)
        with relu_rule_switch() as sw, double_backward_kernels() as phase:
            state["logits"] = model(xi)
        state["sw"], state["score"], state["phase"] = sw, ig.target_scores(state["logits"], y).sum(), phase
        phase.input_only = True

    def guided_grad() -> None:
        state["sw"].rule = "guided"
        (state["guided"],) = torch.autograd.grad(state["score"], state["x"], retain_graph=True)
        state["sw"].rule = None

    def standard_grad() -> None:
        (state["grad"],) = torch.autograd.grad(state["score"], state["x"], create_graph=True)

    def second_order() -> None:
        state["phase"].input_only = False
        loss = F.cross_entropy(state["logits"], y) + ig.lam * ig.regulariser(state["grad"], state["guided"])
        opt.zero_grad(set_to_none=True)
        loss.backward()

    def phase(upto: int):
        chain = [forward, guided_grad, standard_grad, second_order]

        def run() -> None:
            for f in chain[:upto]:
                f()

        return run

    runs = {
        "cross-entropy step": lambda: step(lambda: ce(model, x, y).loss),
        "interpretable step (one forward, lean double-backward kernels)": lambda: step(
            lambda: ig(model, x, y).loss),
        "interpretable step (one forward, PyTorch's kernels: before)": native_bn_step,
        "interpretable step (two passes, PyTorch's kernels: the spec's step)": lambda: step(two_pass),
        "phase: forward": phase(1),
        "phases: + guided gradient": phase(2),
        "phases: + standard gradient (create_graph)": phase(3),
        "phases: + second-order backward": phase(4),
    }
    t0 = time.perf_counter()
    stats = interleaved(runs, repeats=args.repeats)
    unit = stats["cross-entropy step"].median
    lines = [
        f"### Training step cost: CIFAR ResNet-18 width {args.width:g}, batch {args.batch}, 28x28, "
        f"{args.threads} threads, interleaved medians of {args.repeats}\n",
        "| what | ms | × cross-entropy step |",
        "|---|---|---|",
    ]
    for k, s in stats.items():
        lines.append(f"| {k} | {1e3 * s.median:.1f} (IQR {1e3 * s.iqr:.1f}) | {s.median / unit:.2f} |")
    lines.append(f"\n({time.perf_counter() - t0:.0f} s in all)")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
