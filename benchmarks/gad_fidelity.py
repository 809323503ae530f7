"""Do GAD's support models realise the intended distancing? (issue 11, item 1)

Fits the support models of one Fashion-MNIST pair under several training settings and
prints, per support model and group, the intended gain ``α_s``, the realised mean
margin gain over the original model, their ratio (fidelity), the MSE, and the
argmax agreement with the labels and with the original model. One JSON line per
setting is appended to ``--out`` (resumable: settings already there are skipped).

    python benchmarks/gad_fidelity.py --pair 0 6 --train-limit 1000 \
        --configs "lr=1e-5" "lr=1e-4" "lr=1e-3" "lr=1e-3,regress=groups"
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cleargrad.data import load_fashion_mnist
from cleargrad.gad import GAD
from cleargrad.models import small_cnn_fashion_mnist


def _parse(cfg: str) -> dict:
    out = {}
    for part in filter(None, cfg.split(",")):
        k, v = part.split("=")
        for conv in (int, float):
            try:
                v = conv(v)
                break
            except ValueError:
                pass
        out[k] = v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", type=int, nargs=2, default=(0, 6))
    ap.add_argument("--train-limit", type=int, default=1000)
    ap.add_argument("--n-support", type=int, default=4)
    ap.add_argument("--configs", nargs="+", default=["lr=1e-5"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gad_claims/fidelity.jsonl"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = small_cnn_fashion_mnist(quiet=True)
    train = load_fashion_mnist("train", normalize=True)
    keep = (train.labels == args.pair[0]) | (train.labels == args.pair[1])
    x, y = train.images[keep], train.labels[keep]
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[: args.train_limit]
    x, y = x[idx], y[idx]
    done = set()
    if args.out.exists():
        done = {(tuple(r["pair"]), r["config"], r["train_limit"]) for r in map(json.loads, args.out.open())}
    for cfg in args.configs:
        if (tuple(args.pair), cfg, args.train_limit) in done:
            print(f"skip {cfg} (done)")
            continue
        opts = _parse(cfg)
        gad = GAD(model, classes=tuple(args.pair), n_support=args.n_support, progress=False, **opts)
        t0 = time.perf_counter()
        gad.fit((x, y))
        row = {"pair": list(args.pair), "config": cfg, "train_limit": args.train_limit,
               "fit_seconds": time.perf_counter() - t0, "stats": [s.to_dict() for s in gad.stats_[0]]}
        print(f"== {cfg}: fit {row['fit_seconds']:.1f}s")
        for s in gad.stats_[0]:
            items = s.to_dict().items()
            print("   " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in items))
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
