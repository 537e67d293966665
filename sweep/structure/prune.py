"""Physically remove channels from a copy of a network, and a plain record that rebuilds the result.

``prune`` deep-copies the model and lets Torch-Pruning's pruning functions cut each group's removed
channels out of every layer that writes or reads them. ``Removal`` says which channels went, by group
root name, as JSON-able lists; ``replay`` applies it to a freshly built dense model, which then accepts the
compact model's state dict: an export is rebuilt from its factory, the record and plain tensors, never from
a pickle.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sweep.errors import SweepError, quote
from sweep.structure.graph import Structure, channel_groups, is_grouped
from sweep.structure.shuffle import tolerant_mapping

RECORD_VERSION = 1


@dataclass(frozen=True)
class Removal:
    """Removed channel indices per group root, in the dense network's numbering, in the order applied."""

    removed: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"version": RECORD_VERSION, "removed": {k: list(v) for k, v in self.removed.items()}}

    @classmethod
    def from_dict(cls, data: Any) -> Removal:
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
            raise SweepError(
                f"removal record must be a dict with version {RECORD_VERSION}, got {quote(data)}"
            )
        removed = data.get("removed")
        if not isinstance(removed, dict):
            raise SweepError(
                f"removal record's 'removed' must map group names to index lists, got {quote(removed)}"
            )
        out: dict[str, tuple[int, ...]] = {}
        for name, idxs in removed.items():
            if not isinstance(idxs, list) or not all(type(i) is int and i >= 0 for i in idxs):
                raise SweepError(
                    f"removal record: group {name!r} must list channel indices >= 0, got {quote(idxs)}"
                )
            out[str(name)] = tuple(idxs)
        return cls(out)

    def widths(self, dense: Mapping[str, int]) -> dict[str, int]:
        """Channels left per group, given the dense widths."""
        return {name: width - len(self.removed.get(name, ())) for name, width in dense.items()}


def prune(
    model: nn.Module,
    example_input: torch.Tensor,
    keep: Mapping[str, torch.Tensor | Sequence[bool]],
) -> tuple[nn.Module, Removal]:
    """A copy of ``model`` without the channels whose ``keep`` entry is False, and the record of them.

    ``keep`` maps group root names to a bool per channel; groups it leaves out keep every channel. The
    original model is not changed."""
    pruned = copy.deepcopy(model)
    structure = channel_groups(pruned, example_input)
    removed: dict[str, tuple[int, ...]] = {}
    for name, mask in keep.items():
        group = structure.group(name)
        mask_t = torch.as_tensor(mask, dtype=torch.bool).cpu().view(-1)
        if mask_t.numel() != group.width:
            raise SweepError(
                f"keep mask of group {name!r} has {mask_t.numel()} entries; the group has {group.width} channels"
            )
        if not mask_t.any():
            raise SweepError(
                f"group {name!r} would lose all {group.width} channels; a network needs at least one"
            )
        idxs = tuple(int(i) for i in (~even_blocks(mask_t, group.blocks)).nonzero().view(-1))
        if idxs:
            removed[name] = idxs
    record = Removal(removed)
    _apply(pruned, structure, record)
    return pruned, record


def replay(model: nn.Module, example_input: torch.Tensor, record: Removal) -> nn.Module:
    """Remove ``record``'s channels from ``model`` itself (a freshly built dense one) and return it."""
    structure = channel_groups(model, example_input)
    for name, idxs in record.removed.items():
        group = structure.group(name)
        bad = [i for i in idxs if i >= group.width]
        if bad:
            raise SweepError(f"removal record: group {name!r} has {group.width} channels, got index {bad[0]}")
        if len(set(idxs)) >= group.width:
            raise SweepError(f"removal record: group {name!r} would lose all {group.width} channels")
        gone = torch.zeros(group.width, dtype=torch.bool)
        gone[list(idxs)] = True
        if not bool(even_blocks(~gone, group.blocks).eq(~gone).all()):
            raise SweepError(
                f"removal record: group {name!r} feeds a grouped conv, and must lose as many channels from "
                "each of its groups"
            )
    _apply(model, structure, record)
    return model


def even_blocks(keep: torch.Tensor, blocks: tuple[int, ...]) -> torch.Tensor:
    """``keep`` with more channels kept where needed so that every block (a grouped conv's group) loses as
    many channels as the block that loses fewest: the extra ones kept are dead, so this stays exact."""
    if not blocks:
        return keep
    ids = torch.tensor(blocks)
    out = keep.clone()
    members = [(ids == b).nonzero().view(-1) for b in ids.unique()]
    lose = min(int((~keep[m]).sum()) for m in members)
    for m in members:
        dead = m[~keep[m]]
        out[dead[lose:]] = True
    return out


def _prune_grouped_in(conv: nn.Conv2d, idxs: Sequence[int]) -> None:
    """Remove input channels ``idxs`` of a grouped conv: each of its groups keeps its own channels, in the
    same number (Torch-Pruning's own function assumes the same positions in every group)."""
    per_in, per_out = conv.in_channels // conv.groups, conv.out_channels // conv.groups
    gone = set(int(i) for i in idxs)
    keeps = [
        [i - g * per_in for i in range(g * per_in, (g + 1) * per_in) if i not in gone]
        for g in range(conv.groups)
    ]
    if len({len(k) for k in keeps}) != 1:
        raise SweepError(
            f"grouped conv would lose unequal numbers of input channels per group: {sorted(gone)[:8]}"
        )
    w = conv.weight.detach()
    parts = [
        w[g * per_out : (g + 1) * per_out].index_select(1, torch.tensor(k, dtype=torch.long, device=w.device))
        for g, k in enumerate(keeps)
    ]
    conv.weight = nn.Parameter(torch.cat(parts), requires_grad=conv.weight.requires_grad)
    conv.in_channels = conv.groups * len(keeps[0])


def _apply(model: nn.Module, structure: Structure, record: Removal) -> None:
    graph = structure.graph
    for name, idxs in record.removed.items():
        root = model.get_submodule(name)
        pruner = graph.get_pruner_of_module(root)
        # each group is cut through its own root layer, whose channel numbering the other groups' cuts
        # leave alone, so dense indices stay valid from one group to the next
        with torch.no_grad():
            with tolerant_mapping():
                group = graph.get_pruning_group(root, pruner.prune_out_channels, sorted(set(idxs)))
            for dep, rows in group.items:
                if is_grouped(dep.target.module) and graph.is_in_channel_pruning_fn(dep.handler):
                    _prune_grouped_in(dep.target.module, rows)
                else:
                    dep(rows)
