"""Which parameters form a neuron (a channel), for any network.

A channel's group is everything that produces it: the row of a Linear weight or the filter of a Conv
weight, its bias, the gamma and beta of the BatchNorms that follow. In a residual network every conv
writing into one stream (and their BatchNorms) carries the stream's channel; in a MobileNet a depthwise
filter carries its input channel. Only when all of them are zero is the channel exactly zero wherever it
is read, so removing it changes nothing.

The groups come from the dependency analysis of ``sweep.structure`` (``Net.body``), traced once per
architecture and remembered; here each becomes index tensors on the parameters' device, so the penalties,
the prox, momentum reset and the debias mask work per channel over all of a group's parameter slices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sweep.errors import SweepError
from sweep.models import Net, body_groups
from sweep.structure import ChannelGroup

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class GroupSlice:
    """Rows ``rows`` of ``param`` carry channels ``channels`` of the group; both None when row ``k`` is
    channel ``k`` for every row (the common case, worked on in place without indexing)."""

    param: torch.Tensor
    rows: torch.Tensor | None
    channels: torch.Tensor | None
    bn: bool = False  # a BatchNorm's scale or shift

    def view(self, tensor: torch.Tensor | None = None) -> torch.Tensor:
        """The slice's rows of the parameter (or of ``tensor``, shaped like it, e.g. its gradient times
        its weights) as (n, -1): a view when whole, else a copy."""
        p = self.param.data if tensor is None else tensor
        sub = p if self.rows is None else p.index_select(0, self.rows)
        return sub.view(sub.shape[0], -1)

    def write_(self, rows: torch.Tensor) -> None:
        """Store ``rows`` (as returned by ``view``, changed) back into the parameter."""
        if self.rows is not None:
            self.param.data.index_copy_(0, self.rows, rows.view(-1, *self.param.shape[1:]))

    def per_channel(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (one per channel of the group) for each row of the slice."""
        return values if self.channels is None else values.index_select(0, self.channels)

    def rows_of(self, channels: torch.Tensor) -> torch.Tensor:
        """Row indices of the slice that carry the channels of bool mask ``channels``."""
        hit = self.per_channel(channels)
        idx = hit.nonzero().view(-1)
        return idx if self.rows is None else self.rows.index_select(0, idx)


@dataclass
class NeuronGroups:
    """The channels of one group (named after its root layer): channel ``i`` is carried by the rows of
    every ``GroupSlice`` mapped to ``i``."""

    name: str
    width: int
    slices: list[GroupSlice]
    modules: list[nn.Module]  # every layer writing the channels, root first, then its BatchNorms etc.
    sizes: torch.Tensor  # scalars per channel over all slices, |g|
    uniform_size: int | None = None  # |g| when every channel has the same (the usual case)
    bn_sizes: torch.Tensor | None = None  # scalars per channel over the BatchNorm slices; None: no BN

    @property
    def layer(self) -> nn.Module:
        """The root layer (the first conv/linear writing the channels)."""
        return self.modules[0]

    @property
    def bn(self) -> nn.BatchNorm1d | nn.BatchNorm2d | None:
        """The BatchNorm of a single-layer group (a chain's), else None."""
        bns = [m for m in self.modules if isinstance(m, BN_TYPES)]
        return bns[0] if len(bns) == 1 and self.single_layer else None  # type: ignore[return-value]

    @property
    def single_layer(self) -> bool:
        return sum(isinstance(m, nn.Conv2d | nn.Linear) for m in self.modules) == 1

    @property
    def batch_normalised(self) -> bool:
        """Whether the group has a BatchNorm for every layer writing its channels, so that the channel's
        size is its BatchNorms' scale and shift (the layers' weights only set a direction)."""
        convs = sum(isinstance(m, nn.Conv2d | nn.Linear) for m in self.modules)
        if self.bn_sizes is None or not bool((self.bn_sizes > 0).all()):
            return False
        return sum(isinstance(m, BN_TYPES) for m in self.modules) == convs

    def tensors(self) -> list[torch.Tensor]:
        """Every parameter the group has rows in."""
        return list(dict.fromkeys(s.param for s in self.slices))

    @property
    def group_size(self) -> int:
        """Scalars per group, |g|, when every channel has the same (else the largest)."""
        return int(self.sizes.max())

    def sq_norms(self, bn_only: bool = False) -> torch.Tensor:
        """||w_g||^2 per channel (over the BatchNorm slices only, with ``bn_only``)."""
        return self.channel_sums(
            lambda rows: torch.linalg.vector_norm(rows, dim=1).square_(), _bn_rows if bn_only else None
        )

    def l1_norms(self) -> torch.Tensor:
        """||w_g||_1 per channel: the sum of the absolute values of everything that produces it."""
        return self.channel_sums(lambda rows: rows.abs().sum(dim=1))

    def channel_sums(
        self,
        per_row: Callable[[torch.Tensor], torch.Tensor],
        rows: Callable[[GroupSlice], torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """``per_row`` of each slice's rows (a new tensor), summed per channel over the slices. ``rows``
        gives the rows a slice contributes (None: the slice is left out); default, its parameter's own
        (``GroupSlice.view``). A whole first slice starts the sum (0 + x is x, so the same values as from
        zeros, with two ops fewer on a path the prox takes every step)."""
        out: torch.Tensor | None = None
        for s in self.slices:
            read = s.view() if rows is None else rows(s)
            if read is None:
                continue
            values = per_row(read)
            if s.channels is None and out is None:
                out = values
                continue
            if out is None:
                out = torch.zeros(self.width, dtype=self.sizes.dtype, device=self.sizes.device)
            if s.channels is None:
                out += values
            else:
                out.index_add_(0, s.channels, values.to(out.dtype))
        return out if out is not None else torch.zeros_like(self.sizes)

    def abs_sum(self) -> torch.Tensor:
        return sum(s.view().abs().sum() for s in self.slices)  # type: ignore[return-value]

    def channel_rms(self, bn_only: bool = False) -> torch.Tensor:
        """||w_g|| / sqrt(|g|) per channel (over the BatchNorm slices only, with ``bn_only``)."""
        sizes = self.bn_sizes if bn_only else self.sizes
        assert sizes is not None, f"group {self.name!r} has no BatchNorm"
        return (self.sq_norms(bn_only) / sizes).sqrt()

    @torch.no_grad()
    def scale_(self, factors: torch.Tensor, bn_only: bool = False) -> None:
        """Multiply each channel's rows (its BatchNorm rows only, with ``bn_only``) by its factor."""
        for s in self.slices:
            if bn_only and not s.bn:
                continue
            rows = s.view()
            rows.mul_(s.per_channel(factors).unsqueeze(1))
            s.write_(rows)

    @torch.no_grad()
    def soft_threshold_(self, t: float) -> None:
        """x <- sign(x) * max(|x| - t, 0) on every parameter of the group, in place."""
        for s in self.slices:
            rows = s.view()
            rows.sub_(rows.clamp(-t, t))
            s.write_(rows)

    @torch.no_grad()
    def alive(self) -> torch.Tensor:
        """Bool per channel: any of its parameters is non-zero."""
        return self.channel_sums(lambda rows: rows.ne(0).any(dim=1).to(self.sizes.dtype)) > 0

    @torch.no_grad()
    def zero_(
        self, dead: torch.Tensor, optimizer: torch.optim.Optimizer | None = None, params: bool = True
    ) -> None:
        """Set the rows of ``dead`` channels (bool mask) to zero (unless ``params`` is False: they
        already are), and their optimizer momentum too."""
        dead = dead.to(device=self.sizes.device, dtype=torch.bool)
        if not dead.any():
            return
        for s in self.slices:
            index = s.rows_of(dead)
            if params:
                s.param.data.index_fill_(0, index, 0)
            if optimizer is not None:
                buf = optimizer.state.get(s.param, {}).get("momentum_buffer")
                if buf is not None:
                    buf.index_fill_(0, index, 0)


def _bn_rows(s: GroupSlice) -> torch.Tensor | None:
    """A BatchNorm slice's rows; None for the others (``channel_sums`` then leaves them out)."""
    return s.view() if s.bn else None


def _make_groups(model: nn.Module, group: ChannelGroup) -> NeuronGroups:
    slices: list[GroupSlice] = []
    param = model.get_parameter(f"{group.slices[0].module}.{group.slices[0].param}")
    device = param.device
    sizes = torch.zeros(group.width, dtype=param.dtype, device=device)
    bn_sizes = torch.zeros_like(sizes)
    identity = tuple(range(group.width))
    for s in group.slices:
        p = model.get_parameter(s.name)
        row_size = p[0].numel() if p.dim() > 1 else 1
        whole = s.rows == identity and s.channels == identity and p.shape[0] == group.width
        rows = None if whole else torch.tensor(s.rows, dtype=torch.long, device=device)
        channels = None if whole else torch.tensor(s.channels, dtype=torch.long, device=device)
        bn = isinstance(model.get_submodule(s.module), BN_TYPES)
        slices.append(GroupSlice(p, rows, channels, bn))
        for total in (sizes, bn_sizes) if bn else (sizes,):
            if channels is None:
                total += row_size
            else:
                total.index_add_(
                    0, channels, torch.full((len(s.rows),), float(row_size), dtype=sizes.dtype, device=device)
                )
    modules = [model.get_submodule(m) for m in dict.fromkeys(s.module for s in group.slices)]
    root = model.get_submodule(group.name)
    modules = [root] + [m for m in modules if m is not root]
    lo, hi = sizes.aminmax()
    uniform = int(lo) if bool(lo == hi) else None
    has_bn = any(s.bn for s in slices)
    return NeuronGroups(
        group.name, group.width, slices, modules, sizes, uniform, bn_sizes if has_bn else None
    )


def neuron_groups(model: Net, layers: list[str] | None = None) -> list[NeuronGroups]:
    """Groups of the model's channel groups (all of them, or those rooted at the named layers), in
    forward order."""
    unit = model.unit_layers()
    if layers is not None:
        unknown = [n for n in layers if n not in unit]
        if unknown:
            raise SweepError(
                f"layers {', '.join(unknown)} cannot lose units in {model.name} (not a channel group root); "
                f"allowed: {', '.join(unit)}"
            )
    chosen = set(unit if layers is None else layers)
    return [_make_groups(model.body, g) for g in body_groups(model) if g.name in chosen]


def _channel_groups(model: Net) -> tuple[ChannelGroup, ...]:
    """The model's channel groups (named after their root layers), traced again only when its shapes
    change."""
    return body_groups(model)


def alive_masks(model: Net) -> dict[str, torch.Tensor]:
    return {g.name: g.alive() for g in neuron_groups(model)}


def alive_widths(model: Net) -> dict[str, int]:
    return {name: int(mask.sum()) for name, mask in alive_masks(model).items()}
