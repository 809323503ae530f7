"""Reference errors of the issue-29 CAMs against pytorch-grad-cam 1.5.7 (the table of
benchmarks/results/cam_new.md), with the models and comparisons of tests/test_cam_new.py.

    PYTHONPATH=src python benchmarks/cam_new_reference.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytorch_grad_cam as pgc
import pytorch_grad_cam.utils.svd_on_activations as svd
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_cam_new as T  # noqa: E402

import cleargrad as cg  # noqa: E402


def err(ours: torch.Tensor, ref: np.ndarray) -> str:
    return f"{float(np.abs(ours[:, 0].numpy() - ref).max()):.1e}"


def main() -> None:
    plain = svd.get_2d_projection
    for name, mod in list(sys.modules.items()):
        if name.startswith("pytorch_grad_cam") and getattr(mod, "get_2d_projection", None) is plain:
            mod.get_2d_projection = svd.get_2d_projection_with_sign_correction
    torch.backends.mha.get_fastpath_enabled = lambda: False
    rows: dict[str, dict[str, str]] = {}
    for mn in T.MODELS:
        model, x = T._model_and_input(mn)
        layer, rt = T.MODELS[mn]
        for meth, (rc, oc, _) in T.METHODS.items():
            tag = ""
            if meth == "shapleycam" and rt is not None:
                r, tag = T._shapley_by_hand(model, layer, rt, x, T.TARGETS), " (by hand)"
            else:
                with sdpa_kernel([SDPBackend.MATH]):
                    r = T._peer(rc, model, layer, rt, x, T.TARGETS)
            rows.setdefault(meth, {})[mn] = err(oc(model, layer=layer).attribute(x, target=T.TARGETS, normalize=True),
                                                r) + tag
        module = dict(model.named_modules())[layer]
        with pgc.FinerCAM(model, [module], reshape_transform=rt) as cam:
            r = cam(x.clone(), targets=None, target_idx=4, alpha=0.7)
        ours = cg.FinerCAM(model, layer=layer).attribute(x, target=[4, 4], normalize=True, alpha=0.7)
        rows.setdefault("finercam", {})[mn] = err(ours, r)
        k = {"resnet18": 256, "vgg11_bn": 512, "vit_b_16": 768}[mn]
        w = torch.rand((2, k), generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2 - 1
        np.random.uniform = lambda low, high, size, w=w: w.numpy().copy()
        r = T._peer(pgc.RandomCAM, model, layer, rt, x, T.TARGETS)
        ours = cg.RandomCAM(model, layer=layer).attribute(
            x, target=T.TARGETS, normalize=True, generator=torch.Generator().manual_seed(5)
        )
        rows.setdefault("randomcam", {})[mn] = err(ours, r)
        with pgc.FullGrad(model, []) as cam:
            r = cam(x.clone(), targets=[ClassifierOutputTarget(t) for t in T.TARGETS])
        rows.setdefault("fullgrad", {})[mn] = err(cg.FullGrad(model).attribute(x, target=T.TARGETS, normalize=True), r)
    print("| method | " + " | ".join(T.MODELS) + " |")
    print("|---|" + "---|" * len(T.MODELS))
    for m, d in rows.items():
        print(f"| {m} | " + " | ".join(d[k] for k in T.MODELS) + " |")


if __name__ == "__main__":
    main()
