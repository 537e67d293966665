"""Which parameters form a neuron.

A neuron's group is everything that produces its output: the row of a Linear weight or the filter of a
Conv weight, its bias, and the gamma and beta of a BatchNorm that follows the layer. Only when all of
them are zero is the neuron's output exactly zero, so removing it changes nothing.

Which BatchNorm belongs to which layer comes from the dependency analysis of ``sweep.structure``, the one
mechanism every network's channel groups come from; it is traced once per architecture and remembered.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn

from sweep.errors import SweepError
from sweep.models.base import ChainNet
from sweep.structure import ChannelGroup, channel_groups

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class NeuronGroups:
    """The groups of one unit layer: row ``i`` of every tensor in ``tensors()`` belongs to neuron ``i``."""

    name: str
    layer: nn.Conv2d | nn.Linear
    bn: nn.BatchNorm1d | nn.BatchNorm2d | None

    def tensors(self) -> list[torch.Tensor]:
        ts = [self.layer.weight]
        if self.layer.bias is not None:
            ts.append(self.layer.bias)
        if self.bn is not None and self.bn.affine:
            ts += [self.bn.weight, self.bn.bias]
        return ts

    def rows(self) -> list[torch.Tensor]:
        """Each tensor viewed as (neurons, -1)."""
        return [t.data.view(t.shape[0], -1) for t in self.tensors()]

    @property
    def width(self) -> int:
        return self.layer.weight.shape[0]

    @property
    def group_size(self) -> int:
        """Scalars per group, |g|."""
        return sum(r.shape[1] for r in self.rows())

    def sq_norms(self) -> torch.Tensor:
        return sum(torch.linalg.vector_norm(r, dim=1).square_() for r in self.rows())  # type: ignore[return-value]

    @torch.no_grad()
    def alive(self) -> torch.Tensor:
        """Bool per neuron: any of its parameters is non-zero."""
        return torch.stack([r.ne(0).any(dim=1) for r in self.rows()]).any(dim=0)

    @torch.no_grad()
    def zero_(
        self, dead: torch.Tensor, optimizer: torch.optim.Optimizer | None = None, params: bool = True
    ) -> None:
        """Set the groups of ``dead`` neurons (bool mask) to zero (unless ``params`` is False: they
        already are), and their optimizer momentum too."""
        index = dead.nonzero().view(-1)
        if index.numel() == 0:
            return
        for t in self.tensors():
            if params:
                t.data.index_fill_(0, index, 0)
            if optimizer is not None:
                buf = optimizer.state.get(t, {}).get("momentum_buffer")
                if buf is not None:
                    buf.index_fill_(0, index, 0)


def neuron_groups(model: ChainNet, layers: list[str] | None = None) -> list[NeuronGroups]:
    """Groups of the model's unit layers (all of them, or the named ones), in forward order."""
    unit = model.unit_layers()
    if layers is not None:
        unknown = [n for n in layers if n not in unit]
        if unknown:
            raise SweepError(
                f"layers {', '.join(unknown)} cannot lose units in {model.name}; allowed: {', '.join(unit)}"
            )
    chosen = set(unit if layers is None else layers)
    found = {g.name: g for g in _channel_groups(model)}
    out: list[NeuronGroups] = []
    for name in unit:
        if name not in chosen:
            continue
        group = found.get(name)
        if group is None or group.layers != (name,):
            raise SweepError(f"layer {name} of {model.name} does not own its output channels alone")
        bns = [model.layer(m) for m in dict.fromkeys(s.module for s in group.slices) if m != name]
        if len(bns) > 1 or not all(isinstance(m, BN_TYPES) for m in bns):
            raise SweepError(f"layer {name} of {model.name}: its channels are also written by other layers")
        out.append(NeuronGroups(name, model.layer(name), bns[0] if bns else None))  # type: ignore[arg-type]
    return out


_GROUPS: weakref.WeakKeyDictionary[ChainNet, tuple[tuple, tuple[ChannelGroup, ...]]] = (
    weakref.WeakKeyDictionary()
)


def _channel_groups(model: ChainNet) -> tuple[ChannelGroup, ...]:
    """The chain's channel groups (named after its layers), traced again only when its shapes change."""
    shapes = tuple((n, tuple(p.shape)) for n, p in model.named_parameters())
    cached = _GROUPS.get(model)
    if cached is not None and cached[0] == shapes:
        return cached[1]
    param = next(model.parameters())
    example = torch.zeros(1, *model.input_size, dtype=param.dtype, device=param.device)
    groups = channel_groups(model.body, example).groups
    _GROUPS[model] = (shapes, groups)
    return groups


def alive_masks(model: ChainNet) -> dict[str, torch.Tensor]:
    return {g.name: g.alive() for g in neuron_groups(model)}


def alive_widths(model: ChainNet) -> dict[str, int]:
    return {name: int(mask.sum()) for name, mask in alive_masks(model).items()}
