"""The network every model is: any ``nn.Module`` as its ``body`` plus its name, input size and class
count; its channel groups come from ``sweep.structure``'s dependency analysis of the body, named after
their root layer (``layer2.0.conv1``) and traced once per architecture."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sweep.errors import SweepError
from sweep.structure import ChannelGroup, Removal, channel_groups, prune, replay

UNIT_TYPES = (nn.Conv2d, nn.Linear)


class Net(nn.Module):
    """Any network (``body``) plus what the rest of sweep needs to know about it."""

    def __init__(
        self, name: str, body: nn.Module, input_size: tuple[int, int, int], num_classes: int
    ) -> None:
        super().__init__()
        self.name = name
        self.input_size = tuple(input_size)
        self.num_classes = num_classes
        self.body = body
        # what was removed from the registry's dense network, when this is a pruned copy: the JSON record
        # of sweep.structure.Removal that ``replay`` applies to a fresh dense model
        self.removal: dict[str, Any] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def layer(self, name: str) -> nn.Module:
        return self.body.get_submodule(name)

    def unit_layers(self) -> list[str]:
        """Roots of the channel groups that can lose channels, in forward order (the output layer's
        classes excluded)."""
        return [g.name for g in body_groups(self)]

    def widths(self) -> dict[str, int]:
        return {g.name: g.width for g in body_groups(self)}

    def pruned(self, keep: Mapping[str, torch.Tensor]) -> Net:
        """A physically smaller copy without the channels whose ``keep`` entry (group root -> bool per
        channel) is False; its ``removal`` is the record that rebuilds it from a fresh dense model."""
        if self.removal is not None:
            raise SweepError(f"model {self.name!r} is already pruned; prune the dense network instead")
        param = next(self.parameters())
        example = torch.zeros(1, *self.input_size, dtype=param.dtype, device=param.device)
        body, record = prune(self.body, example, keep)
        out = Net(self.name, body, self.input_size, self.num_classes)
        out.removal = record.to_dict()
        return out

    def replay_(self, removal: dict[str, Any]) -> Net:
        """Remove ``removal``'s channels (a ``pruned`` copy's record) from this fresh dense model."""
        example = torch.zeros(1, *self.input_size)
        replay(self.body, example, Removal.from_dict(removal))
        self.removal = removal
        return self


_GROUPS: weakref.WeakKeyDictionary[Net, tuple[tuple, tuple[ChannelGroup, ...], tuple[str, ...]]] = (
    weakref.WeakKeyDictionary()
)


def body_groups(model: Net) -> tuple[ChannelGroup, ...]:
    """The channel groups of ``model.body`` (named after their root layers), traced again only when its
    shapes change."""
    return _traced(model)[1]


def kept_layers(model: Net) -> tuple[str, ...]:
    """Conv/linear layers of ``model.body`` whose channels pass a channel shuffle, so are kept whole."""
    return _traced(model)[2]


def _traced(model: Net) -> tuple[tuple, tuple[ChannelGroup, ...], tuple[str, ...]]:
    shapes = tuple((n, tuple(p.shape)) for n, p in model.named_parameters())
    cached = _GROUPS.get(model)
    if cached is not None and cached[0] == shapes:
        return cached
    param = next(model.parameters())
    example = torch.zeros(1, *model.input_size, dtype=param.dtype, device=param.device)
    structure = channel_groups(model.body, example)
    _GROUPS[model] = (shapes, structure.groups, structure.kept)
    return _GROUPS[model]
