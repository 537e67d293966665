"""Caffe's LeNet for MNIST: conv 20 - pool - conv 50 - pool - fc 500 - relu - fc 10 (431,080 params)."""

from __future__ import annotations

from torch import nn

from sweep.models.base import register_model
from sweep.models.chain import ChainNet, flat_features


@register_model(dataset="mnist", input_size=(1, 28, 28))
def lenet(num_classes: int, input_size: tuple[int, int, int], widths: dict[str, int]) -> ChainNet:
    c1, c2, f1 = widths.get("conv1", 20), widths.get("conv2", 50), widths.get("fc1", 500)
    features: list[tuple[str, nn.Module]] = [
        ("conv1", nn.Conv2d(input_size[0], c1, 5)),
        ("pool1", nn.MaxPool2d(2, 2)),
        ("conv2", nn.Conv2d(c1, c2, 5)),
        ("pool2", nn.MaxPool2d(2, 2)),
        ("flatten", nn.Flatten()),
    ]
    classifier: list[tuple[str, nn.Module]] = [
        ("fc1", nn.Linear(flat_features(features, input_size), f1)),
        ("relu1", nn.ReLU(inplace=True)),
        ("fc2", nn.Linear(f1, num_classes)),
    ]
    return ChainNet("lenet", features + classifier, input_size, num_classes)
