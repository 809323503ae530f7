"""Fit the default demo's GAD on the shipped reference SmallCNN and ship it in the package
(``src/cleargrad/evaluation/demo_gad``: ``gad.json``, ``support.safetensors`` and ``record.json``
with the cache key and the files' SHA-256), so that ``make demo`` does not fit it.

    python benchmarks/ship_demo_gad.py            # fits (or takes the cached fit), then copies

Rerun it whenever a GAD default or the demo's GAD settings change: the demo only uses the
shipped fit when its key (every GAD setting, the training images and the model's weights)
matches, and fits it otherwise.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time

from cleargrad.evaluation.console import UI
from cleargrad.evaluation.demo import SHIPPED_GAD, DemoSettings, fit_or_load_gad, gad_key
from cleargrad.models import cache_root, small_cnn_fashion_mnist


def main() -> None:
    settings = DemoSettings()
    model = small_cnn_fashion_mnist()
    key = gad_key(model, settings)
    t0 = time.perf_counter()
    fit_or_load_gad(model, settings, UI())
    seconds = time.perf_counter() - t0
    folder = cache_root() / "gad" / key
    SHIPPED_GAD.mkdir(exist_ok=True)
    for name in ("gad.json", "support.safetensors"):
        shutil.copyfile(folder / name, SHIPPED_GAD / name)
    record = {
        "key": key,
        "what": "GAD of the shipped SmallCNN for the default DemoSettings "
        f"(pair {list(settings.pair)}, {settings.gad_base} base, {settings.gad_support} support models, "
        f"{settings.gad_epochs} epochs, {settings.gad_train_images} training images, seed {settings.seed}, "
        "library defaults otherwise), fitted by benchmarks/ship_demo_gad.py",
        "sha256": {
            n: hashlib.sha256((SHIPPED_GAD / n).read_bytes()).hexdigest() for n in ("gad.json", "support.safetensors")
        },
        "fit_seconds": json.loads((SHIPPED_GAD / "gad.json").read_text()).get("fit_time", seconds),
    }
    (SHIPPED_GAD / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"shipped {key} to {SHIPPED_GAD} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
