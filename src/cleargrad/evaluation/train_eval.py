"""The CAM faithfulness protocol used to compare a model trained with the
interpretable-gradient loss against a baseline (spec § 4.5; the paper's Tables 1-2).

For each CAM (Grad-CAM, Grad-CAM++, Score-CAM, Ablation-CAM, XGrad-CAM = Axiom-CAM) on the
model's ``layer="auto"`` and each image explained for its true class: min-max normalised
maps; the masked image is ``normalise(denormalise(x) * map)``; AD, AG, AI from the target
probability of the clean and the masked image; insertion from a 5x5 sigma-5 blur and
deletion to zeros, ``8 * W`` pixels per step. Values in %, one per image; an image
whose map is all zero (a blank CAM) gets NaN for every metric and is counted in
``n_blank`` (average with ``nanmean`` and report the count).

Used by ``cleargrad train --evaluate`` and ``benchmarks/interpretable_training.py``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from .settings import EvaluationSettings

__all__ = ["CAMS", "METRICS", "cam_faithfulness", "train_evaluation_settings"]

#: display name -> registered method name
CAMS = {
    "Grad-CAM": "gradcam",
    "Grad-CAM++": "gradcam_pp",
    "Score-CAM": "scorecam",
    "Ablation-CAM": "ablationcam",
    "XGrad-CAM (Axiom-CAM)": "xgradcam",
}
#: metric -> better direction
METRICS = {"AD": "lower", "AG": "higher", "AI": "higher", "INS": "higher", "DEL": "lower"}


def cam_faithfulness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 100,
    cams: dict[str, str] | None = None,
    progress: Any = None,
    settings: EvaluationSettings | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-image AD / AG / AI / INS / DEL (%) of each CAM on ``(x, y)`` (true-class targets).

    Returns ``{cam display name: {"AD": tensor (N,), ..., "seconds_per_image": float,
    "n_blank": int}}``; the metrics are NaN for the ``n_blank`` images with an all-zero map.
    ``progress`` is an optional ``rich`` Progress to report on. ``settings`` (as built by
    ``cleargrad train --evaluate``), when given, sets ``batch_size`` and the CAMs (its
    ``methods``, registered names of :data:`CAMS`).
    """
    from ..cam import AblationCAM, GradCAM, GradCAMPlusPlus, ScoreCAM, XGradCAM
    from ..metrics import deletion, insertion, masked_confidence

    classes = {
        "gradcam": GradCAM,
        "gradcam_pp": GradCAMPlusPlus,
        "scorecam": ScoreCAM,
        "ablationcam": AblationCAM,
        "xgradcam": XGradCAM,
    }
    if settings is not None:
        batch_size = settings.batch_size
        shown_as = {name: shown for shown, name in CAMS.items()}
        cams = {shown_as.get(n, n): n for n in (m.strip() for m in settings.methods.split(",")) if n}
    cams = cams or CAMS
    width = x.shape[-1]
    out: dict[str, dict[str, Any]] = {}
    task = progress.add_task("CAM metrics", total=len(cams)) if progress is not None else None
    for display, name in cams.items():
        cam = classes[name](model, layer="auto")
        t0 = time.perf_counter()
        maps = torch.cat(
            [
                cam.attribute(x[i : i + batch_size], target=y[i : i + batch_size], normalize=True)
                for i in range(0, len(y), batch_size)
            ]
        )
        seconds = (time.perf_counter() - t0) / max(len(y), 1)
        with warnings.catch_warnings():  # blank maps are counted in n_blank instead
            warnings.filterwarnings("ignore", message=r".* is undefined for ", category=RuntimeWarning)
            yc, o = masked_confidence(model, x, maps, y, space="pixel", mean=mean, std=std)
            # without return_curves the curve metrics return the (N,) AUCs
            ins = cast(torch.Tensor, insertion(model, x, maps, y, step=8 * width, substrate="blur", klen=5, sigma=5.0))
            dele = cast(torch.Tensor, deletion(model, x, maps, y, step=8 * width, substrate="zero"))
        eps = torch.finfo(yc.dtype).eps
        blank = o.isnan()
        out[display] = {
            "AD": 100 * (yc - o).clamp(min=0) / (yc + eps),
            "AG": 100 * (o - yc).clamp(min=0) / (1 - yc + eps),
            "AI": torch.where(blank, float("nan"), 100 * (o > yc).double()),
            "INS": 100 * ins.double(),
            "DEL": 100 * dele.double(),
            "seconds_per_image": seconds,
            "n_blank": int(blank.sum()),
        }
        if task is not None:
            progress.update(task, advance=1)
    return out


def train_evaluation_settings(
    model: str, dataset: str, out: Any, *, images: int, seed: int, device: str, batch_size: int = 100
) -> EvaluationSettings:
    """The settings of ``cleargrad train --evaluate``: every CAM of :data:`CAMS`, AD/AG/AI and
    insertion/deletion, the first ``images`` test images for their true class."""
    return EvaluationSettings(
        model=model, dataset=dataset, methods=",".join(CAMS.values()),
        metrics="average_drop,average_gain,average_increase,insertion,deletion", store=out, limit=images,
        target="label", batch_size=batch_size, seed=seed, device=device,
    )
