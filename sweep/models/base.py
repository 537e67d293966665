"""The network every registered model is, and the model registry.

Every model is a ``Net``: any ``nn.Module`` as its ``body`` plus its registry name, input size and class
count. What can lose channels comes from ``sweep.structure``'s dependency analysis of the body: its
coupled channel groups, named after their root layer (``layer2.0.conv1``), traced once per architecture.
``ChainNet`` is the Net whose body is one ``nn.Sequential`` of named layers (the seed's chains, which
``sweep.compact`` and export still handle on their own).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from sweep.errors import SweepError, quote
from sweep.models import external
from sweep.registry import Registry
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


_GROUPS: weakref.WeakKeyDictionary[Net, tuple[tuple, tuple[ChannelGroup, ...]]] = weakref.WeakKeyDictionary()


def body_groups(model: Net) -> tuple[ChannelGroup, ...]:
    """The channel groups of ``model.body`` (named after their root layers), traced again only when its
    shapes change."""
    shapes = tuple((n, tuple(p.shape)) for n, p in model.named_parameters())
    cached = _GROUPS.get(model)
    if cached is not None and cached[0] == shapes:
        return cached[1]
    param = next(model.parameters())
    example = torch.zeros(1, *model.input_size, dtype=param.dtype, device=param.device)
    groups = channel_groups(model.body, example).groups
    _GROUPS[model] = (shapes, groups)
    return groups


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


ModelFactory = Callable[..., Net]
MODELS: Registry[ModelFactory] = Registry("model")


def register_model(
    name: str | None = None, *, dataset: str, input_size: tuple[int, int, int], chain: bool = True
) -> Callable:
    """Register a model entry function. ``dataset`` is the dataset its search space trains on by default,
    ``input_size`` (channels, height, width) what it expects when nothing else is said; ``chain`` whether
    it returns a ``ChainNet`` (which ``sweep.compact`` and export handle)."""
    return MODELS.register(name, dataset=dataset, input_size=tuple(input_size), chain=chain)


def names() -> list[str]:
    """The registered models (entry points and references are accepted besides; see ``check``)."""
    return MODELS.names()


def is_external(name: str) -> bool:
    """A model from outside the package: not registered, but an entry point's name or a reference."""
    return name not in MODELS and external.is_external(name)


def check(name: object) -> str:
    """``name`` as trials record it, once it is known to name a model: a registered one, an entry point
    of group ``sweep.models``, or a ``MODULE:FUNCTION`` / ``FILE.py:FUNCTION`` reference (imported here;
    a file's path made absolute). SweepError otherwise, listing what is known."""
    if isinstance(name, str) and name in MODELS:
        return name
    if isinstance(name, str) and is_external(name):
        ref = external.canonical(name)
        external.resolve(ref)
        return ref
    known = [*names(), *(n for n in external.entry_points() if n not in MODELS)]
    own = f"or a function of your own: {external.FORMS}"
    raise SweepError(f"unknown model {quote(name)}; known: {', '.join(known)}; {own}")


def chain_names() -> list[str]:
    """The registered models that are chains."""
    return [e.name for e in MODELS if e.meta["chain"]]


def is_chain(name: str) -> bool:
    if is_external(name):
        return False
    return bool(MODELS.entry(name).meta["chain"])


def no_widths(name: str, widths: dict[str, int]) -> None:
    """Refuse a ``widths`` override for a model that is not a chain (its widths come from pruning)."""
    if widths:
        raise SweepError(
            f"model {name!r} is not a chain: it cannot be built at other widths; prune it with "
            "sweep.structure.prune instead"
        )


def default_dataset(name: str) -> str:
    if is_external(name):
        raise external.no_dataset(name)
    return MODELS.entry(name).meta["dataset"]


def create(
    name: str,
    num_classes: int = 10,
    in_channels: int | None = None,
    input_size: int | tuple[int, int] | None = None,
    widths: dict[str, int] | None = None,
    **kwargs: Any,
) -> Net:
    """Build a registered model. ``input_size`` is the image side (or (H, W)); ``widths`` overrides
    the output width of unit layers by name (how export rebuilds a compact network). A name that is
    not registered may be an entry point or a reference (``sweep.models.external``)."""
    if is_external(name):
        no_widths(name, dict(widths or {}))
        if num_classes < 2:
            raise SweepError(f"num_classes must be at least 2, got {num_classes}")
        size = (input_size, input_size) if isinstance(input_size, int) else input_size
        return external.create(external.canonical(name), num_classes, in_channels, size)
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
