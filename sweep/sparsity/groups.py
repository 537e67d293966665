"""Which parameters form a neuron.

A neuron's group is everything that produces its output: the row of a Linear weight or the filter of a
Conv weight, its bias, and the gamma and beta of a BatchNorm that follows the layer. Only when all of
them are zero is the neuron's output exactly zero, so removing it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sweep.errors import SweepError
from sweep.models.base import UNIT_TYPES, ChainNet

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
    out: list[NeuronGroups] = []
    children = list(model.body.named_children())
    for i, (name, module) in enumerate(children):
        if name not in chosen:
            continue
        bn = None
        for _, nxt in children[i + 1 :]:
            if isinstance(nxt, UNIT_TYPES):
                break
            if isinstance(nxt, BN_TYPES):
                bn = nxt
                break
        out.append(NeuronGroups(name, module, bn))  # type: ignore[arg-type]
    return out


def alive_masks(model: ChainNet) -> dict[str, torch.Tensor]:
    return {g.name: g.alive() for g in neuron_groups(model)}


def alive_widths(model: ChainNet) -> dict[str, int]:
    return {name: int(mask.sum()) for name, mask in alive_masks(model).items()}
