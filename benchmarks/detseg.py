"""Grad-CAM and Integrated Gradients on a detector and a segmentation model: cleargrad
against pytorch-grad-cam (Grad-CAM) and Captum (IG) on the same model, input and target.

Random-init torchvision models with batch-norm statistics of random images (as in
tests/detseg_zoo.py): Faster R-CNN MobileNetV3-320-FPN at 128² (box targets of each image's
top detection, IoU + score), DeepLabV3-MobileNetV3 at 128² (the summed logits of each
image's most-predicted class over its pixels). Ours and the peer alternate within each
repeat; the table gives the median of the per-repeat ratios ours / peer (< 1: we are faster).

    PYTHONPATH=src:tests OMP_NUM_THREADS=1 python benchmarks/detseg.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from captum.attr import IntegratedGradients as CaptumIG
from detseg_zoo import OutTensor, calibrate_batchnorm
from pytorch_grad_cam import GradCAM as PGGradCAM
from pytorch_grad_cam.utils import model_targets as mt
from torchvision.models import detection, segmentation

import cleargrad as cg


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=16, help="IG steps")
    a = p.parse_args()
    torch.manual_seed(0)
    s, n = a.size, a.batch
    x = torch.rand(n, 3, s, s, generator=torch.Generator().manual_seed(1))
    rows: list[tuple[str, list[float], list[float]]] = []

    seg = calibrate_batchnorm(segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=4, aux_loss=False), s)
    with torch.no_grad():
        pred = seg(x)["out"].argmax(1)
    classes = [int(q.flatten().mode().values) for q in pred]
    masks = [(q == c).float() for q, c in zip(pred, classes)]
    ours_t = [cg.SegmentationTarget(c, m) for c, m in zip(classes, masks)]
    peer_t = [mt.SemanticSegmentationTarget(c, m.numpy()) for c, m in zip(classes, masks)]
    layer = "backbone.16"
    module = dict(seg.named_modules())[layer]
    wrapped = OutTensor(seg)

    def seg_gc_ours():
        cg.GradCAM(seg, layer=layer, output="out").attribute(x, target=ours_t)

    def seg_gc_peer():
        with PGGradCAM(model=wrapped, target_layers=[module]) as cam:
            cam(x.clone(), targets=peer_t)

    def seg_fn(out: torch.Tensor) -> torch.Tensor:
        return torch.stack([(out[i, c] * m).sum() for i, (c, m) in enumerate(zip(classes, masks))])

    def seg_ig_ours():
        cg.IntegratedGradients(seg, output="out").attribute(x, target=ours_t, n_steps=a.steps)

    def seg_ig_peer():
        # Captum's forward function returns one score per row; its rows are steps x images
        def fwd(inp: torch.Tensor) -> torch.Tensor:
            out = seg(inp)["out"]
            k = torch.arange(inp.shape[0]) % n
            return torch.stack([(out[r, classes[k[r]]] * masks[k[r]]).sum() for r in range(inp.shape[0])])
        CaptumIG(fwd).attribute(x, baselines=0.0, n_steps=a.steps, method="gausslegendre",
                                internal_batch_size=n * a.steps)

    det = calibrate_batchnorm(detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0, box_detections_per_img=10,
        min_size=s, max_size=s), s)
    with torch.no_grad():
        dets = det(list(x))
    box_t = cg.BoxScoreTarget.from_detections(dets, top=1)
    box_peer = [mt.FasterRCNNBoxScoreTarget(list(t.labels), t.boxes.numpy()) for t in box_t]
    dlayer = "backbone.body.16"
    dmodule = dict(det.named_modules())[dlayer]

    def det_gc_ours():
        cg.GradCAM(det, layer=dlayer).attribute(x, target=box_t)

    def det_gc_peer():
        with PGGradCAM(model=det, target_layers=[dmodule]) as cam:
            cam(x.clone(), targets=box_peer)

    cases = [
        ("DeepLabV3-MNv3 Grad-CAM vs pytorch-grad-cam", seg_gc_ours, seg_gc_peer),
        (f"DeepLabV3-MNv3 IG ({a.steps} steps) vs Captum", seg_ig_ours, seg_ig_peer),
        ("Faster R-CNN MNv3 Grad-CAM vs pytorch-grad-cam", det_gc_ours, det_gc_peer),
    ]
    for name, ours, peer in cases:
        ours()
        peer()  # warm-up
        to, tp = [], []
        for r in range(a.repeats):
            if r % 2:
                tp.append(_time(peer))
                to.append(_time(ours))
            else:
                to.append(_time(ours))
                tp.append(_time(peer))
        rows.append((name, to, tp))
    print(f"batch {n}, {s}x{s}, threads {torch.get_num_threads()}, repeats {a.repeats} (alternating)\n")
    print("| case | ours s (median) | peer s (median) | ours / peer (median of repeats) |")
    print("|---|---|---|---|")
    for name, to, tp in rows:
        ratio = statistics.median(o / q for o, q in zip(to, tp))
        print(f"| {name} | {statistics.median(to):.3f} | {statistics.median(tp):.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
