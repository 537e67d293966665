"""Datasets by name: finding their files, reading them, splitting off the held-out images."""

from sweep.data.files import CIFAR_CLASSES
from sweep.data.folder import class_names
from sweep.data.splits import FolderSplit, TensorSplit

__all__ = [
    "CIFAR_CLASSES",
    "FolderSplit",
    "TensorSplit",
    "class_names",
]
