"""Speed of the pixel attribution methods against Captum, in one run, and an IG Pareto table.

    python benchmarks/attribution.py            # resnet18 (weights=None) batch 4 at 224x224, SmallCNN batch 64
    python benchmarks/attribution.py --quick    # tiny sizes, checks the script end to end
    python benchmarks/attribution.py --perturbation  # Occlusion ... KernelSHAP, RISE, Guided Grad-CAM

For each configuration (model, batch):

1. **unit** = one input-gradient forward+backward of the batch (what Saliency needs), in
   the faster of the default and the channels-last input layout; every time is also
   given in units.
2. **per-sample cost** of a forward+backward at several batch sizes; the best one gives
   the **lower bound** of a method = its number of passes x batch x best per-sample cost
   (Saliency-like: 1 pass; IG with m steps: m passes; SmoothGrad / Expected Gradients with
   s samples: s passes).
3. each method, ours vs Captum's, timed interleaved (A B / B A ...) after a warm-up,
   median of ``--repeats``: Saliency, InputXGradient, GuidedBackprop, Deconvolution,
   IG 50 steps (ours with the default chunking; Captum with internal_batch_size=16 and
   all in one batch), SmoothGrad 16 samples (NoiseTunnel), Expected Gradients /
   GradientShap 16 samples. The "max rel diff" column checks that both computed the
   same thing (stochastic methods: not comparable, shown as "-").
4. IG Pareto table: completeness error (mean over the batch of |delta| / |f(x) - f(x')|)
   vs time, for every quadrature rule and several step counts, ours and Captum's, and the
   number of passes each rule needs to reach 1 % completeness error.

Ratios: ours/captum (< 1: we are faster) and ours/bound (1 = as fast as the bound).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from cleargrad.runtime.layout import channels_last as to_channels_last

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import fmt_s, interleaved, markdown_table  # noqa: E402

import cleargrad as cg  # noqa: E402
from cleargrad.core import default_chunk_size  # noqa: E402
from cleargrad.models import SmallCNN  # noqa: E402

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


@dataclass
class Config:
    name: str
    model: nn.Module
    x: torch.Tensor
    batch_sizes: tuple[int, ...]  # for the per-sample cost
    ig_steps: int
    samples: int  # SmoothGrad / EG draws
    pareto_steps: tuple[int, ...]


def randomise_bn(model: nn.Module) -> nn.Module:
    """Random BatchNorm statistics and affine terms (eval mode).

    With torchvision's default init, eval-mode BatchNorm is the identity and resnet18 /
    SmallCNN have no other biases before the head, so the network is positively
    homogeneous and the IG integrand along a path from 0 is constant: every quadrature
    rule would look exact. Random BatchNorm terms make the Pareto table meaningful (the
    timings are unaffected).
    """
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                k = m.num_features
                m.running_mean.copy_(torch.rand(k, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(k, generator=g) + 0.5)
                m.weight.copy_(torch.rand(k, generator=g) + 0.5)
                m.bias.copy_(torch.rand(k, generator=g) * 0.4 - 0.2)
    return model.eval()


def configs(quick: bool) -> list[Config]:
    torch.manual_seed(0)
    resnet = randomise_bn(torchvision.models.resnet18(weights=None))
    small = randomise_bn(SmallCNN())
    if quick:
        return [
            Config("resnet18 b2 32x32 (quick)", resnet, torch.randn(2, 3, 32, 32), (1, 2, 4), 6, 3, (2, 4, 8)),
            Config("SmallCNN b8 28x28 (quick)", small, torch.randn(8, 1, 28, 28), (8, 32), 6, 3, (2, 4, 8)),
        ]
    return [
        Config("resnet18 b4 224x224", resnet, torch.randn(4, 3, 224, 224), (1, 2, 4, 8, 16, 32), 50, 16,
               (4, 8, 16, 32, 64)),
        Config("SmallCNN b64 28x28", small, torch.randn(64, 1, 28, 28), (16, 64, 256, 1024, 4096), 50, 16,
               (4, 8, 16, 32, 64, 128)),
    ]


def input_gradient(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, channels_last: bool = False
) -> torch.Tensor:
    """One plain forward+backward to the input (the unit of cost), the input in the
    default or the channels-last memory layout."""
    xi = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = model(to_channels_last(xi) if channels_last else xi)  # one channel too (see runtime.layout)
        return torch.autograd.grad(y.gather(1, target.view(-1, 1)).sum(), xi)[0]


def per_sample_costs(cfg: Config, repeats: int) -> dict[int, float]:
    """Median seconds per sample of a forward+backward at each batch size, in the faster
    of the two input layouts (cleargrad feeds CPU models channels-last inputs, so the
    bound must allow that too)."""
    out = {}
    for b in cfg.batch_sizes:
        xb = torch.randn(b, *cfg.x.shape[1:])
        tb = torch.zeros(b, dtype=torch.long)
        st = interleaved({f"fb{cl}": lambda xb=xb, tb=tb, cl=cl: input_gradient(cfg.model, xb, tb, cl)
                          for cl in (False, True)}, repeats=max(3, repeats // 2))
        out[b] = min(v.median for v in st.values()) / b
    return out


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> str:
    return f"{((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item():.1e}"


def method_pairs(cfg: Config, target: torch.Tensor) -> list[tuple[str, int, Callable, dict[str, Callable], bool]]:
    """(name, passes, ours, {captum variant: call}, deterministic)."""
    import captum.attr as ca

    m, x, s, steps = cfg.model, cfg.x, cfg.samples, cfg.ig_steps
    refs = torch.randn(8, *x.shape[1:], generator=torch.Generator().manual_seed(1))
    std = 0.15 * float(x.max() - x.min())
    tl = target.tolist()
    gen = torch.Generator()
    return [
        ("Saliency", 1, lambda: cg.Saliency(m).attribute(x, target=tl),
         {"captum": lambda: ca.Saliency(m).attribute(x, target=tl)}, True),
        ("InputXGradient", 1, lambda: cg.InputXGradient(m).attribute(x, target=tl),
         {"captum": lambda: ca.InputXGradient(m).attribute(x, target=tl)}, True),
        ("GuidedBackprop", 1, lambda: cg.GuidedBackprop(m).attribute(x, target=tl),
         {"captum": lambda: ca.GuidedBackprop(m).attribute(x, target=tl)}, True),
        ("Deconvolution", 1, lambda: cg.Deconvolution(m).attribute(x, target=tl),
         {"captum": lambda: ca.Deconvolution(m).attribute(x, target=tl)}, True),
        (f"IG {steps} steps", steps, lambda: cg.IntegratedGradients(m).attribute(x, target=tl, n_steps=steps),
         {"captum ibs=16": lambda: ca.IntegratedGradients(m).attribute(x, target=tl, n_steps=steps,
                                                                        internal_batch_size=16),
          "captum all-in-one": lambda: ca.IntegratedGradients(m).attribute(x, target=tl, n_steps=steps)}, True),
        (f"SmoothGrad {s}", s,
         lambda: cg.NoiseTunnel(cg.Saliency(m)).attribute(x, target=tl, n_samples=s, stdevs=std,
                                                          generator=gen.manual_seed(0)),
         {"captum": lambda: ca.NoiseTunnel(ca.Saliency(m)).attribute(x, target=tl, nt_type="smoothgrad",
                                                                     nt_samples=s, stdevs=std)}, False),
        (f"ExpectedGradients {s}", s,
         lambda: cg.ExpectedGradients(m).attribute(x, target=tl, references=refs, n_samples=s,
                                                   generator=gen.manual_seed(0)),
         {"captum GradientShap": lambda: ca.GradientShap(m).attribute(x, baselines=refs, target=tl, n_samples=s,
                                                                      stdevs=0.0)}, False),
    ]


def bench_methods(cfg: Config, target: torch.Tensor, unit: float, best: float, repeats: int) -> str:
    rows = []
    n = cfg.x.shape[0]
    for name, passes, ours, refs, deterministic in method_pairs(cfg, target):
        runs = {"ours": ours, **refs}
        stats = interleaved(runs, repeats=repeats, warmup=1)
        bound = passes * n * best
        a = ours()
        for ref_name, ref in refs.items():
            b = ref()
            t_o, t_r = stats["ours"].median, stats[ref_name].median
            rows.append([
                name, ref_name, fmt_s(t_o), fmt_s(t_r), f"{t_o / t_r:.2f}", f"{t_o / unit:.1f}", f"{t_r / unit:.1f}",
                fmt_s(bound), f"{t_o / bound:.2f}", f"{t_r / bound:.2f}",
                rel_diff(a, b) if deterministic else "-",
            ])
    headers = ["method", "vs", "ours", "ref", "ours/ref", "ours units", "ref units", "bound", "ours/bound",
               "ref/bound", "max rel diff"]
    return markdown_table(headers, rows)


def completeness_error(delta: torch.Tensor, gap: torch.Tensor) -> float:
    return float((delta.abs() / gap.abs()).mean())


def bench_pareto(cfg: Config, repeats: int, unit: float) -> tuple[str, str]:
    import captum.attr as ca

    m, x = cfg.model, cfg.x
    base = torch.zeros_like(x)
    with torch.no_grad():
        gaps_all = m(x) - m(base)
    target = gaps_all.abs().argmax(1)  # the class whose score moves most: a well-posed relative error
    gap = gaps_all.gather(1, target.view(-1, 1)).squeeze(1)
    tl = target.tolist()
    rows, first = [], {}
    for rule in RULES:
        for steps in cfg.pareto_steps:
            if rule == "riemann_trapezoid" and steps < 2:
                continue
            res: dict[str, torch.Tensor] = {}

            def ours(rule: str = rule, steps: int = steps, res: dict = res) -> None:
                res["ours"] = cg.IntegratedGradients(m).attribute(
                    x, target=tl, baselines=base, n_steps=steps, method=rule, return_convergence_delta=True
                )[1]

            def captum(rule: str = rule, steps: int = steps, res: dict = res) -> None:
                res["captum"] = ca.IntegratedGradients(m).attribute(
                    x, baselines=base, target=tl, n_steps=steps, method=rule, internal_batch_size=16,
                    return_convergence_delta=True,
                )[1]

            st = interleaved({"ours": ours, "captum": captum}, repeats=repeats, warmup=0)
            for lib in ("ours", "captum"):
                err = completeness_error(res[lib], gap)
                t = st[lib].median
                rows.append([rule, lib, steps, f"{err:.2e}", fmt_s(t), f"{t / unit:.1f}"])
                if err <= 1e-2 and (rule, lib) not in first:
                    first[(rule, lib)] = steps
    pareto = markdown_table(["rule", "lib", "n_steps", "completeness error", "time", "units"], rows)
    need = []
    for rule in RULES:
        need.append([rule] + [str(first.get((rule, lib), f"> {cfg.pareto_steps[-1]}")) for lib in ("ours", "captum")])
    return pareto, markdown_table(["rule", "passes for 1 % error: ours", "captum"], need)


# ---------------------------------------------------------------------------------------
# Perturbation methods, the random control and Guided Grad-CAM vs Captum (issue 28).
# Self-contained: ``python benchmarks/attribution.py --perturbation [--quick]``.
# Bound of a forward-only method = its perturbed copies (per image x images; the clean
# pass not counted) x the best per-copy cost of one inference-mode forward pass, over the
# batch sizes PERT_BATCHES (capped at the copies) and both input layouts; Guided
# Grad-CAM's = two forward+backward passes of the batch.
PERT_BATCHES = (4, 16, 64)


def _per_copy(model: nn.Module, shape: tuple[int, ...], copies: int, repeats: int) -> float:
    best = float("inf")
    for b in sorted({min(b, copies) for b in PERT_BATCHES}):
        xb = torch.randn(b, *shape)
        runs = {}
        for cl in (False, True):
            xin = to_channels_last(xb) if cl else xb

            def run(xin: torch.Tensor = xin) -> None:
                with torch.inference_mode():
                    model(xin)

            runs[f"f{cl}"] = run
        st = interleaved(runs, repeats=max(2, repeats))
        best = min(best, min(v.median for v in st.values()) / b)
    return best


def perturbation_pairs(model: nn.Module, x: torch.Tensor, tl: list[int], cells: int, n_samples: int,
                       layer: str) -> list[tuple[str, int, Callable, dict[str, Callable], bool]]:
    """(name, perturbed copies per image, ours, {captum variant: call}, same samples)."""
    import captum.attr as ca
    from captum._utils.models.linear_model import SkLearnLinearRegression

    from cleargrad.attribution import grid_mask

    c, h, w = x.shape[1:]
    win = (c, h // cells, w // cells)
    mask = grid_mask(x.shape, cells)
    nf = cells * cells
    ppe = nf  # Captum batches as many perturbations as features per forward (its default is 1)
    perms = torch.stack([torch.randperm(nf, generator=torch.Generator().manual_seed(i)) for i in range(2)])
    samples = torch.cat([torch.ones(1, nf), torch.zeros(1, nf),
                         (torch.rand(n_samples - 2, nf, generator=torch.Generator().manual_seed(0)) < 0.5)]).long()

    def fixed(_inputs, **_kw):
        for z in samples:
            yield z.view(1, -1)

    def svs():
        ref = ca.ShapleyValueSampling(model)
        ref.permutation_generator = lambda nf_, ns_: iter(perms.tolist())
        return ref

    def kshap():
        ref = ca.KernelShap(model)
        ref.perturb_func = fixed
        return ref

    gcam = model.get_submodule(layer)
    return [
        (f"Occlusion {nf} windows", nf,
         lambda: cg.Occlusion(model).attribute(x, tl, sliding_window_shapes=win, strides=win),
         {"captum ppe=1": lambda: ca.Occlusion(model).attribute(x, sliding_window_shapes=win, strides=win, target=tl),
          f"captum ppe={ppe}": lambda: ca.Occlusion(model).attribute(
              x, sliding_window_shapes=win, strides=win, target=tl, perturbations_per_eval=ppe)}, True),
        (f"FeatureAblation {nf}", nf, lambda: cg.FeatureAblation(model).attribute(x, tl, feature_mask=mask),
         {f"captum ppe={ppe}": lambda: ca.FeatureAblation(model).attribute(
             x, feature_mask=mask, target=tl, perturbations_per_eval=ppe)}, True),
        (f"ShapleyValueSampling {nf}x2", 2 * nf,
         lambda: cg.ShapleyValueSampling(model).attribute(x, tl, feature_mask=mask, permutations=perms),
         {f"captum ppe={ppe}": lambda: svs().attribute(x, feature_mask=mask, target=tl, n_samples=2,
                                                       perturbations_per_eval=ppe)}, True),
        (f"Lime {n_samples} (linear)", n_samples,
         lambda: cg.Lime(model).attribute(x, tl, feature_mask=mask, samples=samples, interpretable_model="linear"),
         {f"captum ppe={ppe}": lambda: ca.Lime(model, interpretable_model=SkLearnLinearRegression(),
                                               perturb_func=fixed).attribute(
             x, target=tl, feature_mask=mask, n_samples=n_samples, perturbations_per_eval=ppe)}, True),
        (f"KernelShap {n_samples}", n_samples - 2,
         lambda: cg.KernelShap(model).attribute(x, tl, feature_mask=mask, samples=samples),
         {f"captum ppe={ppe}": lambda: kshap().attribute(x, target=tl, feature_mask=mask, n_samples=n_samples,
                                                         perturbations_per_eval=ppe)}, True),
        (f"RISE {n_samples} masks", n_samples,
         lambda: cg.RISE(model).attribute(x, tl, n_masks=n_samples, generator=torch.Generator().manual_seed(0)),
         {}, False),
        ("GuidedGradCAM", 0, lambda: cg.GuidedGradCAM(model, layer).attribute(x, tl),
         {"captum": lambda: ca.GuidedGradCam(model, gcam).attribute(x, tl)}, True),
    ]


def bench_perturbation(quick: bool, repeats: int) -> None:
    torch.manual_seed(0)
    resnet = randomise_bn(torchvision.models.resnet18(weights=None))
    small = randomise_bn(SmallCNN())
    cases = [
        ("resnet18 b1 224x224", resnet, torch.randn(1, 3, 224, 224), 4, 32, "layer4"),
        ("SmallCNN b16 28x28", small, torch.randn(16, 1, 28, 28), 4, 32, "features"),
    ]
    if quick:
        cases = [("resnet18 b1 64x64 (quick)", resnet, torch.randn(1, 3, 64, 64), 2, 8, "layer4"),
                 ("SmallCNN b4 28x28 (quick)", small, torch.randn(4, 1, 28, 28), 2, 8, "features")]
    for name, model, x, cells, n_samples, layer in cases:
        with torch.no_grad():
            tl = model(x).argmax(1).tolist()
        n = x.shape[0]
        units = interleaved({"u": lambda m=model, xx=x, t=tl: input_gradient(m, xx, torch.tensor(t))}, repeats=repeats)
        unit = units["u"].median
        print(f"## {name}\n\none forward+backward of the batch {fmt_s(unit)}\n")
        rows = []
        for label, copies, ours, refs, same in perturbation_pairs(model, x, tl, cells, n_samples, layer):
            stats = interleaved({"ours": ours, **refs}, repeats=repeats, warmup=1)
            bound = copies * n * _per_copy(model, tuple(x.shape[1:]), copies * n, repeats) if copies else 2 * unit
            a = ours()
            t_o = stats["ours"].median
            if not refs:
                rows.append([label, "-", fmt_s(t_o), "-", "-", fmt_s(bound), f"{t_o / bound:.2f}", "-", "-"])
            for ref_name, ref in refs.items():
                b = ref()
                t_r = stats[ref_name].median
                rows.append([label, ref_name, fmt_s(t_o), fmt_s(t_r), f"{t_o / t_r:.2f}", fmt_s(bound),
                             f"{t_o / bound:.2f}", f"{t_r / bound:.2f}", rel_diff(a, b) if same else "-"])
        print(markdown_table(["method", "vs", "ours", "ref", "ours/ref", "bound", "ours/bound", "ref/bound",
                              "max rel diff"], rows) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (end-to-end check)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per candidate (default 5; quick 3)")
    ap.add_argument("--pareto-repeats", type=int, default=None, help="repeats per Pareto point (default 3; quick 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's; quick 1)")
    ap.add_argument("--skip-pareto", action="store_true")
    ap.add_argument("--config", default=None, help="only the configurations whose name contains this text")
    ap.add_argument("--perturbation", action="store_true", help="only the perturbation / Guided Grad-CAM rows")
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    p_repeats = args.pareto_repeats or (1 if args.quick else 3)
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    t_start = time.perf_counter()
    import captum

    if args.perturbation:
        print(f"# Perturbation methods: cleargrad vs Captum {captum.__version__}\n")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, repeats {repeats}, CPU\n")
        bench_perturbation(args.quick, repeats)
        print(f"total {time.perf_counter() - t_start:.0f} s")
        return
    print(f"# Pixel attribution: cleargrad vs Captum {captum.__version__}\n")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, repeats {repeats}, CPU\n")
    for cfg in configs(args.quick):
        if args.config is not None and args.config not in cfg.name:
            continue
        n = cfg.x.shape[0]
        with torch.no_grad():
            target = cfg.model(cfg.x).argmax(1)
        units = interleaved({f"u{cl}": lambda cfg=cfg, t=target, cl=cl: input_gradient(cfg.model, cfg.x, t, cl)
                             for cl in (False, True)}, repeats=repeats)
        unit = min(v.median for v in units.values())
        costs = per_sample_costs(cfg, repeats)
        best_b = min(costs, key=costs.get)
        best = costs[best_b]
        ig_chunk = default_chunk_size(cfg.x.shape[1:], cfg.ig_steps * n)
        print(f"## {cfg.name}\n")
        print(f"unit (one forward+backward of the batch of {n}) = {fmt_s(unit)}; "
              f"best per-sample cost {fmt_s(best)} at batch {best_b}; our default IG chunk = {ig_chunk} samples\n")
        print(markdown_table(["batch size", "per sample", "x best"],
                             [[b, fmt_s(c), f"{c / best:.2f}"] for b, c in costs.items()]) + "\n")
        print(bench_methods(cfg, target, unit, best, repeats) + "\n")
        if not args.skip_pareto:
            pareto, need = bench_pareto(cfg, p_repeats, unit)
            print(f"### IG Pareto (baseline 0, Captum with internal_batch_size=16)\n\n{pareto}\n\n{need}\n")
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
