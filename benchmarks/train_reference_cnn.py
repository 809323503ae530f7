"""Train (or load) the reference SmallCNN on Fashion-MNIST and print time and accuracy.

    .venv/bin/python benchmarks/train_reference_cnn.py              # default recipe, default cache
    .venv/bin/python benchmarks/train_reference_cnn.py --retrain     # train again even if cached
    .venv/bin/python benchmarks/train_reference_cnn.py --quick       # tiny recipe into a temporary cache
    .venv/bin/python benchmarks/train_reference_cnn.py --retrain --ship  # retrain, then copy the weights
                                                                         # into the package (models/reference/)

Runs with ``--threads`` torch threads (default 2, the CI machine). The second part
times a cached load.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from cleargrad.models import FashionMNISTRecipe, small_cnn_fashion_mnist, small_cnn_fashion_mnist_record
from cleargrad.models.pretrained import write_shipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny recipe (a few steps) into a temporary cache")
    ap.add_argument("--retrain", action="store_true", help="train even when cached weights exist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--ship", action="store_true",
                    help="copy the trained weights and their record into src/cleargrad/models/reference/")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = FashionMNISTRecipe()
    cache = args.cache_dir
    if args.quick:
        recipe = FashionMNISTRecipe(width=4, epochs=1, train_limit=2000, test_limit=1000, max_steps=20)
        cache = cache or tempfile.mkdtemp(prefix="cleargrad-quick-")
    t0 = time.perf_counter()
    small_cnn_fashion_mnist(cache, recipe, retrain=args.retrain, quiet=args.quiet, device="cpu")
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    small_cnn_fashion_mnist(cache, recipe, quiet=True, device="cpu")
    second = time.perf_counter() - t0
    rec = small_cnn_fashion_mnist_record(cache, recipe) or {}
    if args.ship and not args.quick:
        shipped = write_shipped(cache)
        print(f"shipped weights: sha256 {shipped['sha256'][:16]}..., key {shipped['key']}")
    print("| recipe | threads | first call s | train s (recorded) | test accuracy | cached load s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {'quick' if args.quick else 'default'} | {rec.get('torch_threads')} | {first:.1f} | "
        f"{rec.get('train_seconds')} | {rec.get('test_accuracy', float('nan')):.4f} | {second:.3f} |"
    )


if __name__ == "__main__":
    main()
