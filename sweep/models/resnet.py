"""ResNets: resnet20 and resnet56 for CIFAR-10 (He et al. 2016, section 4.2), torchvision's resnet18.

The CIFAR ResNets are a 3x3 stem conv of 16 channels, then three stages of ``n`` basic blocks with 16, 32
and 64 channels (the first block of stages 2 and 3 halves the image side), global average pooling and one
linear layer: depth 6n + 2, so n = 3 for resnet20 (272,474 params) and n = 9 for resnet56 (855,770).

Shortcuts: identity where the shape is kept; on downsampling a 1x1 conv of stride 2 plus BatchNorm
("option B"). The paper's CIFAR nets use option A (strided identity padded with zeros, 0.27M and 0.85M);
option B adds 2,752 parameters and, being ordinary layers, lets the dependency analysis tie the projection
to the residual stream it writes into. So each stage's residual stream is one channel group, rooted at
the first layer that writes into it.

Registered as ``Net``s whose body is the plain module (``resnet20``, ``resnet56`` for CIFAR-10 at 32x32,
``resnet18`` for ImageNet at any input size of 32 px or more).
"""

from __future__ import annotations

import torch
from torch import nn

from sweep.models.base import no_widths, register_model
from sweep.models.net import Net

CIFAR_STAGES = (16, 32, 64)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, CIFAR_STAGES[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(CIFAR_STAGES[0])
        self.relu = nn.ReLU(inplace=True)
        cin = CIFAR_STAGES[0]
        stages = []
        for s, cout in enumerate(CIFAR_STAGES):
            blocks = []
            for b in range(blocks_per_stage):
                blocks.append(BasicBlock(cin, cout, stride=2 if s > 0 and b == 0 else 1))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))

    def get_classifier(self) -> nn.Module:
        return self.fc


def resnet20(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(3, num_classes, in_channels)


def resnet56(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(9, num_classes, in_channels)


def resnet18(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """torchvision's ImageNet resnet18 (random weights); its adaptive pooling takes any input of 32 px
    or more."""
    from torchvision.models import resnet18 as tv_resnet18  # torchvision is slow to import

    model = tv_resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    return model


@register_model("resnet20", dataset="cifar10", input_size=(3, 32, 32), chain=False)
def resnet20_net(num_classes: int, input_size: tuple[int, int, int], widths: dict[str, int]) -> Net:
    no_widths("resnet20", widths)
    return Net("resnet20", resnet20(num_classes, input_size[0]), input_size, num_classes)


@register_model("resnet56", dataset="cifar10", input_size=(3, 32, 32), chain=False)
def resnet56_net(num_classes: int, input_size: tuple[int, int, int], widths: dict[str, int]) -> Net:
    no_widths("resnet56", widths)
    return Net("resnet56", resnet56(num_classes, input_size[0]), input_size, num_classes)


@register_model("resnet18", dataset="imagenet", input_size=(3, 224, 224), chain=False)
def resnet18_net(num_classes: int, input_size: tuple[int, int, int], widths: dict[str, int]) -> Net:
    no_widths("resnet18", widths)
    return Net("resnet18", resnet18(num_classes, input_size[0]), input_size, num_classes)
