"""Speed of the perturbation metrics against Captum, Quantus and TorchCAM, in one run.

    python benchmarks/metrics.py            # full: 16 images 224x224, resnet18 (weights=None), 224 px/step
    python benchmarks/metrics.py --quick    # a tiny configuration that checks the script end to end

Three blocks, each timed as interleaved repeats (A B C / C B A ...) and reported as
medians, as a markdown table with the ratio to ours and to the lower bound:

1. insertion + deletion, zero substrate for both curves, ``step`` pixels per step,
   against TorchCAM's batched ``DeletionInsertionMetric`` (same curves; it also
   computes the Grad-CAM it ranks by, one forward+backward, included in its time) and
   Quantus ``PixelFlipping`` (deletion only, ``step * C`` features per step, "black"
   baseline; compared with our deletion alone).
2. infidelity, Gaussian perturbations (sigma 0.1), ``n`` draws, against Captum's
   ``infidelity`` and Quantus ``Infidelity`` (its own patch perturbations; run under a
   time limit, reported as "> limit" when it does not finish).
3. max-sensitivity of Saliency, radius 0.02, ``n`` samples, against Captum's
   ``sensitivity_max`` and Quantus ``MaxSensitivity`` (all three explain with our
   Saliency, so only the metric's own overhead differs).

4. ROAD (``--blocks road``): MoRF with noisy linear imputation at a few removal
   fractions, against pytorch-grad-cam's ``ROADMostRelevantFirst`` (one call per
   percentile) and, on 1-channel images, Quantus ``ROAD``; resnet18 at 224 px and
   SmallCNN at 28 px (random init).
5. MPRT (``--blocks mprt``): cascading top-down randomisation of every layer, Saliency
   explanations, Spearman similarity, against Quantus ``MPRT`` (same explainer, same
   layers); cost in explanations (forward+backward of the batch).

6. Quantus's other families (``--blocks families``): region perturbation, monotonicity
   (Nguyen), IROF, non-sensitivity and relative input stability on the SmallCNN at 28 px
   (random init), each against its Quantus class with the same settings (a fixed
   baseline, so both do the same work).

Lower bound = number of images forwarded (or forwarded and back-propagated) x the
measured time per image of one batched pass at our chunk size.
"""

from __future__ import annotations

import argparse
import math
import signal
import statistics
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
import torchvision

import cleargrad as cg
from cleargrad.core import default_chunk_size
from cleargrad.runtime.layout import channels_last as to_channels_last


class Timeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float | None):
    if not seconds:
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise Timeout

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def timed(fn: Callable[[], object], limit: float | None = None) -> float:
    """Seconds for one call (``inf`` when it exceeds ``limit``)."""
    t0 = time.perf_counter()
    try:
        with time_limit(limit):
            fn()
    except Timeout:
        return math.inf
    return time.perf_counter() - t0


def interleaved(runs: dict[str, Callable[[], object]], repeats: int, limits: dict[str, float]) -> dict[str, float]:
    """Median seconds per runner, alternating the order every repeat; a runner that timed out is not rerun."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(repeats):
        for k in names if r % 2 == 0 else names[::-1]:
            if times[k] and math.isinf(times[k][-1]):
                continue
            times[k].append(timed(runs[k], limits.get(k)))
    return {k: statistics.median(v) for k, v in times.items()}


def per_image_pass(model: torch.nn.Module, x: torch.Tensor, backward: bool, repeats: int = 3) -> float:
    """Median seconds per image of one batched forward (and backward) of ``x``, in the
    faster of the default and the channels-last input layout (cleargrad feeds CPU models
    channels-last inputs, so the bound allows that too)."""

    def once(cl: bool) -> None:
        xl = to_channels_last(x) if cl else x  # one channel too (see runtime.layout)
        if backward:
            xi = xl.detach().requires_grad_(True)
            with torch.enable_grad():
                torch.autograd.grad(model(xi)[:, 0].sum(), xi)
        else:
            with torch.inference_mode():
                model(xl)

    best = math.inf
    for cl in (False, True):
        once(cl)
        best = min(best, statistics.median(timed(lambda cl=cl: once(cl)) for _ in range(repeats)))
    return best / x.shape[0]


def fmt(s: float) -> str:
    return "> limit" if math.isinf(s) else f"{s:.2f}"


def table(title: str, medians: dict[str, float], work: dict[str, int], ours: str, per_image: float) -> str:
    """Markdown table: time relative to ours (same metric settings) and to each runner's own lower bound
    (``work`` = images it sends through the model x ``per_image``, one batched pass per image)."""
    lines = [
        f"### {title}",
        "",
        "| runner | images through the model | median s | x ours | x its lower bound |",
        "|---|---|---|---|---|",
    ]
    for k, v in medians.items():
        ratio = "-" if math.isinf(v) else f"{v / medians[ours]:.2f}"
        lb = "-" if math.isinf(v) else f"{v / (work[k] * per_image):.2f}"
        lines.append(f"| {k} | {work[k]} | {fmt(v)} | {ratio} | {lb} |")
    lines.append(f"| lower bound (ours) | {work[ours]} | {work[ours] * per_image:.2f} | - | 1.00 |")
    return "\n".join(lines)


BLOCKS = ("insdel", "infidelity", "sensitivity", "road", "mprt", "families")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny configuration (seconds), to check the script")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--quantus-limit", type=float, default=None, help="seconds before a Quantus run is abandoned")
    ap.add_argument("--images", type=int, default=None, help="images for insertion/deletion (default 16; quick 2)")
    ap.add_argument("--blocks", nargs="+", choices=BLOCKS, default=list(BLOCKS), help="blocks to run (default all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    if args.quick:
        n, size, step, n_pert, n_infd, repeats, limit = 2, 64, 64 * 8, 3, 2, 1, 60.0
    else:
        n, size, step, n_pert, n_infd, repeats, limit = 16, 224, 224, 10, 4, 3, 600.0
    repeats = args.repeats or repeats
    limit = args.quantus_limit or limit
    n = args.images or n

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(n, 3, size, size)
    with torch.no_grad():
        y = model(x).argmax(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {n} images {size}x{size}, resnet18")

    # ---- 1. insertion + deletion ---------------------------------------------------------
    import quantus

    if "insdel" in args.blocks:
        cam_map = cg.metrics.prepare_maps(torch.rand(n, 1, 7, 7), x)  # any map; ranking cost does not depend on it
        chunk = default_chunk_size(x.shape[1:], n * (size * size // step + 1))
        fwd = per_image_pass(model, x[:chunk] if chunk <= n else x.repeat(math.ceil(chunk / n), 1, 1, 1)[:chunk], False)
        n_steps = math.ceil(size * size / step)

        def ours_insdel() -> None:
            cg.metrics.insertion(model, x, cam_map, y, step=step, substrate="zero")
            cg.metrics.deletion(model, x, cam_map, y, step=step, substrate="zero")

        def ours_del() -> None:
            cg.metrics.deletion(model, x, cam_map, y, step=step, substrate="zero")

        runs: dict[str, Callable[[], object]] = {"cleargrad insertion+deletion": ours_insdel}
        try:
            from torchcam.methods import GradCAM
            from torchcam.metrics import DeletionInsertionMetric

            def torchcam_insdel() -> None:
                extractor = GradCAM(model, "layer4")
                metric = DeletionInsertionMetric(
                    extractor, lambda s: torch.softmax(s, -1), steps=n_steps, batch_size=chunk
                )
                metric.update(x, class_idx=y.tolist())
                metric.summary()
                extractor.remove_hooks()

            runs["torchcam DeletionInsertionMetric"] = torchcam_insdel
        except ImportError:
            print("torchcam not installed: skipped")
        med = interleaved(runs, repeats, {})
        work = {"cleargrad insertion+deletion": 2 * n * (n_steps + 1),
                "torchcam DeletionInsertionMetric": 2 * n * n_steps}
        print(table(f"insertion + deletion ({n_steps} steps each)", med, work, "cleargrad insertion+deletion", fwd))

        def quantus_pf() -> None:
            # Quantus requires features_in_step to divide H*W but flips C*H*W elements of the broadcast map:
            # C times our number of steps, each flipping `step` elements (1/C of `step` pixels)
            q = quantus.PixelFlipping(features_in_step=step, perturb_baseline="black", disable_warnings=True)
            q(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=cam_map.numpy(), device="cpu")

        med = interleaved({"cleargrad deletion": ours_del, "quantus PixelFlipping": quantus_pf}, repeats,
                          {"quantus PixelFlipping": limit})
        print()
        work = {"cleargrad deletion": n * (n_steps + 1), "quantus PixelFlipping": n * math.ceil(3 * size * size / step)}
        print(table(f"deletion only ({n_steps} steps)", med, work, "cleargrad deletion", fwd))

    # ---- 2. infidelity --------------------------------------------------------------------
    from captum.metrics import infidelity as captum_infidelity
    from captum.metrics import sensitivity_max

    xb, yb = x[:n_infd], y[:n_infd]
    sal = cg.Saliency(model)
    phi = sal.attribute(xb, yb)
    xrep = xb.repeat_interleave(n_pert, 0)  # our chunk: all draws of all images in one pass
    fwd_b = per_image_pass(model, xrep, False)
    fb_b = per_image_pass(model, xrep, True)

    def ours_infd() -> None:
        cg.metrics.infidelity(model, xb, phi, yb, n_perturb=n_pert, normalize=False, batch_size=n_infd * n_pert)

    def perturb(inputs: torch.Tensor):
        noise = torch.randn_like(inputs) * 0.1
        return noise, inputs - noise

    def captum_infd() -> None:
        captum_infidelity(model, perturb, xb, phi, target=yb, n_perturb_samples=n_pert)

    def quantus_infd() -> None:
        q = quantus.Infidelity(n_perturb_samples=n_pert, perturb_patch_sizes=[size // 8], disable_warnings=True)
        q(model=model, x_batch=xb.numpy(), y_batch=yb.numpy(), a_batch=phi.numpy(), device="cpu")

    if "infidelity" in args.blocks:
        med = interleaved({"cleargrad infidelity": ours_infd, "captum infidelity": captum_infd,
                           "quantus Infidelity": quantus_infd}, repeats, {"quantus Infidelity": limit})
        print()
        # Captum forwards the unperturbed copies too; Quantus forwards one image at a time per patch and draw
        work = {"cleargrad infidelity": n_infd * (n_pert + 1), "captum infidelity": 2 * n_infd * n_pert,
                "quantus Infidelity": n_infd * n_pert * 64 + n_infd}
        print(table(f"infidelity ({n_infd} images, {n_pert} draws)", med, work, "cleargrad infidelity", fwd_b))

    # ---- 3. max-sensitivity ---------------------------------------------------------------
    def ours_sens() -> None:
        cg.metrics.max_sensitivity(sal.attribute, xb, yb, n_samples=n_pert, batch_size=n_infd * n_pert)

    def captum_sens() -> None:
        sensitivity_max(lambda inp, target: (sal.attribute(inp[0] if isinstance(inp, tuple) else inp, target),),
                        xb, n_perturb_samples=n_pert, target=yb)

    def quantus_explain(model, inputs, targets, **kw):  # noqa: ARG001
        t = torch.as_tensor(np.asarray(targets)).long()
        return sal.attribute(torch.as_tensor(inputs).float(), t).numpy()

    def quantus_sens() -> None:
        q = quantus.MaxSensitivity(nr_samples=n_pert, lower_bound=0.02, disable_warnings=True)
        q(model=model, x_batch=xb.numpy(), y_batch=yb.numpy(), a_batch=phi.numpy(), device="cpu",
          explain_func=quantus_explain)

    if "sensitivity" in args.blocks:
        med = interleaved({"cleargrad max_sensitivity": ours_sens, "captum sensitivity_max": captum_sens,
                           "quantus MaxSensitivity": quantus_sens}, repeats, {"quantus MaxSensitivity": limit})
        print()
        work = {k: n_infd * (n_pert + 1) for k in med}  # forward+backward passes, the same for all three
        print(table(f"max-sensitivity of Saliency ({n_infd} images, {n_pert} samples; unit: forward+backward)", med,
                    work, "cleargrad max_sensitivity", fb_b))
    if "road" in args.blocks or "mprt" in args.blocks:
        road_mprt_blocks(args.blocks, repeats, args.quick)
    if "families" in args.blocks:
        family_blocks(repeats, args.quick)


def family_blocks(repeats: int, quick: bool) -> None:
    """Block 6: the Quantus-family metrics on the shipped SmallCNN architecture at 28 px
    against their Quantus classes, alternating the runners (ratios, not seconds)."""
    import quantus

    from cleargrad.models import SmallCNN

    if not hasattr(np, "trapz"):  # Quantus 0.6's IROF calls np.trapz, removed in numpy 2
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
    torch.manual_seed(0)
    model = SmallCNN(num_classes=10).eval()
    n = 4 if quick else 16
    x = torch.rand(n, 1, 28, 28)
    with torch.no_grad():
        y = model(x).argmax(1)
    a = torch.rand(n, 1, 28, 28)
    xn, yn, an = x.numpy(), y.numpy(), a.numpy()
    samples = 2 if quick else 10

    def quantus_call(metric, **kw):
        return lambda: metric(model=model, x_batch=xn, y_batch=yn, a_batch=an, device="cpu", **kw)

    def saliency(model, inputs, targets, **kw):  # noqa: ARG001
        return cg.Saliency(model).attribute(torch.as_tensor(inputs, dtype=torch.float32),
                                            torch.as_tensor(targets)).numpy()

    rows = {
        "region_perturbation (4 px patches, 49 regions)": (
            lambda: cg.metrics.region_perturbation(model, x, a, y, patch_size=4, regions=49),
            quantus_call(quantus.RegionPerturbation(patch_size=4, regions_evaluation=49, disable_warnings=True)),
            n * 50, n * 50),
        f"monotonicity_nguyen (28 px per group, {samples} draws)": (
            lambda: cg.metrics.monotonicity_nguyen(model, x, a, y, step=28, n_samples=samples,
                                                   generator=torch.Generator().manual_seed(0)),
            quantus_call(quantus.MonotonicityCorrelation(features_in_step=28, nr_samples=samples,
                                                         disable_warnings=True)),
            n * (1 + 28 * samples), n * (1 + 28 * samples)),
        "irof (SLIC, baseline 0)": (
            lambda: cg.metrics.irof(model, x, a, y, baseline=0.0),
            quantus_call(quantus.IROF(perturb_baseline=0.0, return_aggregate=False, disable_warnings=True)),
            None, None),
        "non_sensitivity (one pass per pixel)": (
            lambda: cg.metrics.non_sensitivity(model, x, a, y, normalise=False),
            quantus_call(quantus.NonSensitivity(normalise=False, disable_warnings=True)),
            n * 785, n * 785),
        f"relative_input_stability (Saliency, {samples} draws)": (
            lambda: cg.metrics.relative_input_stability(model, cg.Saliency(model).attribute, x, y, a,
                                                        n_samples=samples,
                                                        generator=torch.Generator().manual_seed(0)),
            quantus_call(quantus.RelativeInputStability(nr_samples=samples, disable_warnings=True),
                         explain_func=saliency),
            n * samples, n * samples),
    }
    print(f"\n### Quantus's other families, SmallCNN 28 px, {n} images (random init)\n")
    print("| metric | images through the model (ours / Quantus) | ours median s | Quantus median s | Quantus / ours |")
    print("|---|---|---|---|---|")
    for label, (ours, theirs, w_ours, w_q) in rows.items():
        med = interleaved({"ours": ours, "quantus": theirs}, repeats, {})
        work = "-" if w_ours is None else f"{w_ours} / {w_q}"
        print(f"| {label} | {work} | {fmt(med['ours'])} | {fmt(med['quantus'])} | {med['quantus'] / med['ours']:.2f} |")


def road_mprt_blocks(blocks: list[str], repeats: int, quick: bool) -> None:
    """Blocks 4 and 5: ROAD and MPRT against pytorch-grad-cam / Quantus, on resnet18 (224 px)
    and SmallCNN (28 px), alternating the runners (ratios, not seconds, on a loaded machine)."""
    import quantus
    from pytorch_grad_cam.metrics.road import ROADMostRelevantFirst
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    from cleargrad.models import SmallCNN

    torch.manual_seed(0)
    configs = [("SmallCNN 28 px", SmallCNN(num_classes=10).eval(), 1, 28, 4 if quick else 16)]
    if not quick:
        configs.insert(0, ("resnet18 224 px", torchvision.models.resnet18(weights=None).eval(), 3, 224, 2))
    fractions = (0.2, 0.5, 0.8)
    for label, model, c, size, n in configs:
        x = torch.randn(n, c, size, size)
        with torch.no_grad():
            y = model(x).argmax(1)
        maps = cg.metrics.prepare_maps(torch.rand(n, 1, 7, 7), x)[:, 0]  # a CAM-like map
        if "road" in blocks:
            def ours_road(model=model, x=x, y=y, maps=maps) -> None:
                cg.metrics.road_morf(model, x, maps, y, fractions=fractions, generator=torch.Generator().manual_seed(0))

            def pgc_road(model=model, x=x, y=y, maps=maps) -> None:
                targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in y]
                for f in fractions:
                    ROADMostRelevantFirst(percentile=round(100 * (1 - f)))(x, maps.numpy(), targets, model)

            runs = {"cleargrad road_morf": ours_road, "pytorch-grad-cam ROADMostRelevantFirst": pgc_road}
            if c == 1:
                def quantus_road(model=model, x=x, y=y, maps=maps) -> None:
                    quantus.ROAD(percentages=[round(100 * f) for f in fractions], disable_warnings=True)(
                        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(),
                        device="cpu")

                runs["quantus ROAD"] = quantus_road
            med = interleaved(runs, repeats, {})
            print(f"\n### ROAD MoRF, {label}, {n} images, fractions {fractions}, noise 0.01\n")
            print("| runner | images through the model | median s | x ours |\n|---|---|---|---|")
            # ours: one clean pass + the imputed images; pytorch-grad-cam reruns the clean batch per percentile
            passes = {"cleargrad road_morf": n * (len(fractions) + 1),
                      "pytorch-grad-cam ROADMostRelevantFirst": 2 * n * len(fractions),
                      "quantus ROAD": n * len(fractions)}
            for k, v in med.items():
                print(f"| {k} | {passes[k]} | {fmt(v)} | {v / med['cleargrad road_morf']:.2f} |")
        if "mprt" in blocks:
            layers = cg.metrics.randomisable_layers(model)

            def ours_mprt(model=model, x=x, y=y) -> None:
                cg.metrics.mprt(model, x, "saliency", y, seed=43)

            def quantus_explain(model, inputs, targets, **kw):  # noqa: ARG001
                return cg.Saliency(model).attribute(torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()

            a0 = quantus_explain(model, x.numpy(), y.numpy())

            def quantus_mprt(model=model, x=x, y=y, a0=a0) -> None:
                quantus.MPRT(layer_order="top_down", seed=42, disable_warnings=True)(
                    model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a0, explain_func=quantus_explain,
                    device="cpu")

            med = interleaved({"cleargrad mprt": ours_mprt, "quantus MPRT": quantus_mprt}, repeats, {})
            print(f"\n### MPRT top-down, Saliency, Spearman, {label}, {n} images, {len(layers)} layers\n")
            print("| runner | explanations of the batch (forward+backward) | median s | x ours |\n|---|---|---|---|")
            cost = {"cleargrad mprt": 1 + len(layers), "quantus MPRT": 2 + len(layers)}
            for k, v in med.items():
                print(f"| {k} | {cost[k]} | {fmt(v)} | {v / med['cleargrad mprt']:.2f} |")


if __name__ == "__main__":
    main()
