"""The chain network every model family builds, and the model registry.

Every model is one ``nn.Sequential`` of named layers (conv, batchnorm, activation, pooling, flatten,
linear). That shape is what lets sparsity groups, metrics and export treat all models alike: a unit
layer's neurons are its output channels, and the next conv/linear consumes them (through the flatten,
where one channel becomes a block of ``H*W`` columns).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from sweep.errors import SweepError
from sweep.registry import Registry

UNIT_TYPES = (nn.Conv2d, nn.Linear)


class ChainNet(nn.Module):
    """A named chain of layers plus what the rest of sweep needs to know about it."""

    def __init__(
        self,
        name: str,
        layers: Iterable[tuple[str, nn.Module]],
        input_size: tuple[int, int, int],
        num_classes: int,
    ) -> None:
        super().__init__()
        self.name = name
        self.input_size = tuple(input_size)
        self.num_classes = num_classes
        self.body = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def layer(self, name: str) -> nn.Module:
        return self.body.get_submodule(name)

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


ModelFactory = Callable[..., ChainNet]
MODELS: Registry[ModelFactory] = Registry("model")


def register_model(name: str | None = None, *, dataset: str, input_size: tuple[int, int, int]) -> Callable:
    """Register a model entry function. ``dataset`` is the dataset its search space trains on by default,
    ``input_size`` (channels, height, width) what it expects when nothing else is said."""
    return MODELS.register(name, dataset=dataset, input_size=tuple(input_size))


def names() -> list[str]:
    return MODELS.names()


def default_dataset(name: str) -> str:
    return MODELS.entry(name).meta["dataset"]


def create(
    name: str,
    num_classes: int = 10,
    in_channels: int | None = None,
    input_size: int | tuple[int, int] | None = None,
    widths: dict[str, int] | None = None,
    **kwargs: Any,
) -> ChainNet:
    """Build a registered model. ``input_size`` is the image side (or (H, W)); ``widths`` overrides
    the output width of unit layers by name (how export rebuilds a compact network)."""
    entry = MODELS.entry(name)
    c, h, w = entry.meta["input_size"]
    if in_channels is not None:
        c = in_channels
    if input_size is not None:
        h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if num_classes < 2:
        raise SweepError(f"num_classes must be at least 2, got {num_classes}")
    try:
        model = entry.obj(num_classes=num_classes, input_size=(c, h, w), widths=dict(widths or {}), **kwargs)
        with torch.no_grad():
            model.eval()(torch.zeros(1, c, h, w))
    except RuntimeError as err:
        raise SweepError(
            f"model {name!r} cannot take input {c}x{h}x{w}: {str(err).splitlines()[0]}"
        ) from None
    return model.train()


def flat_features(layers: list[tuple[str, nn.Module]], input_size: tuple[int, int, int]) -> int:
    """Size of the flattened feature map that ``layers`` (the conv part) produce for ``input_size``."""
    with torch.no_grad():
        out = nn.Sequential(OrderedDict(layers)).eval()(torch.zeros(1, *input_size))
    return int(out.numel())
