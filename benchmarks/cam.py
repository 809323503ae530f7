"""Speed of the CAM methods against pytorch-grad-cam, in one run, and against pass lower bounds.

    python benchmarks/cam.py            # resnet18 (weights=None) batch 4 at 224x224, SmallCNN batch 64 at 28x28
    python benchmarks/cam.py --quick    # tiny sizes, checks the script end to end
    python benchmarks/cam.py --transformers   # vit_b_16 and swin_t (weights=None) only
    python benchmarks/cam.py --config resnet18 --rows ScoreCAM --slow-repeats 4   # one row
    python benchmarks/cam.py --new --threads 1  # issue 29: the new CAMs and smoothing options vs their peers

Transformer rows (issue 14): torchvision vit_b_16 and swin_t at random init (heads
re-initialised non-zero), batch 1. pytorch-grad-cam gets the layer's
``reshape_transform`` (class token dropped and patches laid on the grid for ViT,
channels-last to channels-first for Swin); cleargrad detects the layout itself. Same
layer and targets for both: ViT ``encoder.layers.encoder_layer_11.ln_1`` (grad-cam's
``blocks[-1].norm1`` convention, and cleargrad's ``layer="auto"``), Swin ``norm`` (the
final norm, channels last). The gradient CAMs run at 224x224; Score-CAM (one forward per
channel: 768 for both models) at a small input (ViT 32x32, Swin 64x64: 2x2 grids) so that a CPU run
stays in minutes. Ablation-CAM and the sampling CAMs are not timed on transformers
(grad-cam needs a ViT-specific ablation layer for the former, has no peer for the latter).

For each configuration (model, batch):

1. **unit** = one forward+backward (input gradient, no parameter gradients) of the batch;
   every time is also given in units.
2. **per-sample cost** of a forward pass (inference mode) and of a forward+backward at
   several batch sizes; the best gives each method's **pass lower bound** = number of
   passes it needs x best per-sample cost: gradient CAMs 1 forward+backward of the batch
   (= 1 unit); Score-CAM and Ablation-CAM N*K forwards of masked/ablated images (+ the
   clean one); Expected Grad-CAM / Smooth Grad-CAM++ / Integrated Grad-CAM S x (forward+
   backward) per image.
3. each method, ours vs pytorch-grad-cam's (where it has one), timed interleaved
   (A B / B A ...) after a warm-up, median of ``--repeats``. Score-CAM runs with grad-cam's
   conventions (``weights="softmax_over_channels"``, normalised-space masks,
   ``align_corners=True``) so that both do the same work and the maps can be compared;
   the "max diff" column is the max abs difference of the normalised maps.

Targets (issue 3): no CAM slower than grad-cam's; gradient CAMs <= 1.0 unit; Ablation-CAM
>= 5x faster than grad-cam's; Score-CAM <= 1.15 x its forward bound; Expected Grad-CAM
<= 1.15 x (n_samples x forward+backward).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # grad-cam's per-image progress bars

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

from cleargrad.runtime.layout import channels_last as to_channels_last  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import fmt_s, interleaved, markdown_table, paired_ratio  # noqa: E402

import cleargrad as cg  # noqa: E402
from cleargrad.models import SmallCNN  # noqa: E402

GRADCAM_SCORE = {"mask_space": "normalized", "weights": "softmax_over_channels", "mask_align_corners": True}


@dataclass
class Config:
    name: str
    model: nn.Module
    layer: str
    x: torch.Tensor
    batch_sizes: tuple[int, ...]
    samples: int  # Expected Grad-CAM / Smooth Grad-CAM++ / Integrated Grad-CAM draws or steps
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None  # grad-cam's, for token layers
    rows: tuple[str, ...] | None = None  # the methods timed (None: all)
    score_batch: int | None = None  # Score-CAM masked images per pass, both libraries (None: defaults)


def _vit_reshape(t: torch.Tensor) -> torch.Tensor:
    """grad-cam reshape_transform of a class-token ViT: drop the class token, patches on the grid."""
    side = int(round((t.shape[1] - 1) ** 0.5))
    return t[:, 1:, :].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)


def _nhwc_reshape(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


def _heads_nonzero(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("head") and p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


GRADIENT_ROWS = ("GradCAM", "GradCAM++", "XGradCAM", "LayerCAM", "HiResCAM")


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def transformer_configs(quick: bool) -> list[Config]:
    """vit_b_16 and swin_t rows (issue 14)."""
    torch.manual_seed(0)
    vit224 = _heads_nonzero(torchvision.models.vit_b_16())
    vit32 = _heads_nonzero(torchvision.models.vit_b_16(image_size=32))
    vit32.load_state_dict({k: v for k, v in vit224.state_dict().items() if "pos_embedding" not in k}, strict=False)
    swin = _heads_nonzero(torchvision.models.swin_t())
    vit_layer = "encoder.layers.encoder_layer_11.ln_1"
    big = 64 if quick else 224
    vit_big = vit224 if not quick else _heads_nonzero(torchvision.models.vit_b_16(image_size=64))
    return [
        Config(f"vit_b_16 b1 {big}px", vit_big, vit_layer, torch.randn(1, 3, big, big), (1,), 4, _vit_reshape,
               GRADIENT_ROWS),
        Config(f"swin_t b1 {big}px", swin, "norm", torch.randn(1, 3, big, big), (1,), 4, _nhwc_reshape,
               GRADIENT_ROWS),
        Config("vit_b_16 b1 32px", vit32, vit_layer, torch.randn(1, 3, 32, 32), (16, 64), 4, _vit_reshape,
               ("ScoreCAM",)),
        # 64px: at 32px Swin's last grid is 1x1 (every channel constant: one pass for cleargrad).
        # 64 masked images per pass for both: Swin's padded windows make a default-size chunk take GBs
        Config("swin_t b1 64px", swin, "norm", torch.randn(1, 3, 64, 64), (16, 64), 4, _nhwc_reshape,
               ("ScoreCAM",), score_batch=64),
    ]


def configs(quick: bool) -> list[Config]:
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).eval()
    small = SmallCNN().eval()
    if quick:
        return [
            Config("resnet18 b2 64px", resnet, "layer4", torch.randn(2, 3, 64, 64), (2, 16), 4),
            Config("SmallCNN b8 28px", small, "features", torch.randn(8, 1, 28, 28), (8, 64), 4),
        ]
    return [
        Config("resnet18 b4 224px", resnet, "layer4", torch.randn(4, 3, 224, 224), (4, 8, 16, 32), 50),
        Config("SmallCNN b64 28px", small, "features", torch.randn(64, 1, 28, 28), (64, 256, 1024, 4096), 50),
    ]


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return to_channels_last(x) if channels_last else x  # one channel too (see runtime.layout)


def per_sample_costs(cfg: Config, repeats: int) -> tuple[float, float]:
    """Best per-sample seconds of a forward pass and of a forward+backward pass, over the
    batch sizes and the two input layouts (cleargrad feeds CPU models channels-last
    inputs, so the bound allows that too)."""
    model, x = cfg.model, cfg.x
    for p in model.parameters():
        p.requires_grad_(False)
    fwd, fb = [], []
    try:
        for b in cfg.batch_sizes:
            xb = x[torch.arange(b) % x.shape[0]].contiguous()
            runs = {}
            for cl in (False, True):

                def forward(xb: torch.Tensor = xb, cl: bool = cl) -> None:
                    with torch.inference_mode():
                        model(_layout(xb, cl))

                def forward_backward(xb: torch.Tensor = xb, cl: bool = cl) -> None:
                    xi = xb.clone().requires_grad_(True)
                    torch.autograd.grad(model(_layout(xi, cl))[:, 0].sum(), xi)

                runs[f"f{cl}"], runs[f"fb{cl}"] = forward, forward_backward
            st = interleaved(runs, repeats=repeats)
            fwd.append(min(st["fFalse"].median, st["fTrue"].median) / b)
            fb.append(min(st["fbFalse"].median, st["fbTrue"].median) / b)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return min(fwd), min(fb)


def unit_cost(cfg: Config, repeats: int) -> float:
    """One forward+backward of the batch, in the faster of the two input layouts."""
    model, x = cfg.model, cfg.x
    for p in model.parameters():
        p.requires_grad_(False)

    def run(cl: bool) -> None:
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(model(_layout(xi, cl))[:, 0].sum(), xi)

    try:
        st = interleaved({"n": lambda: run(False), "cl": lambda: run(True)}, repeats=repeats)
        return min(v.median for v in st.values())
    finally:
        for p in model.parameters():
            p.requires_grad_(True)


def bench_config(cfg: Config, repeats: int, slow_repeats: int, only: list[str] | None = None) -> None:
    """Time every CAM of one configuration and print its markdown table."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = cfg.model, cfg.x
    module = dict(model.named_modules())[cfg.layer]
    with torch.no_grad():
        targets = model(x).argmax(1)
        k = cg.GradCAM(model, layer=cfg.layer).layer_pass(x[:1], [module])[0].shape[1]
    n = x.shape[0]
    unit = unit_cost(cfg, repeats)
    fwd, fb = per_sample_costs(cfg, repeats)
    print(f"\n## {cfg.name}: unit (fwd+bwd of the batch) = {fmt_s(unit)}; best per-sample forward "
          f"{fmt_s(fwd)}, forward+backward {fmt_s(fb)}; K = {k} channels\n")

    def gc(cls: type, **attrs: object) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            kw = {"reshape_transform": cfg.reshape_transform} if cfg.reshape_transform is not None else {}
            with cls(model, [module], **kw) as cam:
                for a, v in attrs.items():
                    setattr(cam, a, v)
                return cam(x, targets=[ClassifierOutputTarget(int(t)) for t in targets])

        return run

    def ours(cls: type, **opts: object) -> Callable[[], torch.Tensor]:
        inst = cls(model, layer=cfg.layer)
        return lambda: inst.attribute(x, target=targets, normalize=True, **opts)

    s = cfg.samples
    score_opts = {"batch_size": cfg.score_batch} if cfg.score_batch else {}
    score_attrs = {"batch_size": cfg.score_batch} if cfg.score_batch else {}
    rows_spec: list[tuple[str, Callable, Callable | None, float, str, int]] = [
        ("GradCAM", ours(cg.GradCAM), gc(pgc.GradCAM), unit, "<= 1.0 unit", repeats),
        ("GradCAM++", ours(cg.GradCAMPlusPlus), gc(pgc.GradCAMPlusPlus), unit, "<= 1.0 unit", repeats),
        ("XGradCAM", ours(cg.XGradCAM), gc(pgc.XGradCAM), unit, "<= 1.0 unit", repeats),
        ("LayerCAM", ours(cg.LayerCAM), gc(pgc.LayerCAM), unit, "<= 1.0 unit", repeats),
        ("HiResCAM", ours(cg.HiResCAM), gc(pgc.HiResCAM), unit, "<= 1.0 unit", repeats),
        ("ScoreCAM", ours(cg.ScoreCAM, **GRADCAM_SCORE, **score_opts), gc(pgc.ScoreCAM, **score_attrs),
         (n * k + n) * fwd,
         "<= 1.15 x bound", slow_repeats),
        ("AblationCAM", ours(cg.AblationCAM), gc(pgc.AblationCAM), (n * k + n) * fwd,
         ">= 5x faster than grad-cam", slow_repeats),
        (f"ExpectedGradCAM S={s}", ours(cg.ExpectedGradCAM, n_samples=s), None, s * n * fb,
         "<= 1.15 x bound", slow_repeats),
        (f"SmoothGradCAM++ S={s}", ours(cg.SmoothGradCAMPlusPlus, n_samples=s), None, s * n * fb, "-",
         slow_repeats),
        (f"IntegratedGradCAM M={s}", ours(cg.IntegratedGradCAM, n_steps=s), None, s * n * fb, "-",
         slow_repeats),
    ]
    if cfg.rows is not None:
        rows_spec = [r for r in rows_spec if r[0] in cfg.rows]
    if only is not None:
        rows_spec = [r for r in rows_spec if r[0] in only]
    # paired variants timed in the same interleaving as the row (printed under the table)
    variants = {"ScoreCAM": ("fold_batchnorm=False", ours(cg.ScoreCAM, **GRADCAM_SCORE, **score_opts,
                                                          fold_batchnorm=False))}
    rows, notes = [], []
    for name, mine, ref, bound, target, reps in rows_spec:
        runs = {"ours": mine} if ref is None else {"ours": mine, "grad-cam": ref}
        if name in variants:
            runs["variant"] = variants[name][1]
        st = interleaved(runs, repeats=reps, warmup=1)
        if "variant" in st:
            mean, se, k = paired_ratio(st["ours"].samples, st["variant"].samples)
            notes.append(f"{name} with {variants[name][0]}: {fmt_s(st['variant'].median)} "
                         f"(ours default / this, paired: {mean:.3f}" + (f" ± {se:.3f}" if k > 1 else "")
                         + f", n={k}); max diff to the default {_max_diff(mine(), variants[name][1]()):.1e}")
        t_ours = st["ours"].median
        diff, t_ref, ratio = "-", "-", "-"
        if ref is not None:
            t_ref = fmt_s(st["grad-cam"].median)
            ratio = f"{t_ours / st['grad-cam'].median:.3f}"
            diff = f"{np.abs(mine()[:, 0].cpu().numpy() - ref()).max():.1e}"
        rows.append([name, fmt_s(t_ours), t_ref, ratio, f"{t_ours / unit:.2f}", f"{bound / unit:.2f}",
                     f"{t_ours / bound:.2f}", target, diff])
        print(f"  {name}: {st['ours']}", flush=True)
    print()
    print(markdown_table(
        ["method", "ours", "grad-cam", "ours/grad-cam", "ours (units)", "bound (units)", "ours/bound",
         "target", "max diff"],
        rows,
    ))
    for line in notes:
        print(f"\n{line}")


def bench_new(repeats: int, quick: bool) -> None:
    """Issue 29 rows: each new CAM against its peer (pytorch-grad-cam; TorchCAM for SS-/IS-CAM)
    on the same model, input, layer, targets and threads, timed interleaved; and every time
    against one forward pass of the batch (inference mode): EigenCAM-type methods need one
    forward (up to the layer) and an SVD."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import ISCAM, SSCAM

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    size = 64 if quick else 112
    x = torch.randn(2, 3, size, size)
    layer = "layer4"
    module = dict(model.named_modules())[layer]
    with torch.no_grad():
        targets = model(x).argmax(1)
    tg = [ClassifierOutputTarget(int(t)) for t in targets]

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    def gc(cls: type, layers: list | None = None, **call: object) -> Callable[[], object]:
        def run() -> object:
            cam = cls(model, [module] if layers is None else layers)
            try:
                return cam(x, targets=tg, **call)
            finally:
                cam.activations_and_grads.gradients = []
                cam.activations_and_grads.release()
        return run

    def ours(cls: type, **opts: object) -> Callable[[], object]:
        inst = cls(model, layer=layer) if cls is not cg.FullGrad else cls(model)
        return lambda: inst.attribute(x, target=targets, normalize=True, **opts)

    rows_spec = [
        ("EigenCAM", ours(cg.EigenCAM), gc(pgc.EigenCAM)),
        ("EigenGradCAM", ours(cg.EigenGradCAM), gc(pgc.EigenGradCAM)),
        ("KPCA-CAM", ours(cg.KPCACAM), gc(pgc.KPCA_CAM)),
        ("GradCAMElementWise", ours(cg.GradCAMElementWise), gc(pgc.GradCAMElementWise)),
        ("FEM", ours(cg.FEM), gc(pgc.FEM)),
        ("RandomCAM", ours(cg.RandomCAM), gc(pgc.RandomCAM)),
        ("ShapleyCAM", ours(cg.ShapleyCAM), gc(pgc.ShapleyCAM)),
        ("FinerCAM", ours(cg.FinerCAM), lambda: _finer(pgc, model, module, x)),
        ("FullGrad", ours(cg.FullGrad), gc(pgc.FullGrad, layers=[])),
        ("GradCAM eigen_smooth", ours(cg.GradCAM, eigen_smooth=True), gc(pgc.GradCAM, eigen_smooth=True)),
        ("GradCAM aug_smooth", ours(cg.GradCAM, aug_smooth=True), gc(pgc.GradCAM, aug_smooth=True)),
    ]
    unit_f = interleaved({"f": forward}, repeats=repeats)["f"].median
    print(f"\n## issue 29: resnet18 b2 {size}px, layer4; one forward of the batch = {fmt_s(unit_f)}\n")
    rows = []
    for name, mine, ref in rows_spec:
        st = interleaved({"ours": mine, "peer": ref}, repeats=repeats, warmup=1)
        mean, se, k = paired_ratio(st["ours"].samples, st["peer"].samples)
        rows.append([name, "pytorch-grad-cam", fmt_s(st["ours"].median), fmt_s(st["peer"].median),
                     f"{mean:.3f} ± {se:.3f}", f"{st['ours'].median / unit_f:.2f}"])
        print(f"  {name}: {st['ours']}", flush=True)
    # SS-CAM / IS-CAM: a 64-channel layer, one image, few samples (N·S·K masked passes on both sides)
    xs = x[:1, :, :32, :32].contiguous()
    t0 = int(targets[0])
    s_ss, s_is = (2, 3) if quick else (4, 4)

    def tc(cls: type, **kw: object) -> Callable[[], object]:
        def run() -> object:
            with cls(model, "layer1", batch_size=64, input_shape=(3, 32, 32), **kw) as ex:
                with torch.no_grad():
                    model(xs)
                return ex(class_idx=[t0])
        return run

    ss = cg.SSCAM(model, layer="layer1")
    iss = cg.ISCAM(model, layer="layer1")

    def forward_s() -> None:
        with torch.inference_mode():
            model(xs)

    unit_s = interleaved({"f": forward_s}, repeats=repeats)["f"].median
    for name, mine, ref in (
        (f"SS-CAM S={s_ss} (layer1, 1x32px)", lambda: ss.attribute(xs, target=t0, n_samples=s_ss, batch_size=64),
         tc(SSCAM, num_samples=s_ss)),
        (f"IS-CAM S={s_is} (layer1, 1x32px)", lambda: iss.attribute(xs, target=t0, n_samples=s_is, batch_size=64),
         tc(ISCAM, num_samples=s_is)),
        (f"SS-CAM S={s_ss} fold_batchnorm=True",
         lambda: ss.attribute(xs, target=t0, n_samples=s_ss, batch_size=64, fold_batchnorm=True),
         tc(SSCAM, num_samples=s_ss)),
        (f"IS-CAM S={s_is} fold_batchnorm=True",
         lambda: iss.attribute(xs, target=t0, n_samples=s_is, batch_size=64, fold_batchnorm=True),
         tc(ISCAM, num_samples=s_is)),
    ):
        st = interleaved({"ours": mine, "peer": ref}, repeats=max(1, repeats // 2), warmup=1)
        mean, se, k = paired_ratio(st["ours"].samples, st["peer"].samples)
        rows.append([name, "TorchCAM", fmt_s(st["ours"].median), fmt_s(st["peer"].median),
                     f"{mean:.3f} ± {se:.3f}", f"{st['ours'].median / unit_s:.1f}"])
        print(f"  {name}: {st['ours']}", flush=True)
    print()
    print(markdown_table(["method", "peer", "ours", "peer time", "ours/peer (paired)", "ours / 1 forward"], rows))


def _finer(pgc: object, model: nn.Module, module: nn.Module, x: torch.Tensor) -> object:
    cam = pgc.FinerCAM(model, [module])  # type: ignore[attr-defined]
    try:
        return cam(x, targets=None)
    finally:
        cam.base_cam.activations_and_grads.release()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: check the script end to end")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per method (default 5, quick 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's; quick: 1)")
    ap.add_argument("--transformers", action="store_true", help="only the vit_b_16 and swin_t rows (issue 14)")
    ap.add_argument("--memory-format", default=None, help="cleargrad's input layout (cg.set_memory_format): "
                    "auto, channels_last or contiguous")
    ap.add_argument("--new", action="store_true", help="only the issue-29 rows (new CAMs and smoothing options)")
    ap.add_argument("--config", default=None, help="only the configurations whose name contains this text")
    ap.add_argument("--rows", default=None, help="only these methods (comma-separated row names, e.g. ScoreCAM)")
    ap.add_argument("--slow-repeats", type=int, default=None,
                    help="timed repeats of the many-pass methods (default: repeats // 2)")
    args = ap.parse_args()
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    repeats = args.repeats or (1 if args.quick else 5)
    slow_repeats = args.slow_repeats or (max(1, repeats // 2) if not args.quick else 1)
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, grad-cam 1.5.x")
    if args.memory_format:
        cg.set_memory_format(args.memory_format)
    print(f"cleargrad memory format: {cg.get_memory_format()}")
    if args.new:
        bench_new(repeats, args.quick)
        return
    for cfg in transformer_configs(args.quick) if args.transformers else configs(args.quick):
        if args.config is None or args.config in cfg.name:
            bench_config(cfg, repeats, slow_repeats, args.rows.split(",") if args.rows else None)

if __name__ == "__main__":
    main()
