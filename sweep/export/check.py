"""``sweep check MODEL``: a preflight a user runs on a network before searching it.

It builds the network, lists its channel groups, zeroes a random half of every group the way the prox
does (every parameter row that produces a channel: conv/linear rows and biases, BatchNorm gamma and beta),
physically removes those channels (``Net.pruned``) and compares the compact network's logits with the
masked dense one's. Exit 0 with a one-line verdict when they agree; else one line naming the group (its
root layer) whose removal changed the logits, or the layer or op the channel analysis cannot follow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from sweep import models
from sweep.errors import SweepError
from sweep.models import Net, body_groups, kept_layers
from sweep.sparsity import compact_network, logits_difference, neuron_groups

RTOL = (
    1e-4  # the compact network's logits may differ from the masked dense one's by this share of their scale
)
BATCH = 2


@dataclass(frozen=True)
class CheckReport:
    """What ``check_model`` found: the groups (name, width, conv/linear layers writing them) and the test."""

    model: str
    input_size: tuple[int, int, int]
    num_classes: int
    groups: tuple[tuple[str, int, int], ...]
    kept: tuple[str, ...]
    removed: int
    channels: int
    params: tuple[int, int]
    rel_diff: float
    seconds: float

    def lines(self) -> list[str]:
        c, h, w = self.input_size
        out = [f"{self.model} at {c}x{h}x{w}, {self.num_classes} classes: {len(self.groups)} channel groups"]
        wide = max((len(n) for n, _, _ in self.groups), default=0)
        for name, width, layers in self.groups:
            out.append(
                f"  {name:<{wide}}  {width:>5} channels  {layers:>3} layer{'s' if layers != 1 else ''}"
            )
        if self.kept:
            shown = ", ".join(self.kept[:6]) + (", ..." if len(self.kept) > 6 else "")
            out.append(
                f"  kept whole (their channels pass a channel shuffle): {len(self.kept)} layers: {shown}"
            )
        out.append(self.verdict())
        return out

    def verdict(self) -> str:
        before, after = self.params
        return (
            f"verified: all {len(self.groups)} groups remove exactly ({self.removed} of {self.channels} channels "
            f"zeroed and removed, params {before:,} -> {after:,}, logits within {self.rel_diff:.1e} of their "
            f"scale) in {self.seconds:.1f} s"
        )


def build(model: str, input_size: int | None, in_channels: int | None, num_classes: int | None) -> Net:
    """The network ``model`` names, as ``sweep run`` would build it."""
    name = models.check(model)
    for value, what in (
        (input_size, "--input-size"),
        (in_channels, "--in-channels"),
        (num_classes, "--num-classes"),
    ):
        if value is not None and value < 1:
            raise SweepError(f"{what} must be at least 1, got {value}")
    return models.create(name, num_classes=num_classes or 10, in_channels=in_channels, input_size=input_size)


@torch.no_grad()
def _randomise_batchnorms(net: nn.Module, gen: torch.Generator) -> None:
    """Give BatchNorms random scales, shifts and statistics, so that a channel left alive by mistake, or
    sliced from the wrong row, shows in the logits."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
            if m.running_mean is not None:
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


def half_dead(width: int, blocks: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """A random half of ``width`` channels (bool mask), the same count in each block (a grouped conv's
    groups) so that their removal keeps the groups equal; at least one channel stays."""
    dead = torch.zeros(width, dtype=torch.bool)
    ids = torch.tensor(blocks) if blocks else torch.zeros(width, dtype=torch.long)
    for b in ids.unique():
        members = (ids == b).nonzero().view(-1)
        pick = members[torch.randperm(len(members), generator=gen)[: len(members) // 2]]
        dead[pick] = True
    return dead


def check_model(net: Net, seed: int = 0) -> CheckReport:
    """Zero a random half of every channel group of ``net``, remove them, and compare the logits."""
    started = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    net = net.eval()
    groups = body_groups(net)
    if not groups:
        raise SweepError(f"model {net.name!r} has no channel group that can lose channels")
    _randomise_batchnorms(net, gen)
    dense_state = {k: v.clone() for k, v in net.state_dict().items()}
    dead = {g.name: half_dead(g.width, g.blocks, gen) for g in groups}
    for ng in neuron_groups(net):
        ng.zero_(dead[ng.name])
    keep = {name: ~mask for name, mask in dead.items()}
    x = torch.randn(BATCH, *net.input_size, generator=gen)
    try:
        compact = compact_network(net, keep)  # what export does: the slicer for a chain
        _, rel = logits_difference(net, compact, x)
    except SweepError:
        raise
    except Exception:  # the graph library failing on some group: find which
        rel = float("inf")
        compact = None
    if not rel <= RTOL or compact is None:
        _blame(net, dense_state, groups, dead, x)
        raise SweepError(
            f"model {net.name!r}: removing the zeroed channels changed the logits ({rel:.3g} of their scale), "
            "though no single group's removal does; the channel analysis misses a coupling between groups"
        )
    for g in groups:
        out = _out_width(compact.layer(g.name))
        if out is not None and out != g.width - int(dead[g.name].sum()):
            raise SweepError(
                f"group {g.name!r}: {out} channels left after removal; expected {g.width - int(dead[g.name].sum())}"
            )
    return CheckReport(
        net.name,
        tuple(net.input_size),  # type: ignore[arg-type]
        net.num_classes,
        tuple((g.name, g.width, len(g.layers)) for g in groups),
        kept_layers(net),
        sum(int(m.sum()) for m in dead.values()),
        sum(g.width for g in groups),
        (sum(p.numel() for p in net.parameters()), sum(p.numel() for p in compact.parameters())),
        rel,
        time.perf_counter() - started,
    )


def _out_width(layer: nn.Module) -> int | None:
    if isinstance(layer, nn.Conv2d):
        return layer.out_channels
    if isinstance(layer, nn.Linear):
        return layer.out_features
    return None


def _blame(
    net: Net, dense_state: dict, groups: tuple, dead: dict[str, torch.Tensor], x: torch.Tensor
) -> None:
    """Remove one group at a time from the dense network; raise SweepError naming the first whose removal
    changes the logits or fails."""
    for g in groups:
        net.load_state_dict(dense_state)
        for ng in neuron_groups(net, [g.name]):
            ng.zero_(dead[g.name])
        layers = f" (written by {', '.join(g.layers[:4])}{', ...' if len(g.layers) > 4 else ''})"
        try:
            compact = compact_network(net, {g.name: ~dead[g.name]})
            _, rel = logits_difference(net, compact, x)
        except SweepError:
            raise
        except Exception as err:
            text = str(err).strip().splitlines()
            raise SweepError(
                f"group {g.name!r}{layers}: removing its channels fails: {type(err).__name__}"
                f"{': ' + text[0][:200] if text else ''}"
            ) from None
        if not rel <= RTOL:
            raise SweepError(
                f"group {g.name!r}{layers}: removing its zeroed channels changes the logits by {rel:.3g} of "
                "their scale; an op reading these channels does not keep a zero channel zero"
            )


def check_command(
    model: str,
    input_size: int | None = None,
    in_channels: int | None = None,
    num_classes: int | None = None,
    seed: int = 0,
) -> int:
    """``sweep check``: print the groups and the verdict, exit 0; a SweepError (one line, exit 2) else."""
    net = build(model, input_size, in_channels, num_classes)
    report = check_model(net, seed)
    print("\n".join(report.lines()))
    return 0
