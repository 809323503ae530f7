"""Random-init torchvision detection and segmentation models at test sizes, with the layer
each recipe of docs/guides/detection-segmentation.md explains.

A random-init backbone whose batch norms hold their initial statistics (mean 0, variance
1) shrinks its activations block after block: Faster R-CNN's and SSDlite's MobileNetV3 give
gradients of 1e-13 or less, and every map is numerically zero. :func:`calibrate_batchnorm`
gives the batch norms the statistics of a few random images (one forward in eval mode with
the batch norms accumulating), which keeps activations of order one, as trained weights do.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class OutTensor(nn.Module):
    """A torchvision segmenter with its ``"out"`` tensor as the output (pytorch-grad-cam needs
    a tensor; its segmentation tutorial wraps the model so)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)["out"]


def calibrate_batchnorm(model: nn.Module, size: int, seed: int = 0, n: int = 8) -> nn.Module:
    """Eval-mode ``model`` whose batch norms hold the statistics of ``n`` random images."""
    model.eval()
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration forward
        bn.train()
    with torch.no_grad():
        model(torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)))
    for bn in bns:
        bn.momentum = 0.1
        bn.eval()
    return model


def _det(name: str) -> Callable[[], nn.Module]:
    from torchvision.models import detection as D

    few = {"rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50}  # R-CNN proposals: 1000 by default
    small = {"min_size": 96, "max_size": 96}
    builders = {
        "fasterrcnn_mobilenet_v3_large_320_fpn": lambda: D.fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0, box_detections_per_img=10,
            **small, **few),
        "retinanet_resnet50_fpn": lambda: D.retinanet_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=5, score_thresh=0.0, detections_per_img=10, **small),
        "fcos_resnet50_fpn": lambda: D.fcos_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=5, score_thresh=0.0, detections_per_img=10, **small),
        "ssdlite320_mobilenet_v3_large": lambda: D.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=5, score_thresh=0.0, detections_per_img=10),
        "maskrcnn_resnet50_fpn": lambda: D.maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0, box_detections_per_img=5,
            **small, **few),
    }
    return builders[name]


#: detector -> the CAM layer of its recipe (the backbone's last block: one map, not the FPN's dict)
DETECTORS: dict[str, str] = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": "backbone.body.16",
    "retinanet_resnet50_fpn": "backbone.body.layer4",
    "fcos_resnet50_fpn": "backbone.body.layer4",
    "ssdlite320_mobilenet_v3_large": "backbone.features.1",
    "maskrcnn_resnet50_fpn": "backbone.body.layer4",
}

#: segmentation model -> the CAM layer of its recipe (the backbone's last block)
SEGMENTERS: dict[str, str] = {
    "fcn_resnet50": "backbone.layer4",
    "deeplabv3_mobilenet_v3_large": "backbone.16",
    "deeplabv3_resnet50": "backbone.layer4",
    "lraspp_mobilenet_v3_large": "backbone.16",
}

DET_SIZE = 96
SEG_SIZE = 64


def detector(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return calibrate_batchnorm(_det(name)(), DET_SIZE, seed, n=2)


def segmenter(name: str, seed: int = 0, num_classes: int = 4, n: int = 8) -> nn.Module:
    from torchvision.models import segmentation as S

    torch.manual_seed(seed)
    model = getattr(S, name)(weights=None, weights_backbone=None, num_classes=num_classes)
    return calibrate_batchnorm(model, SEG_SIZE, seed, n=n)


YOLO_SIZE = 64
#: ultralytics DetectionModel -> the CAM layer of its recipe (SPPF, the backbone's last module)
YOLO_LAYER = "model.9"


def yolo(seed: int = 0) -> nn.Module:
    """ultralytics YOLOv8n built from the YAML the package ships (no download), 5 classes."""
    from PIL import Image

    open_before = Image.open
    try:
        from ultralytics.nn.tasks import DetectionModel
    finally:
        # importing ultralytics replaces PIL.Image.open process-wide (a HEIF fallback that
        # tries to pip-install pi-heif on an unidentified file): keep it out of other tests
        Image.open = open_before

    torch.manual_seed(seed)
    return calibrate_batchnorm(DetectionModel("yolov8n.yaml", nc=5, verbose=False), YOLO_SIZE, seed)
