"""MobileNetV2 (Sandler et al. 2018), width 1.0, in the form usually trained on CIFAR-10.

The ImageNet network halves the image side five times; on 32x32 images that leaves 1x1 maps. The CIFAR
form keeps the stem conv at stride 1 and the first 24-channel stage at stride 1, so the last maps are 4x4.
Everything else is the paper's: inverted residual blocks (1x1 expansion by ``t``, 3x3 depthwise, linear 1x1
projection) with an identity shortcut where stride is 1 and the width is kept, ReLU6, a 1280-channel 1x1
head conv, global average pooling and one linear layer (2,236,682 params for 10 classes).
"""

from __future__ import annotations

import torch
from torch import nn

from sweep.models.base import no_widths, register_model
from sweep.models.net import Net

# (expansion t, channels c, blocks n, stride s of the first block); the paper's table 2 with the
# 24-channel stage at stride 1 for CIFAR
CIFAR_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.use_shortcut = stride == 1 and cin == cout
        self.expand: nn.Module = nn.Identity()
        if expansion != 1:
            self.expand = nn.Sequential(
                nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)
            )
        self.dw = nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False)
        self.bn_dw = nn.BatchNorm2d(hidden)
        self.relu = nn.ReLU6(inplace=True)
        self.project = nn.Conv2d(hidden, cout, 1, bias=False)
        self.bn_project = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn_dw(self.dw(self.expand(x))))
        out = self.bn_project(self.project(out))
        return x + out if self.use_shortcut else out


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, STEM_CHANNELS, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.relu = nn.ReLU6(inplace=True)
        blocks = []
        cin = STEM_CHANNELS
        for t, c, n, s in CIFAR_SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = nn.Conv2d(cin, HEAD_CHANNELS, 1, bias=False)
        self.bn_head = nn.BatchNorm2d(HEAD_CHANNELS)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.relu(self.bn1(self.conv1(x))))
        x = self.relu(self.bn_head(self.conv_head(x)))
        return self.fc(self.dropout(self.flatten(self.avgpool(x))))

    def get_classifier(self) -> nn.Module:
        return self.fc


def mobilenet_v2(num_classes: int = 10, in_channels: int = 3) -> MobileNetV2:
    return MobileNetV2(num_classes, in_channels)


@register_model("mobilenet_v2", dataset="cifar10", input_size=(3, 32, 32), chain=False)
def mobilenet_v2_net(num_classes: int, input_size: tuple[int, int, int], widths: dict[str, int]) -> Net:
    no_widths("mobilenet_v2", widths)
    return Net("mobilenet_v2", mobilenet_v2(num_classes, input_size[0]), input_size, num_classes)
