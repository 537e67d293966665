"""Caffe's cifar10_quick: three 5x5 convs (32, 32, 64) with pooling, fc 64, fc 10 (145,578 params).

Caffe rounds pooled sizes up, hence ``ceil_mode=True``; there is no ReLU between ip1 and ip2."""

from __future__ import annotations

from torch import nn

from sweep.models.base import register_model
from sweep.models.chain import ChainNet, flat_features


@register_model(dataset="cifar10", input_size=(3, 32, 32))
def cifar10_quick(num_classes: int, input_size: tuple[int, int, int], widths: dict[str, int]) -> ChainNet:
    c1, c2, c3 = widths.get("conv1", 32), widths.get("conv2", 32), widths.get("conv3", 64)
    f1 = widths.get("fc1", 64)
    features: list[tuple[str, nn.Module]] = [
        ("conv1", nn.Conv2d(input_size[0], c1, 5, padding=2)),
        ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),
        ("relu1", nn.ReLU(inplace=True)),
        ("conv2", nn.Conv2d(c1, c2, 5, padding=2)),
        ("relu2", nn.ReLU(inplace=True)),
        ("pool2", nn.AvgPool2d(3, 2, ceil_mode=True)),
        ("conv3", nn.Conv2d(c2, c3, 5, padding=2)),
        ("relu3", nn.ReLU(inplace=True)),
        ("pool3", nn.AvgPool2d(3, 2, ceil_mode=True)),
        ("flatten", nn.Flatten()),
    ]
    classifier: list[tuple[str, nn.Module]] = [
        ("fc1", nn.Linear(flat_features(features, input_size), f1)),
        ("fc2", nn.Linear(f1, num_classes)),
    ]
    return ChainNet("cifar10_quick", features + classifier, input_size, num_classes)
