"""Small reference architectures (SmallCNN, CIFAR-style ResNet-18 and MobileNet-V2), a
name registry for them, a training loop, and locally trained reference weights."""

from .mobilenet import CifarMobileNetV2, cifar_mobilenet_v2
from .pretrained import FashionMNISTRecipe, small_cnn_fashion_mnist, small_cnn_fashion_mnist_record
from .registry import build_model, model_names
from .resnet import BasicBlock, CifarResNet, cifar_resnet18
from .small_cnn import SmallCNN
from .training import TrainResult, evaluate_accuracy, train_classifier
from .weights_cache import WeightsCache, cache_root, config_key

__all__ = [
    "BasicBlock",
    "CifarMobileNetV2",
    "CifarResNet",
    "FashionMNISTRecipe",
    "SmallCNN",
    "TrainResult",
    "WeightsCache",
    "build_model",
    "cache_root",
    "cifar_mobilenet_v2",
    "cifar_resnet18",
    "config_key",
    "evaluate_accuracy",
    "model_names",
    "small_cnn_fashion_mnist",
    "small_cnn_fashion_mnist_record",
    "train_classifier",
]
