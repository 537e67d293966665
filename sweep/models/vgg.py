"""VGG-13: the ImageNet network of the paper (no BatchNorm, classifier fc 4096 - 4096 - classes; 133M
params at 224x224), and ``vgg13_cifar``, a CIFAR-sized form with BatchNorm and one hidden fc layer of 512.

``vgg13`` is the paper's network at every input size its five pools allow (32 px or more): at 32x32 the
convs leave 512x1x1 and the paper's classifier follows unchanged (28.3M params at 10 classes), so the
layers a search space names (``fc1``, ``fc2``) are the same on every dataset. The CIFAR form is chosen by
its own name, ``vgg13_cifar``, never by the input size."""

from __future__ import annotations

from torch import nn

from sweep.models.base import register_model
from sweep.models.chain import ChainNet, flat_features

VGG13_STAGES = [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]]


def _features(
    stages: list[list[int]], in_channels: int, widths: dict[str, int], batch_norm: bool
) -> list[tuple[str, nn.Module]]:
    layers: list[tuple[str, nn.Module]] = []
    cin = in_channels
    for s, stage in enumerate(stages, start=1):
        for i, cout in enumerate(stage, start=1):
            name = f"conv{s}_{i}"
            cout = widths.get(name, cout)
            layers.append((name, nn.Conv2d(cin, cout, 3, padding=1)))
            if batch_norm:
                layers.append((f"bn{s}_{i}", nn.BatchNorm2d(cout)))
            layers.append((f"relu{s}_{i}", nn.ReLU(inplace=True)))
            cin = cout
        layers.append((f"pool{s}", nn.MaxPool2d(2, 2)))
    layers.append(("flatten", nn.Flatten()))
    return layers


def _init_plain(model: nn.Module) -> None:
    """torchvision's VGG initialisation (He-normal convs, N(0, 0.01) linears, zero biases). Without
    BatchNorm, PyTorch's default one shrinks the part of the signal that depends on the image about 2.5x
    per layer: at 32 px the logits' spread across images starts at 2e-6 (6e-4 with this one), a plateau
    that SGD has to climb off first."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)


@register_model(dataset="cifar10", input_size=(3, 32, 32))
def vgg13_cifar(
    num_classes: int, input_size: tuple[int, int, int], widths: dict[str, int], dropout: float = 0.5
) -> ChainNet:
    features = _features(VGG13_STAGES, input_size[0], widths, batch_norm=True)
    f1 = widths.get("fc1", 512)
    classifier: list[tuple[str, nn.Module]] = [
        ("drop1", nn.Dropout(dropout)),
        ("fc1", nn.Linear(flat_features(features, input_size), f1)),
        ("bn_fc1", nn.BatchNorm1d(f1)),
        ("relu_fc1", nn.ReLU(inplace=True)),
        ("fc2", nn.Linear(f1, num_classes)),
    ]
    return ChainNet("vgg13_cifar", features + classifier, input_size, num_classes)


@register_model(dataset="imagenet", input_size=(3, 224, 224))
def vgg13(
    num_classes: int, input_size: tuple[int, int, int], widths: dict[str, int], dropout: float = 0.5
) -> ChainNet:
    features = _features(VGG13_STAGES, input_size[0], widths, batch_norm=False)
    f1, f2 = widths.get("fc1", 4096), widths.get("fc2", 4096)
    classifier: list[tuple[str, nn.Module]] = [
        ("fc1", nn.Linear(flat_features(features, input_size), f1)),
        ("relu_fc1", nn.ReLU(inplace=True)),
        ("drop1", nn.Dropout(dropout)),
        ("fc2", nn.Linear(f1, f2)),
        ("relu_fc2", nn.ReLU(inplace=True)),
        ("drop2", nn.Dropout(dropout)),
        ("fc3", nn.Linear(f2, num_classes)),
    ]
    model = ChainNet("vgg13", features + classifier, input_size, num_classes)
    _init_plain(model)
    return model
