"""Draw docs/figures/detseg.png: Grad-CAM through a segmentation and a detection target on
scikit-image photos, with random-init torchvision models (labelled so).

    PYTHONPATH=src python scripts/detseg_figure.py
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from skimage import data  # noqa: E402

import cleargrad as cg  # noqa: E402


def calibrate(model: torch.nn.Module, size: int) -> torch.nn.Module:
    """Batch-norm statistics of random images (random-init demo only)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    with torch.no_grad():
        model(torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(0)))
    for bn in bns:
        bn.eval()
    return model


def photo(img, size: int) -> torch.Tensor:
    t = torch.as_tensor(img).permute(2, 0, 1).float().div(255)[None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)


def main() -> None:
    torch.manual_seed(0)
    xs = torch.cat([photo(data.astronaut(), 128), photo(data.chelsea(), 128), photo(data.coffee(), 128)])
    seg = calibrate(torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3, aux_loss=False).eval(), 128)
    with torch.no_grad():
        pred = seg(xs)["out"].argmax(1)
    classes = [int(p.flatten().mode().values) for p in pred]
    seg_maps = cg.GradCAM(seg, layer="backbone.16", output="out").attribute(
        xs, target=[cg.SegmentationTarget(c, p == c) for c, p in zip(classes, pred)])
    det = calibrate(torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0).eval(), 128)
    with torch.no_grad():
        dets = det(list(xs))
    targets = cg.BoxScoreTarget.from_detections(dets, top=1)
    det_maps = cg.GradCAM(det, layer="backbone.body.16").attribute(xs, target=targets)
    fig, axes = plt.subplots(2, 3, figsize=(9, 6.4))
    for j in range(3):
        img = xs[j].permute(1, 2, 0).numpy()
        rows = ((seg_maps, f"DeepLabV3 seg:{classes[j]}"), (det_maps, "Faster R-CNN box:0"))
        for i, (maps, title) in enumerate(rows):
            m = maps[j, 0]
            m = (m - m.min()) / (m.max() - m.min() + 1e-12)
            ax = axes[i, j]
            ax.imshow(img)
            ax.imshow(m.numpy(), cmap="jet", alpha=0.45)
            if i == 1:
                b = targets[j].boxes[0].tolist()
                ax.add_patch(plt.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, color="w", lw=1.5))
            ax.set_title(f"Grad-CAM, {title}", fontsize=9)
            ax.axis("off")
    fig.suptitle("RANDOM INIT models (weights=None): the maps show the mechanics, not learned evidence", fontsize=10)
    fig.tight_layout()
    fig.savefig("docs/figures/detseg.png", dpi=90)


if __name__ == "__main__":
    main()
