"""Small reference architectures (SmallCNN, SmallVGG, CIFAR-style ResNet-18 and MobileNet-V2), a
name registry for them, a training loop, and locally trained reference weights."""

from .mobilenet import CifarMobileNetV2, cifar_mobilenet_v2
from .pretrained import (
    RESNET_RECIPE,
    VGG_RECIPE,
    FashionMNISTRecipe,
    fashion_mnist_model,
    fashion_mnist_model_record,
    shipped_record,
    small_cnn_fashion_mnist,
    small_cnn_fashion_mnist_record,
)
from .registry import build_model, model_names
from .resnet import BasicBlock, CifarResNet, cifar_resnet18
from .small_cnn import SmallCNN
from .training import TrainResult, evaluate_accuracy, train_classifier
from .vgg import SmallVGG
from .weights_cache import WeightsCache, cache_root, config_key

__all__ = [
    "BasicBlock",
    "CifarMobileNetV2",
    "CifarResNet",
    "FashionMNISTRecipe",
    "RESNET_RECIPE",
    "SmallVGG",
    "VGG_RECIPE",
    "SmallCNN",
    "TrainResult",
    "WeightsCache",
    "build_model",
    "cache_root",
    "cifar_mobilenet_v2",
    "cifar_resnet18",
    "config_key",
    "evaluate_accuracy",
    "fashion_mnist_model",
    "fashion_mnist_model_record",
    "model_names",
    "shipped_record",
    "small_cnn_fashion_mnist",
    "small_cnn_fashion_mnist_record",
    "train_classifier",
]
