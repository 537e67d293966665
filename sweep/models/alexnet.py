"""AlexNet for ImageNet (single-tower form, as in torchvision): five convs, fc 4096 - 4096 - 1000."""

from __future__ import annotations

from torch import nn

from sweep.models.base import register_model
from sweep.models.chain import ChainNet, flat_features


@register_model(dataset="imagenet", input_size=(3, 224, 224))
def alexnet(
    num_classes: int, input_size: tuple[int, int, int], widths: dict[str, int], dropout: float = 0.5
) -> ChainNet:
    spec = [
        ("conv1", 64, 11, 4, 2),
        ("conv2", 192, 5, 1, 2),
        ("conv3", 384, 3, 1, 1),
        ("conv4", 256, 3, 1, 1),
        ("conv5", 256, 3, 1, 1),
    ]
    features: list[tuple[str, nn.Module]] = []
    cin = input_size[0]
    for i, (name, cout, k, s, p) in enumerate(spec, start=1):
        cout = widths.get(name, cout)
        features += [(name, nn.Conv2d(cin, cout, k, s, p)), (f"relu{i}", nn.ReLU(inplace=True))]
        if name in ("conv1", "conv2", "conv5"):
            features.append((f"pool{i}", nn.MaxPool2d(3, 2)))
        cin = cout
    features.append(("flatten", nn.Flatten()))
    f1, f2 = widths.get("fc1", 4096), widths.get("fc2", 4096)
    classifier: list[tuple[str, nn.Module]] = [
        ("drop1", nn.Dropout(dropout)),
        ("fc1", nn.Linear(flat_features(features, input_size), f1)),
        ("relu_fc1", nn.ReLU(inplace=True)),
        ("drop2", nn.Dropout(dropout)),
        ("fc2", nn.Linear(f1, f2)),
        ("relu_fc2", nn.ReLU(inplace=True)),
        ("fc3", nn.Linear(f2, num_classes)),
    ]
    return ChainNet("alexnet", features + classifier, input_size, num_classes)
