"""``ChainNet``: the Net whose body is one ``nn.Sequential`` of named layers (the seed's chains, which
``sweep.sparsity.compact`` slices on its own)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn

from sweep.models.net import UNIT_TYPES, Net


class ChainNet(Net):
    """A named chain of layers: one ``nn.Sequential``."""

    def __init__(
        self,
        name: str,
        layers: Iterable[tuple[str, nn.Module]],
        input_size: tuple[int, int, int],
        num_classes: int,
    ) -> None:
        super().__init__(name, nn.Sequential(OrderedDict(layers)), input_size, num_classes)

    def unit_layers(self) -> list[str]:
        """Conv and linear layers whose outputs are neurons that can be removed, in forward order.

        Every conv/linear layer except the last one (the classifier's output layer)."""
        names = [n for n, m in self.body.named_children() if isinstance(m, UNIT_TYPES)]
        return names[:-1]

    def widths(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name in self.unit_layers():
            m = self.layer(name)
            out[name] = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        return out


def flat_features(layers: list[tuple[str, nn.Module]], input_size: tuple[int, int, int]) -> int:
    """Size of the flattened feature map that ``layers`` (the conv part) produce for ``input_size``."""
    with torch.no_grad():
        out = nn.Sequential(OrderedDict(layers)).eval()(torch.zeros(1, *input_size))
    return int(out.numel())
