"""Speed of DeepLIFT, DeepLiftShap, GradientSHAP and LRP against Captum / Zennit, in one run.

    python benchmarks/attribution_lrp_deeplift.py              # resnet18 b2 224x224, SmallCNN b16 28x28
    python benchmarks/attribution_lrp_deeplift.py --quick      # tiny sizes, end-to-end check

The block of ``benchmarks/attribution.py`` for these methods, kept in its own script:
same models (random init, random BatchNorm statistics, eval mode), same input, same
targets and threads for both libraries; each pair timed interleaved (ours, peer, ours,
peer, ...) after a warm-up, median of ``--repeats``. ``passes`` counts forward+backward
passes of the batch (DeepLIFT: inputs and baselines in one batch of 2N rows = 2 passes;
DeepLiftShap with R baselines: 2R; GradientSHAP with s samples: s; LRP: 1 forward and a
rule backward); ``bound`` = passes x one forward+backward of the batch ("unit").

Captum's DeepLift refuses torchvision's resnet18 (it reuses one ``nn.ReLU`` module per
block, which Captum's hooks cannot tell apart), so those rows compare against nothing.
On SmallCNN (ReLU followed by MaxPool) Captum's DeepLift misses summation-to-delta (see
tests/test_attribution_deeplift.py), so "max rel diff" is shown but is not expected to
be small there; GradientSHAP draws differ between the libraries ("-").
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import fmt_s, interleaved, markdown_table  # noqa: E402
from attribution import input_gradient, randomise_bn, rel_diff  # noqa: E402

import cleargrad as cg  # noqa: E402
from cleargrad.models import SmallCNN  # noqa: E402

COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1")


def configs(quick: bool) -> list[tuple[str, torch.nn.Module, torch.Tensor, str]]:
    torch.manual_seed(0)
    resnet = randomise_bn(torchvision.models.resnet18(weights=None))
    small = randomise_bn(SmallCNN())
    if quick:
        return [("resnet18 b1 64x64 (quick)", resnet, torch.randn(1, 3, 64, 64), "resnet"),
                ("SmallCNN b4 28x28 (quick)", small, torch.randn(4, 1, 28, 28), "small")]
    return [("resnet18 b2 224x224", resnet, torch.randn(2, 3, 224, 224), "resnet"),
            ("SmallCNN b16 28x28", small, torch.randn(16, 1, 28, 28), "small")]


def pairs(model, x, target, kind, n_refs, samples):  # noqa: ANN001
    """(name, passes, ours, peer name, peer call or None, comparable)."""
    import captum.attr as ca
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer

    tl = target.tolist()
    gen = torch.Generator().manual_seed(1)
    base = 0.1 * torch.randn(x.shape, generator=gen)
    refs = torch.randn(n_refs, *x.shape[1:], generator=gen)
    onehot = F.one_hot(target, model(x[:1]).shape[1]).to(x.dtype)
    low, high = float(x.min()), float(x.max())
    zmodel = copy.deepcopy(model)  # Zennit 1.0's BatchNorm merge leaves new bias parameters behind

    def zennit(comp_cls):  # noqa: ANN001, ANN202
        def run() -> torch.Tensor:
            can = [ResNetCanonizer()] if kind == "resnet" else [SequentialMergeBatchNorm()]
            kw = {"low": low, "high": high} if comp_cls is EpsilonGammaBox else {}
            with Gradient(zmodel, comp_cls(canonizers=can, **kw)) as attributor:
                return attributor(x, lambda out: out * onehot)[1]
        return run

    cap_dl = None if kind == "resnet" else (lambda: ca.DeepLift(model).attribute(x, base, target=tl))
    cap_dls = None if kind == "resnet" else (lambda: ca.DeepLiftShap(model).attribute(x, refs, target=tl))
    rows = [
        ("DeepLIFT", 2, lambda: cg.DeepLift(model).attribute(x, target=tl, baselines=base), "captum DeepLift",
         cap_dl, True),
        (f"DeepLiftShap {n_refs} baselines", 2 * n_refs,
         lambda: cg.DeepLiftShap(model).attribute(x, target=tl, baselines=refs), "captum DeepLiftShap", cap_dls, True),
        (f"GradientSHAP {samples}", samples,
         lambda: cg.explain(model, x, method="gradient_shap", target=tl, references=refs, n_samples=samples,
                            stdevs=0.1, generator=torch.Generator().manual_seed(0)),
         "captum GradientShap",
         lambda: ca.GradientShap(model).attribute(x, baselines=refs, target=tl, n_samples=samples, stdevs=0.1), False),
    ]
    for name, cls in zip(COMPOSITES, (EpsilonPlusFlat, EpsilonGammaBox, EpsilonAlpha2Beta1)):
        rows.append((f"LRP {name}", 1,
                     lambda name=name: cg.LRP(model).attribute(x, target=tl, composite=name, low=low, high=high),
                     "zennit", zennit(cls), True))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--config", default=None, help="only the configurations whose name contains this text")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from importlib.metadata import version

    import captum

    t0 = time.perf_counter()
    print(f"# DeepLIFT / LRP: cleargrad vs Captum {captum.__version__} and Zennit {version('zennit')}\n")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, repeats {args.repeats}, CPU\n")
    for name, model, x, kind in configs(args.quick):
        if args.config is not None and args.config not in name:
            continue
        with torch.no_grad():
            target = model(x).argmax(1)
        unit_run = {"u": lambda m=model, xx=x, tt=target: input_gradient(m, xx, tt)}
        unit = interleaved(unit_run, repeats=args.repeats)["u"].median
        rows = []
        for mname, passes, ours, peer_name, peer, comparable in pairs(model, x, target, kind, 4, 8):
            runs: dict[str, Callable[[], object]] = {"ours": ours}
            if peer is not None:
                runs["peer"] = peer
            st = interleaved(runs, repeats=args.repeats, warmup=1)
            t_o = st["ours"].median
            bound = passes * unit
            if peer is None:
                rows.append([mname, f"{peer_name} (refuses this model)", fmt_s(t_o), "-", "-", passes,
                             f"{t_o / bound:.2f}", "-", "-"])
                continue
            t_p = st["peer"].median
            diff = rel_diff(ours(), peer()) if comparable else "-"
            rows.append([mname, peer_name, fmt_s(t_o), fmt_s(t_p), f"{t_o / t_p:.2f}", passes, f"{t_o / bound:.2f}",
                         f"{t_p / bound:.2f}", diff])
        print(f"## {name}\n\nunit (one forward+backward of the batch) = {fmt_s(unit)}\n")
        print(markdown_table(["method", "vs", "ours", "peer", "ours/peer", "passes", "ours/bound", "peer/bound",
                              "max rel diff"], rows) + "\n")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
