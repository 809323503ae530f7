"""The GAD claims re-judged with ROAD and the MPRT sanity check (issue 30, item 5).

Uses the fits and maps of ``benchmarks/gad_claims.py final`` (cached under ``--cache``;
fitted when absent) with the settings of ``benchmarks/results/gad_claims/gad_claims.md``
(train preset ``bntrain``, tau 0.3, combine ``mask``, S = 4, fit seeds 0 1 2, the same test
images per pair). Per pair, base method and image, four rankings of the pixels are scored
with ROAD MoRF / LeRF (the settings of ``egc_claims_road.ROAD``: noisy linear imputation,
exact counts, ties broken at random, class probability of the explained class relative to
the clean image):

- ``base``: the base method's normalised map of the original model;
- ``ctrl``: the threshold-only control (``n_support=0``, the same tau): the base map with its
  pixels below tau set to 0;
- ``gad``: the fused GAD map (S support models);
- ``gad_lex``: the GAD map with its zero pixels ordered by the base map (kept pixels first,
  then the rest as the base map ranks them). A threshold does not change the order of the
  pixels it keeps, so the same construction for the control is exactly ``base``.

The MPRT sanity check (cascading top-down, Spearman of the absolute maps) randomises the
original model *and* each support model in lockstep (the same layer at each step, the same
seed: the support models are fine-tuned copies of the model), for the base map, the control
and the GAD map, on the first ``--mprt-images`` images of each pair (fit seed 0).

    python benchmarks/gad_claims_road.py road --n-eval 100
    python benchmarks/gad_claims_road.py mprt --mprt-images 20
    python benchmarks/gad_claims_road.py report
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

import egc_claims as E
import gad_claims as G
import torch
from egc_claims_road import ROAD, jittered

from cleargrad.core.registry import make_method
from cleargrad.gad import fuse
from cleargrad.metrics import road_lerf, road_morf, sanity_check
from cleargrad.metrics.randomisation import randomised_copies
from cleargrad.metrics.similarity import similarity

VARIANTS = ["base", "ctrl", "gad", "gad_lex"]
LABELS = {"base": "base map", "ctrl": "threshold-only control", "gad": "GAD",
          "gad_lex": "GAD, zeros ranked by the base map"}


def gad_args(a) -> argparse.Namespace:
    """The settings of the ``final`` run behind gad_claims.md."""
    ns = argparse.Namespace(
        train=["bntrain"], seeds=a.seeds, pairs=[tuple(int(c) for c in p.split("-")) for p in a.pairs],
        n_eval=a.n_eval, train_limit=500, epochs=10, n_support=4, tau=0.3, combine="mask", grouping="single",
        ig_steps=32, bases=a.bases, batch=20, threads=1, quick=False, out=Path("benchmarks/results/gad_claims"),
        cache=Path(a.cache))
    if a.smoke:  # a tiny fit, to try the script: not the claims' settings
        ns.train, ns.train_limit, ns.epochs, ns.n_support = ["new"], 60, 1, 2
        ns.out, ns.cache = Path("/tmp/gad_claims_road_smoke"), Path("/tmp/gad_claims_road_smoke/cache")
        ns.out.mkdir(parents=True, exist_ok=True)
    return ns


def variants(maps: torch.Tensor, tau, combine, n_support) -> dict[str, torch.Tensor]:
    base = maps[:, :1]
    gad = fuse([maps[:, j : j + 1] for j in range(n_support + 1)], tau=tau, combine=combine)
    ctrl = fuse([base], tau=tau, combine=combine)
    # kept pixels (>= tau of the maximum, so >= 0.3) first, then the others by the base map
    lex = torch.where(gad > 0, gad, 0.01 * base)
    return {"base": base, "ctrl": ctrl, "gad": gad, "gad_lex": lex}


def run_road(a) -> None:
    args = gad_args(a)
    model, train, test = G.setup(args)
    path = args.out / "road.jsonl"
    done = {(r["pair"], r["seed"], r["base"]) for r in E.read_records(path)}
    for seed in args.seeds:
        for pair in args.pairs:
            xf, yf, xe, ye = G.split_pair(train, test, pair, args.train_limit, args.n_eval, "test")
            pname = f"{pair[0]}-{pair[1]}"
            if all((pname, seed, b) in done for b in args.bases):
                continue
            t0 = time.perf_counter()
            gad, fit_s = G.fitted(model, pair, seed, args.train[0], args, xf, yf)
            print(f"{time.strftime('%H:%M:%S')} {pname} seed {seed}: fit {fit_s:.0f}s "
                  f"(this call {time.perf_counter() - t0:.0f}s)", flush=True)
            for base in args.bases:
                if (pname, seed, base) in done:
                    continue
                t1 = time.perf_counter()
                maps, _ = G.all_maps(gad, base, xe, ye, args, f"test-{pair[0]}-{pair[1]}-s{seed}-{args.train[0]}")
                v = variants(maps, args.tau, args.combine, args.n_support)
                rows = [{"pair": pname, "seed": seed, "base": base, "image": i, "label": int(ye[i])}
                        for i in range(len(ye))]
                for name, m in v.items():
                    if name in ("base", "ctrl") and seed != args.seeds[0]:
                        continue  # they do not depend on the fit seed: scored with the first seed only
                    for k, fn in (("road_morf", road_morf), ("road_lerf", road_lerf)):
                        vals = []
                        for b in range(0, len(ye), 20):
                            sl = slice(b, b + 20)
                            g = torch.Generator().manual_seed(1000003 * (seed + 1) + 7919 * pair[0] + b)
                            with warnings.catch_warnings():
                                warnings.simplefilter("ignore", RuntimeWarning)
                                vals.append(fn(model, xe[sl], jittered(m[sl], 31 * b + seed), ye[sl], generator=g,
                                               **ROAD))
                        for r, val in zip(rows, torch.cat(vals).tolist()):
                            r[f"{name}/{k}"] = val
                E.append(path, rows)
                print(f"{time.strftime('%H:%M:%S')}   {base}: {time.perf_counter() - t1:.0f}s", flush=True)


def _base_maps(models, base, opts, x, t):
    out = []
    for m in models:
        inst, o = make_method(m, base, **opts)
        out.append(inst.attribute(x, target=t, **o))
    return out


def run_mprt(a) -> None:
    args = gad_args(a)
    model, train, test = G.setup(args)
    path = args.out / "mprt.jsonl"
    done = {(r["pair"], r["base"]) for r in E.read_records(path)}
    seed = args.seeds[0]
    for pair in args.pairs:
        xf, yf, xe, ye = G.split_pair(train, test, pair, args.train_limit, args.n_eval, "test")
        x, t = xe[: a.mprt_images], ye[: a.mprt_images]
        pname = f"{pair[0]}-{pair[1]}"
        gad, _ = G.fitted(model, pair, seed, args.train[0], args, xf, yf)
        task = gad._explained()[int(pair[0])]
        models = [model, *gad.support_models_[task]]
        for base in args.bases:
            if (pname, base) in done:
                continue
            t0 = time.perf_counter()
            opts = {"n_steps": args.ig_steps} if base == "integrated_gradients" else {}

            def explain(ms, base=base, opts=opts, x=x, t=t):
                maps = _base_maps(ms, base, opts, x, t)
                fused, norm = fuse(maps, args.tau, args.combine, return_maps=True)
                v = variants(norm, args.tau, args.combine, args.n_support)
                v["gad"] = fused
                return {k: v[k].abs() for k in ("base", "ctrl", "gad")}

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = explain(models)
                curves = {k: [] for k in ref}
                names = []
                gens = [randomised_copies(m, order="top_down", seed=0) for m in models]
                for steps in zip(*gens):
                    assert len({s[0] for s in steps}) == 1, "support models must have the model's layers"
                    names.append(steps[0][0])
                    out = explain([s[1] for s in steps])
                    for k in ref:
                        curves[k].append(similarity("spearman", ref[k], out[k]))
            sec = time.perf_counter() - t0
            rows = [{"pair": pname, "seed": seed, "base": base, "image": i, "layers": names, "seconds": sec / len(t),
                     **{f"{k}/curve": [float(c[i]) for c in curves[k]] for k in curves}} for i in range(len(t))]
            E.append(path, rows)
            print(f"{time.strftime('%H:%M:%S')} mprt {pname} {base}: {sec:.0f}s ({len(names)} layers)", flush=True)


# ----------------------------------------------------------------------------- report


def _ms(v) -> str:
    mu, se, n = E.mean_se(list(v))
    return E.fmt(mu, se, 3)


def report(a) -> None:
    args = gad_args(a)
    rows = E.read_records(args.out / "road.jsonl")
    lines = [
        "# GAD claims re-judged with ROAD and the MPRT sanity check",
        "",
        "Commands (single thread, `PYTHONPATH=src OMP_NUM_THREADS=1`):",
        "",
        "```",
        f"python benchmarks/gad_claims_road.py road --n-eval {a.n_eval} --seeds {' '.join(map(str, a.seeds))}",
        f"python benchmarks/gad_claims_road.py mprt --mprt-images {a.mprt_images}",
        "python benchmarks/gad_claims_road.py report",
        "```",
        "",
        "Settings of `gad_claims.md` (train preset bntrain, tau 0.3, combine mask, S = 4, test images per pair as "
        "there; explained class = true class). ROAD as in `benchmarks/results/egc_claims/road_mprt.md` (noisy linear "
        "imputation, noise 0.01, fractions 0.1 ... 0.9, exactly floor(f H W) pixels, ties broken at random, class "
        "probability relative to the clean image; MoRF lower is better, LeRF higher). The fits were redone in this "
        "session (the fit cache of the claims run was gone); same recipe and seeds.",
        "",
        "Maps: **base** = the base method's normalised map; **ctrl** = threshold-only control (pixels below tau "
        "zeroed); **GAD** = the fused map; **GAD-lex** = GAD with its zero pixels ranked by the base map (a "
        "threshold keeps the order of what it keeps, so the control built the same way is exactly the base map). "
        "GAD and ctrl are sparse: beyond their kept pixels ROAD removes pixels in random order.",
        "",
        "Per pair and base: mean ± s.e. over the fit seeds of the per-seed means (base and ctrl do not depend on "
        "the seed: scored with seed 0's run only, mean ± s.e. over images); Δ = paired per image (averaged over "
        "the seeds per image), mean ± s.e. over images, * beyond 2 s.e.",
        "",
    ]
    for k, direction in (("road_morf", "lower"), ("road_lerf", "higher")):
        lines += [f"## ROAD {'MoRF (lower is better)' if k == 'road_morf' else 'LeRF (higher is better)'}", "",
                  "| pair | base | seeds | images | base | ctrl | GAD | GAD-lex | Δ GAD − base | Δ GAD − ctrl | "
                  "Δ GAD-lex − base |", "|" + "---|" * 11]
        overall = {}
        for pair in args.pairs:
            pname = f"{pair[0]}-{pair[1]}"
            for base in args.bases:
                rs = [r for r in rows if r["pair"] == pname and r["base"] == base]
                if not rs:
                    continue
                seeds = sorted({r["seed"] for r in rs})
                imgs = sorted({r["image"] for r in rs})
                per_img = {v: {i: [r.get(f"{v}/{k}") for r in rs if r["image"] == i] for i in imgs} for v in VARIANTS}
                avg = {v: {i: _nanavg(per_img[v][i]) for i in imgs} for v in VARIANTS}
                seed_means = {v: [_nanavg([r.get(f"{v}/{k}") for r in rs if r["seed"] == s]) for s in seeds]
                              for v in VARIANTS}
                cells = []
                for v in VARIANTS:
                    cells.append(_ms(avg[v].values()) if v in ("base", "ctrl") else _ms(seed_means[v]))
                diffs = []
                for x, y in (("gad", "base"), ("gad", "ctrl"), ("gad_lex", "base")):
                    d, se, n = E.paired(avg[x], avg[y])
                    overall.setdefault((x, y), []).extend(avg[x][i] - avg[y][i] for i in imgs)
                    diffs.append(f"{E.fmt(d, se, 3)}{'*' if abs(d) > 2 * se else ''} {E.mark(d, se, direction)}")
                lines.append(f"| {G._pair_name(pair)} | {base} | {len(seeds)} | {len(imgs)} | " + " | ".join(cells)
                             + " | " + " | ".join(diffs) + " |")
        lines += ["", "All pairs and bases pooled (per image, averaged over seeds): " + "; ".join(
            f"{x} − {y} {_ms(v)}" for (x, y), v in overall.items()), ""]
    lines += mprt_report(args)
    md = "\n".join(lines) + "\n"
    (args.out / "road_mprt.md").write_text(md)
    print(md)


def _nanavg(v) -> float:
    v = [a for a in v if a is not None and math.isfinite(a)]
    return sum(v) / len(v) if v else float("nan")


def mprt_report(args) -> list[str]:
    rows = E.read_records(args.out / "mprt.jsonl")
    if not rows:
        return []
    lines = ["## MPRT sanity check (GAD maps vs the base method)", "",
             "Cascading top-down randomisation of the original model and the S support models in lockstep (the "
             "same layer, the same seed at each step), Spearman of the absolute maps with the maps of the trained "
             "models; fit seed 0. passes: mean + 2 s.e. of the similarity after full randomisation < 0.5 "
             "(`cleargrad.metrics.sanity_check`). Undefined (constant map, e.g. an empty GAD intersection) left out "
             "and counted.", "",
             "| pair | base | images | map | after the top layer | half of the layers | fully randomised | passes | "
             "undefined |", "|" + "---|" * 9]
    for pair in args.pairs:
        pname = f"{pair[0]}-{pair[1]}"
        for base in args.bases:
            rs = [r for r in rows if r["pair"] == pname and r["base"] == base]
            if not rs:
                continue
            for v in ("base", "ctrl", "gad"):
                cur = torch.tensor([r[f"{v}/curve"] for r in rs], dtype=torch.float64)
                full = cur[:, -1]
                und = int((~torch.isfinite(full)).sum())
                try:
                    s = sanity_check(full)
                    fm, ok = f"{s['mean']:.3f} ± {s['se']:.3f}", "yes" if s["passes"] else "**NO**"
                except Exception:
                    fm, ok = "n/a", "undefined"
                half = cur.shape[1] // 2 - 1
                lines.append(f"| {G._pair_name(pair)} | {base} | {len(rs)} | {LABELS[v]} | {_ms(cur[:, 0].tolist())} | "
                             f"{_ms(cur[:, half].tolist())} | {fm} | {ok} | {und}/{len(rs)} |")
    lines.append("")
    layers = rows[0]["layers"]
    lines += [f"Layers, in randomisation order: {', '.join(layers)}.", ""]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["road", "mprt", "report"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--pairs", nargs="+", default=[f"{a}-{b}" for a, b in G.PAIRS])
    p.add_argument("--bases", nargs="+", default=G.BASES)
    p.add_argument("--n-eval", type=int, default=100)
    p.add_argument("--mprt-images", type=int, default=20)
    p.add_argument("--smoke", action="store_true", help="tiny fit under /tmp (tries the script)")
    p.add_argument("--cache", default=str(Path.home() / ".cache/cleargrad/gad_claims"))
    a = p.parse_args()
    torch.set_num_threads(1)
    {"road": run_road, "mprt": run_mprt, "report": report}[a.command](a)


if __name__ == "__main__":
    main()
