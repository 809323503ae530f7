"""Small reference architectures."""

from .small_cnn import SmallCNN

__all__ = ["SmallCNN"]
