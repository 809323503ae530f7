"""The Expected Grad-CAM claims re-judged with ROAD and the MPRT sanity check (issue 30, item 5).

A second pass over the claims run of ``benchmarks/egc_claims.py``: the maps are computed
again (the deterministic methods as they are; Expected Grad-CAM, Smooth Grad-CAM++ and the
random map with the seed of their original batch, ``1000003 * first image + method index``,
the batches read back from ``records.jsonl`` in file order), then scored with

- ROAD MoRF and ROAD LeRF (``cleargrad.metrics.road_morf`` / ``road_lerf``): the paper's
  noisy linear imputation (noise 0.01), fractions 0.1 ... 0.9, class probability relative to
  the clean image (the library's defaults), but ``selection="count"`` (exactly ``floor(f H W)``
  pixels, Quantus's rule) with ties broken at random: a ReLU-clipped CAM has many tied zero
  pixels, which quantile thresholds remove all at once, so the removed share would differ by
  method. The imputation noise and the tie-breaking are seeded per batch, the same for every
  method of a batch;
- insertion and deletion again, with the settings of ``egc_claims.METRICS``, so that the
  metrics that were uninformative sit beside ROAD on the same models and maps (the reference
  models are retrained from their recipes when the weights cache is empty; see ``check``).

Records go to ``<out>/road.jsonl`` (one line per configuration, image and method; the run
resumes). The MPRT sanity check (cascading top-down, Spearman of the absolute maps, the
library's defaults) runs every method on every configuration's model on the first
``--mprt-images`` images and writes ``<out>/mprt.jsonl`` (similarity after each randomised
layer, per image). ``report`` writes ``<out>/road_mprt.md``.

    python benchmarks/egc_claims_road.py road --images 1000     # resumable, round-robin over configs
    python benchmarks/egc_claims_road.py mprt --mprt-images 1000  # resumable per (config, method, batch)
    python benchmarks/egc_claims_road.py report
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections import defaultdict
from pathlib import Path

import egc_claims as E
import torch

from cleargrad.data import load_fashion_mnist
from cleargrad.metrics import deletion, insertion, mprt, prepare_maps, road_lerf, road_morf, sanity_check
from cleargrad.metrics.randomisation import randomisable_layers, randomised_copies
from cleargrad.metrics.similarity import similarity

#: the ROAD settings (library defaults, except exact counts instead of quantile thresholds)
ROAD = {"fractions": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), "noise": 0.01, "selection": "count",
        "score": "prob", "relative": True}
TIE_JITTER = 1e-6  # ties broken at random: + U(0, 1e-6) x the map's largest magnitude (seeded per batch)
ROAD_METRICS = {
    "road_morf": ("lower", "road_morf", ROAD),
    "road_lerf": ("higher", "road_lerf", ROAD),
}
RE_METRICS = {"insertion": E.METRICS["insertion"], "deletion": E.METRICS["deletion"]}
ALL = {**RE_METRICS, **ROAD_METRICS}
ROAD_SEED = 77  # imputation noise: Generator(1000003 * first image + ROAD_SEED), shared by the methods


def original_batches(records: Path) -> dict[tuple[str, str], list[list[int]]]:
    """``(config, method) -> batches of image ids`` as the claims run formed them (file order;
    the rows of one batch are consecutive and share their ``seconds``)."""
    out: dict[tuple[str, str], list[list[int]]] = defaultdict(list)
    prev = None
    for r in E.read_records(records):
        key = (r["config"], r["method"], r["seconds"])
        if key != prev:
            out[(r["config"], r["method"])].append([])
            prev = key
        out[(r["config"], r["method"])][-1].append(r["image"])
    return out


def test_order() -> list[int]:
    return torch.randperm(10000, generator=torch.Generator().manual_seed(0))[:1000].tolist()


def units(batches, configs, methods, n_images: int, block: int = 16) -> list[tuple[str, str, list[int]]]:
    """The work of the pass: ``(config, method, batch)`` for the batches inside the first
    ``n_images`` test images of the claims order, round-robin by blocks of ``block`` images."""
    pos = {i: k for k, i in enumerate(test_order())}
    todo = []
    for c in configs:
        for m in methods:
            for b in batches.get((c, m), []):
                if max(pos[i] for i in b) < n_images:
                    todo.append((min(pos[i] for i in b) // block, configs.index(c), methods.index(m), c, m, b))
    todo.sort(key=lambda u: u[:3])
    return [(c, m, b) for *_, c, m, b in todo]


def jittered(maps: torch.Tensor, seed: int) -> torch.Tensor:
    """``|maps|`` with ties broken at random (ROAD ranks pixels; a ReLU-clipped CAM has many tied zeros)."""
    s = maps.detach().abs().sum(1, keepdim=True) if maps.dim() == 4 else maps.detach().abs()[:, None]
    top = s.flatten(1).amax(1).view(-1, 1, 1, 1)  # an all-zero map stays all zero (undefined, NaN)
    u = torch.rand(s.shape, generator=torch.Generator().manual_seed(seed), dtype=s.dtype)
    return s + TIE_JITTER * top * u


def zero_share(maps: torch.Tensor) -> torch.Tensor:
    s = maps.detach().abs().flatten(1)
    return (s <= 1e-12 * s.amax(1, keepdim=True).clamp(min=1e-30)).double().mean(1)


def score(model, x, t, maps, ids) -> dict[str, torch.Tensor]:
    out = {"zero_share": zero_share(maps)}
    ranked = jittered(maps, 1000003 * ids[0] + ROAD_SEED + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out["insertion"] = insertion(model, x, maps, t, **E.METRICS["insertion"][2])
        out["deletion"] = deletion(model, x, maps, t, **E.METRICS["deletion"][2])
        for k, fn in (("road_morf", road_morf), ("road_lerf", road_lerf)):
            g = torch.Generator().manual_seed(1000003 * ids[0] + ROAD_SEED)
            out[k] = fn(model, x, ranked, t, generator=g, **ROAD)
    return out


def run_road(args) -> None:
    out = Path(args.out)
    path = out / "road.jsonl"
    done = {(r["config"], r["image"], r["method"]) for r in E.read_records(path)}
    batches = original_batches(out / "records.jsonl")
    configs, methods = args.configs.split(","), args.methods.split(",")
    test = load_fashion_mnist("test", normalize=True)
    models, exps = {}, {}
    for c in configs:
        arch, layer = E.CONFIGS[c]
        models.setdefault(arch, E.load_model(arch))
        exps[c] = E.explainers(models[arch], layer)
    todo = [u for u in units(batches, configs, methods, args.images) if any((u[0], i, u[1]) not in done for i in u[2])]
    print(f"{time.strftime('%H:%M:%S')} {len(todo)} batches to do", flush=True)
    for k, (c, m, ids) in enumerate(todo):
        arch, layer = E.CONFIGS[c]
        model = models[arch]
        x = test.images[ids]
        with torch.no_grad():
            t = model(x).argmax(1)
        g = torch.Generator().manual_seed(1000003 * ids[0] + E.METHODS.index(m))
        t0 = time.perf_counter()
        maps = E.make_maps(m, exps[c], model, layer, x, t, g, {})
        t1 = time.perf_counter()
        sc = score(model, x, t, maps, ids)
        t2 = time.perf_counter()
        rows = [{"config": c, "image": i, "method": m, "pred": int(t[j]), "map_seconds": (t1 - t0) / len(ids),
                 "score_seconds": (t2 - t1) / len(ids), **{key: float(v[j]) for key, v in sc.items()}}
                for j, i in enumerate(ids)]
        E.append(path, rows)
        if k % 7 == 6 or k == len(todo) - 1:
            print(f"{time.strftime('%H:%M:%S')} {k + 1}/{len(todo)} batches ({c} {m} at image {ids[0]}; "
                  f"maps {t1 - t0:.1f}s, scores {t2 - t1:.1f}s)", flush=True)


# ----------------------------------------------------------------------------- MPRT


def mprt_explainer(name: str, layer: str, seed: int):
    """``f(model, x, target) -> maps`` built on the model it is given (a randomised copy or
    the original); a stochastic method draws with ``Generator(seed)`` on every call, so the
    maps of the copies differ from the original's by the model only."""
    def fn(model, x, t):
        exps = E.explainers(model, layer)
        return E.make_maps(name, exps, model, layer, x, t, torch.Generator().manual_seed(seed), {})
    return fn


def checkpoints(n_layers: int, n_points: int = 8) -> list[int]:
    """Steps of the cascade after which the maps are compared: the first three (the head),
    about ``n_points`` evenly spaced ones, and the last (the fully randomised model)."""
    pts = {0, 1, 2, n_layers - 1} | {round(k * (n_layers - 1) / n_points) for k in range(1, n_points)}
    return sorted(p for p in pts if 0 <= p < n_layers)


def cascade(model, x, t, fn, seed: int = 0, at: list[int] | None = None):
    """Top-down cascading MPRT with the maps compared at the steps ``at`` only (all steps
    when None): the randomisation is the one of :func:`cleargrad.metrics.mprt` (the same
    copies, layer by layer from the output), so the values at those steps equal its curve.
    Returns ``(curves (N, len(at)), names of the layers randomised last at those steps)``."""
    def maps(m):
        return prepare_maps(fn(m, x, t), x).abs()
    ref = maps(model)
    cols, names = [], []
    steps = randomised_copies(model, order="top_down", seed=seed)
    n_layers = len(randomisable_layers(model))
    keep = set(range(n_layers) if at is None else at)
    for k, (name, work) in enumerate(steps):
        if k in keep:
            cols.append(similarity("spearman", ref, maps(work)))
            names.append(name)
    return torch.stack(cols, 1), names, n_layers


def run_mprt(args) -> None:
    out = Path(args.out)
    path = out / "mprt.jsonl"
    done = {(r["config"], r["image"], r["method"]) for r in E.read_records(path)}
    configs, methods = args.configs.split(","), args.methods.split(",")
    test = load_fashion_mnist("test", normalize=True)
    ids_all = test_order()[: args.mprt_images]
    models = {}
    for start in range(0, len(ids_all), args.mprt_batch):
        ids = ids_all[start : start + args.mprt_batch]
        for c in configs:
            arch, layer = E.CONFIGS[c]
            model = models.setdefault(arch, E.load_model(arch))
            x = test.images[ids]
            with torch.no_grad():
                t = model(x).argmax(1)
            at = checkpoints(len(randomisable_layers(model)), args.mprt_points)
            for m in methods:
                if all((c, i, m) in done for i in ids):
                    continue
                seed = 1000003 * ids[0] + E.METHODS.index(m)
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cur, names, n_layers = cascade(model, x, t, mprt_explainer(m, layer, seed), at=at)
                    # the floor of a stochastic method: two draws on the unchanged model
                    floor = None
                    if m in ("egc", "smooth_gradcam_pp"):
                        a = prepare_maps(mprt_explainer(m, layer, seed)(model, x, t), x).abs()
                        b = prepare_maps(mprt_explainer(m, layer, seed + 1)(model, x, t), x).abs()
                        floor = similarity("spearman", a, b)
                sec = time.perf_counter() - t0
                rows = [{"config": c, "image": i, "method": m, "seconds": sec / len(ids), "steps": at,
                         "n_layers": n_layers, "layers": names, "curve": [float(v) for v in cur[j]],
                         "value": float(cur[j, -1]), **({"two_draws": float(floor[j])} if floor is not None else {})}
                        for j, i in enumerate(ids)]
                E.append(path, rows)
                print(f"{time.strftime('%H:%M:%S')} mprt {c} {m} images {start}+{len(ids)}: {sec:.1f}s "
                      f"({len(at)} of {n_layers} steps)", flush=True)


def check_cascade(args) -> None:
    """The checkpointed cascade against cleargrad.metrics.mprt on a few images (all steps)."""
    test = load_fashion_mnist("test", normalize=True)
    ids = test_order()[:4]
    for c in args.configs.split(","):
        arch, layer = E.CONFIGS[c]
        model = E.load_model(arch)
        x = test.images[ids]
        with torch.no_grad():
            t = model(x).argmax(1)
        fn = mprt_explainer("gradcam_pp", layer, 0)
        res = mprt(model, x, fn, t, return_curves=True, seed=0)
        at = checkpoints(len(res.layers), args.mprt_points)
        cur, names, _ = cascade(model, x, t, fn, at=at)
        ref = res.curves[:, at]
        ok = torch.isfinite(ref)
        same = names == [res.layers[k] for k in at]
        print(c, "max |checkpointed - mprt|", float((cur[ok] - ref[ok]).abs().max()), same)


# ----------------------------------------------------------------------------- report


def mean_se(v):
    return E.mean_se(list(v))


def complete(rows: list[dict]) -> list[dict]:
    """The rows of the images that every method has scored (an interrupted pass leaves a partial block)."""
    have = defaultdict(set)
    for r in rows:
        have[(r["config"], r["image"])].add(r["method"])
    return [{**r, "seconds": r["map_seconds"]} for r in rows if have[(r["config"], r["image"])] >= set(E.METHODS)]


def report(args) -> None:
    out = Path(args.out)
    configs, methods = args.configs.split(","), E.METHODS
    old = E.read_records(out / "records.jsonl")
    new = complete(E.read_records(out / "road.jsonl"))
    stored = {(r["config"], r["image"], r["method"]): r for r in old}
    lines = [
        "# Expected Grad-CAM claims re-judged with ROAD and the MPRT sanity check",
        "",
        "Commands (single thread, `PYTHONPATH=src OMP_NUM_THREADS=1`):",
        "",
        "```",
        f"python benchmarks/egc_claims_road.py road --images {args.images}",
        f"python benchmarks/egc_claims_road.py mprt --mprt-images {args.mprt_images}",
        "python benchmarks/egc_claims_road.py report",
        "```",
        "",
        "ROAD (Rong et al. 2022; `cleargrad.metrics.road_morf` / `road_lerf`): noisy linear imputation (noise "
        "0.01), removal fractions 0.1 ... 0.9, class probability minus the clean image's, averaged over the "
        "fractions (the library's defaults, the paper's and pytorch-grad-cam's); MoRF lower is better, LeRF higher. "
        "One change from the defaults, fixed before any result: `selection=\"count\"` (exactly floor(f H W) "
        "pixels, Quantus's rule) with ties broken at random (+ U(0, 1e-6) x the map's maximum), instead of "
        "quantile thresholds. The CAMs are ReLU-clipped: a quantile threshold removes all tied zero pixels at "
        "once, so at a given fraction a sparse map would have more (MoRF) or fewer (LeRF) pixels removed than a "
        "dense one, whatever its faithfulness (the mean share of exactly-zero pixels per method is in the "
        "last table of each configuration). The same settings for every method; the imputation noise and the "
        "tie-breaking are seeded per batch and shared by the methods of a batch. Insertion and deletion are "
        "recomputed with the claims settings (28-pixel steps, mean-image canvas) on the same models and maps.",
        "",
    ]
    # --- reproduction check: the recomputed insertion / deletion against the stored ones
    lines += ["## Are these the claims run's models and maps?", "",
              "The weights cache of the claims run was gone; `cleargrad.models.fashion_mnist_model` retrained the "
              "reference models from their recipes (the SmallCNN is the shipped one). The table compares the "
              "recomputed deletion / insertion with the stored values (same image, same method).", "",
              "| configuration | test accuracy now (claims run) | prediction agreement | images | deletion: max abs "
              "diff | share equal (1e-5) | insertion: max abs diff |", "|---|---|---|---|---|---|---|"]
    acc_then = {"small-vgg": 0.8430, "small-vgg-long": 0.9094, "cifar-resnet18": 0.8066,
                "cifar-resnet18-long": 0.8846, "small-cnn": 0.9035}
    for c in configs:
        rs = [r for r in new if r["config"] == c]
        if not rs:
            continue
        arch = E.CONFIGS[c][0]
        rec = E.model_record(arch)
        acc = rec.get("test_accuracy")
        if acc is None and arch == "small-cnn":
            acc = 0.9035
        agree = [r["pred"] == stored[(c, r["image"], r["method"])]["pred"] for r in rs if r["method"] == "gradcam"]
        dd = [abs(r["deletion"] - stored[(c, r["image"], r["method"])]["deletion"]) for r in rs
              if math.isfinite(r["deletion"]) and math.isfinite(stored[(c, r["image"], r["method"])]["deletion"])]
        di = [abs(r["insertion"] - stored[(c, r["image"], r["method"])]["insertion"]) for r in rs
              if math.isfinite(r["insertion"]) and math.isfinite(stored[(c, r["image"], r["method"])]["insertion"])]
        lines.append(f"| {c} | {acc:.4f} ({acc_then[arch]:.4f}) | {sum(agree)}/{len(agree)} | {len(agree)} | "
                     f"{max(dd):.2e} | {sum(d < 1e-5 for d in dd) / len(dd):.3f} | {max(di):.2e} |")
    lines += ["", "Where the models were retrained, the stored insertion/deletion/infidelity refer to the earlier "
              "weights; the tables below therefore use the recomputed insertion and deletion (same settings), so that "
              "every column of a table is measured on one model.", ""]
    summary = []
    bodies = []
    for c in configs:
        rows = [r for r in new if r["config"] == c]
        if not rows:
            continue
        text, info = E.tables(rows, c, methods, ALL)
        text = text.replace("s / image", "s / image (maps)")
        zs = {m: E.mean_se([r["zero_share"] for r in rows if r["method"] == m])[0] for m in methods}
        bodies += [f"## {c} ({E.CONFIGS[c][1]})", "", text, "",
                   "Mean share of exactly-zero pixels per map: " + "; ".join(f"{E.LABELS[m]} {v:.2f}"
                                                                         for m, v in zs.items()), ""]
        cells = []
        for m in methods[1:-1]:
            marks = []
            for k in ALL:
                mk = info["verdict"].get((m, k), "")
                word = {"+": "better", "++": "better", "-": "worse", "--": "worse"}.get(mk, "n.s.")
                if not info["flags"][k].startswith("informative"):
                    word += " (uninf.)"
                marks.append(f"{ {'insertion': 'ins', 'deletion': 'del', 'road_morf': 'MoRF', 'road_lerf': 'LeRF'}[k]} "
                             f"{word}")
            cells.append("; ".join(marks))
        flags = "; ".join(f"{k}: {'ok' if v.startswith('informative') else 'UNINF.'} "
                          f"({v.split('(')[-1].rstrip(')') if v.startswith('informative') else v.split(': ')[1]})"
                          for k, v in info["flags"].items())
        _, info_old = E.tables([r for r in old if r["config"] == c], c, methods, E.METRICS)
        uninf = [k for k, v in info_old["flags"].items() if not v.startswith("informative")]
        summary.append(f"| {c} | {info['n']} | " + " | ".join(cells) + f" | {flags} | {', '.join(uninf) or 'none'} |")
    lines += ["## Verdict: Expected Grad-CAM vs each method (paired, 2 s.e.; '(uninf.)': the metric cannot tell "
              "the methods from the random map on this configuration)", "",
              "| configuration | images | " + " | ".join(E.LABELS[m] for m in methods[1:-1]) +
              " | metric vs random map | uninformative in the claims run (1,000 images, earlier weights) |",
              "|" + "---|" * (len(methods) + 2), *summary, ""]
    lines += bodies
    # --- saturation strata (cheap: the per-image measure on the images of the pass)
    if not args.no_strata:
        lines += strata(new, configs)
    lines += mprt_report(out, configs)
    md = "\n".join(lines) + "\n"
    (out / "road_mprt.md").write_text(md)
    print(md)


def strata(new, configs) -> list[str]:
    test = load_fashion_mnist("test", normalize=True)
    lines = ["## Saturation strata (ROAD)", "",
             "Paired difference Expected Grad-CAM − method per third of the images by `completeness` "
             "(`egc_claims.saturation_scores`: Grad-CAM's first-order estimate of the logit change from the zero "
             "image over the true change; low = the local gradient under-represents the change, the case Expected "
             "Grad-CAM is meant for). Mark: + Expected Grad-CAM better beyond 2 s.e.", ""]
    metrics = {k: ALL[k][0] for k in ("road_morf", "road_lerf")}
    for c in configs:
        rows = [r for r in new if r["config"] == c]
        ids = sorted({r["image"] for r in rows if r["method"] == "egc"})
        if len(ids) < 30:
            continue
        arch, layer = E.CONFIGS[c]
        model = E.load_model(arch)
        pred = {r["image"]: r["pred"] for r in rows if r["method"] == "egc"}
        vals = []
        for b in range(0, len(ids), 64):
            chunk = ids[b : b + 64]
            vals += E.saturation_scores(model, test.images[chunk], torch.tensor([pred[i] for i in chunk]),
                                        layer)["completeness"].tolist()
        by = defaultdict(dict)
        for r in rows:
            for k in metrics:
                by[(r["method"], k)][r["image"]] = r[k]
        v_sorted, perm = torch.sort(torch.tensor(vals))
        order = [ids[i] for i in perm.tolist()]
        cuts = [0, len(order) // 3, 2 * len(order) // 3, len(order)]
        lines += [f"### {c} ({layer})", "", "| third (completeness) | vs | " + " | ".join(metrics) + " |",
                  "|---|---|" + "---|" * len(metrics)]
        for j in range(3):
            sel = set(order[cuts[j] : cuts[j + 1]])
            lo, hi = float(v_sorted[cuts[j]]), float(v_sorted[cuts[j + 1] - 1])
            for m in E.METHODS[1:-1]:
                cells = []
                for k, direction in metrics.items():
                    a = {i: v for i, v in by[("egc", k)].items() if i in sel}
                    d, se, _ = E.paired(a, by[(m, k)])
                    cells.append(f"{E.fmt(d, se, 3)} {E.mark(d, se, direction)}".strip())
                lines.append(f"| {['low', 'middle', 'high'][j]} ({lo:.2f} to {hi:.2f}) | {E.LABELS[m]} | "
                             + " | ".join(cells) + " |")
        lines.append("")
    return lines


def mprt_report(out: Path, configs) -> list[str]:
    rows = E.read_records(out / "mprt.jsonl")
    if not rows:
        return []
    lines = ["## MPRT sanity check", "",
             "Cascading top-down model-parameter randomisation (Adebayo et al. 2018; `cleargrad.metrics.mprt`, "
             "every module with `reset_parameters`, from the output down, seed 0), Spearman rank correlation of the "
             "absolute maps with the original model's. **passes** (`sanity_check`): mean + 2 s.e. of the similarity "
             "after full randomisation < 0.5. Undefined similarities (a constant map, e.g. a CAM all zero after its "
             "ReLU) are left out and counted. Stochastic methods draw the same noise for the original and every "
             "copy; 'two draws' = similarity of two draws (seeds s, s+1) on the unchanged model, the floor a "
             "stochastic method can reach. The random map ignores the model: it must fail.", ""]
    lines += ["| configuration | method | images | after the top layer | after 25 % of the layers | after 50 % | "
              "fully randomised | passes | undefined (full) | two draws |", "|" + "---|" * 10]
    curves_md = []
    for c in configs:
        for m in E.METHODS:
            rs = [r for r in rows if r["config"] == c and r["method"] == m]
            if not rs:
                continue
            cur = torch.tensor([r["curve"] for r in rs], dtype=torch.float64)
            n_l = cur.shape[1]

            def col(k, cur=cur):
                v = cur[:, k]
                mu, se, n = E.mean_se(v.tolist())
                return E.fmt(mu, se, 3)
            full = torch.tensor([r["value"] for r in rs])
            undefined = int((~torch.isfinite(full)).sum())
            try:
                v = sanity_check(full)
                verdict = "yes" if v["passes"] else "**NO**"
                fm = f"{v['mean']:.3f} ± {v['se']:.3f}"
            except Exception:  # no finite value
                verdict, fm = "undefined", "n/a"
            td = [r["two_draws"] for r in rs if "two_draws" in r]
            tds = E.fmt(*E.mean_se(td)[:2], 3) if td else ""
            lines.append(f"| {c} | {E.LABELS[m]} | {len(rs)} | {col(0)} | {col(max(0, n_l // 4 - 1))} | "
                         f"{col(max(0, n_l // 2 - 1))} | {fm} | {verdict} | {undefined}/{len(rs)} | {tds} |")
            if m in ("egc", "gradcam", "gradcam_pp", "scorecam"):
                layers = rs[0]["layers"]
                pts = sorted(set([0, 1, 2, 3] + list(range(0, n_l, max(1, n_l // 8))) + [n_l - 1]))
                cells = []
                for k in pts:
                    mu, se, _ = E.mean_se(cur[:, k].tolist())
                    cells.append(f"{layers[k]}: {mu:.2f}")
                curves_md.append(f"- {c}, {E.LABELS[m]}: " + ", ".join(cells))
    lines += ["", "Per-layer curve (mean Spearman after randomising down to and including the named layer; a "
              "selection of the steps, all of them are in `mprt.jsonl`):", "", *curves_md, ""]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["road", "mprt", "report", "check-cascade"])
    p.add_argument("--images", type=int, default=1000, help="road: first test images per configuration")
    p.add_argument("--mprt-images", type=int, default=32)
    p.add_argument("--mprt-batch", type=int, default=16)
    p.add_argument("--mprt-points", type=int, default=8, help="evenly spaced steps of the cascade compared")
    p.add_argument("--configs", default=",".join(E.CONFIGS))
    p.add_argument("--methods", default=",".join(E.METHODS))
    p.add_argument("--out", default="benchmarks/results/egc_claims")
    p.add_argument("--no-strata", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    {"road": run_road, "mprt": run_mprt, "report": report, "check-cascade": check_cascade}[args.command](args)


if __name__ == "__main__":
    main()
