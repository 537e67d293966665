"""Physically remove dead neurons from a chain network, and prove the result computes the same function.

A neuron whose group (weight row or filter, bias, following BatchNorm gamma and beta) is all zero outputs
exactly zero, so deleting it, and the inputs of the next conv/linear layer that read it, changes nothing.
Between the last conv and the first linear layer a channel becomes a block of ``H*W`` flattened columns.

Layers trained with the ``nuclear`` penalty are low rank rather than narrow; ``compact`` replaces such a
layer by two thin factors (``LowRankPair``) when that is smaller. ``sweep.measure`` measures what that
saves.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn

from sweep import models
from sweep.config import TrialConfig
from sweep.errors import SweepError
from sweep.models import UNIT_TYPES, ChainNet, Net
from sweep.sparsity.groups import BN_TYPES, alive_masks, neuron_groups

# Layers that act on each channel alone and map a zero channel to zero, so a removed channel's absence
# passes through them unchanged. (Sigmoid, for instance, would turn a zero channel into 0.5.)
CHANNELWISE_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Hardtanh,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout,
    nn.Dropout2d,
)
RANK_RTOL = 1e-6


class LowRankPair(nn.Sequential):
    """A conv/linear layer written as two thin ones: ``v`` (in -> rank, no bias) then ``u`` (rank -> out).

    For a conv, ``v`` keeps the kernel, stride and padding and ``u`` is 1x1."""

    def __init__(self, v: nn.Conv2d | nn.Linear, u: nn.Conv2d | nn.Linear) -> None:
        super().__init__(OrderedDict([("v", v), ("u", u)]))

    @property
    def rank(self) -> int:
        v = self.v
        return v.out_channels if isinstance(v, nn.Conv2d) else v.out_features

    @property
    def out_width(self) -> int:
        u = self.u
        return u.out_channels if isinstance(u, nn.Conv2d) else u.out_features

    @classmethod
    def shell(cls, layer: nn.Conv2d | nn.Linear, rank: int) -> LowRankPair:
        """Uninitialised factors of ``rank`` with the shapes that replace ``layer``."""
        if isinstance(layer, nn.Conv2d):
            v: nn.Conv2d | nn.Linear = nn.Conv2d(
                layer.in_channels,
                rank,
                layer.kernel_size,  # type: ignore[arg-type]
                stride=layer.stride,  # type: ignore[arg-type]
                padding=layer.padding,  # type: ignore[arg-type]
                dilation=layer.dilation,  # type: ignore[arg-type]
                bias=False,
                padding_mode=layer.padding_mode,
            )
            u: nn.Conv2d | nn.Linear = nn.Conv2d(rank, layer.out_channels, 1, bias=layer.bias is not None)
        else:
            v = nn.Linear(layer.in_features, rank, bias=False)
            u = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
        return cls(v, u)


def low_rank_layers(config: TrialConfig, model: ChainNet) -> list[str]:
    """The layers a trial trained with the nuclear penalty (none for every other penalty)."""
    if config.penalty != "nuclear":
        return []
    return list(config.layers) if config.layers else model.unit_layers()


def layer_widths(model: ChainNet) -> dict[str, int]:
    """Output width of each layer that can lose units, factorised layers included."""
    out: dict[str, int] = {}
    names = [n for n, m in model.body.named_children() if isinstance(m, (*UNIT_TYPES, LowRankPair))][:-1]
    for name in names:
        m = model.layer(name)
        if isinstance(m, LowRankPair):
            out[name] = m.out_width
        else:
            out[name] = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features  # type: ignore[union-attr]
    return out


def factorised_ranks(model: nn.Module) -> dict[str, int]:
    body = model.body if isinstance(model, ChainNet) else model
    return {n: m.rank for n, m in body.named_children() if isinstance(m, LowRankPair)}


@torch.no_grad()
def masked(model: ChainNet, keep: dict[str, torch.Tensor]) -> ChainNet:
    """A copy of ``model`` with the groups of the neurons not kept set to zero: the dense function that
    the compact model must reproduce."""
    import copy

    out = copy.deepcopy(model).eval()
    for g in neuron_groups(out, list(keep)):
        g.zero_(~keep[g.name].bool())
    return out


def _input_shapes(model: ChainNet) -> dict[str, tuple[int, ...]]:
    """Shape (batch 1) of the input each layer of the chain receives."""
    shapes: dict[str, tuple[int, ...]] = {}
    x = torch.zeros(1, *model.input_size, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for name, layer in model.body.named_children():
            shapes[name] = tuple(x.shape)
            x = layer(x)
    model.train(was_training)
    return shapes


def _check_layer_types(model: ChainNet) -> None:
    known = (*UNIT_TYPES, *BN_TYPES, *CHANNELWISE_TYPES, nn.Flatten)
    for name, layer in model.body.named_children():
        if not isinstance(layer, known):
            raise SweepError(
                f"cannot compact layer {name} of {model.name}: type {type(layer).__name__} is not one that "
                "removing channels is known to be exact for (conv, linear, batchnorm, relu-like "
                "activations, pooling, dropout, flatten)"
            )
        if isinstance(layer, nn.Conv2d) and layer.groups != 1:
            raise SweepError(f"cannot compact layer {name} of {model.name}: grouped convolution")


def _full_keep(model: ChainNet, keep: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    widths = model.widths()
    keep = alive_masks(model) if keep is None else keep
    unknown = sorted(set(keep) - set(widths))
    if unknown:
        raise SweepError(
            f"layers {', '.join(unknown)} cannot lose units in {model.name}; allowed: {', '.join(widths)}"
        )
    out: dict[str, torch.Tensor] = {}
    for name, width in widths.items():
        mask = keep.get(name)
        mask = torch.ones(width, dtype=torch.bool) if mask is None else mask.detach().bool().cpu().flatten()
        if mask.numel() != width:
            raise SweepError(f"keep mask for layer {name} has {mask.numel()} entries, the layer has {width}")
        if not mask.any():
            raise SweepError(f"layer {name} has no alive neurons: the network is empty")
        out[name] = mask
    return out


@torch.no_grad()
def _factorise(layer: nn.Conv2d | nn.Linear, rtol: float) -> LowRankPair | None:
    """Two thin factors computing ``layer`` when they hold fewer parameters; None otherwise."""
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        return None
    w = layer.weight.detach()
    mat = w.reshape(w.shape[0], -1).double()
    u, s, vh = torch.linalg.svd(mat, full_matrices=False)
    if s.numel() == 0 or s[0] <= 0:
        return None
    rank = int((s > rtol * s[0]).sum())
    out_dim, in_dim = mat.shape
    if rank * (in_dim + out_dim) >= out_dim * in_dim:
        return None
    root = s[:rank].sqrt()
    pair = LowRankPair.shell(layer, rank)
    pair.v.weight.copy_((root[:, None] * vh[:rank]).reshape(pair.v.weight.shape).to(w.dtype))
    pair.u.weight.copy_((u[:, :rank] * root[None, :]).reshape(pair.u.weight.shape).to(w.dtype))
    if layer.bias is not None:
        pair.u.bias.copy_(layer.bias)
    return pair


def compact_network(
    model: Net, keep: dict[str, torch.Tensor] | None = None, *, low_rank: Iterable[str] = ()
) -> Net:
    """Any network without the channels not in ``keep`` (default: its dead ones), the one call export,
    latency and ``sweep check`` make: a chain is rebuilt at its new widths by ``compact`` (which also
    factorises ``low_rank`` layers), any other network is pruned by ``sweep.structure`` (``Net.pruned``)."""
    if isinstance(model, ChainNet):
        return compact(model, keep, low_rank=low_rank)
    if list(low_rank):
        raise SweepError(f"model {model.name!r} is not a chain: its layers cannot be factorised")
    return model.pruned(alive_masks(model) if keep is None else keep)


@torch.no_grad()
def compact(
    model: ChainNet,
    keep: dict[str, torch.Tensor] | None = None,
    *,
    low_rank: Iterable[str] = (),
    rank_rtol: float = RANK_RTOL,
) -> ChainNet:
    """A new, physically smaller ChainNet without the neurons not in ``keep`` (default: the dead ones).

    It computes the same function as ``masked(model, keep)``; with the default ``keep`` that is ``model``
    itself. Layers named in ``low_rank`` become ``LowRankPair`` factors where that holds fewer parameters.
    A layer left with no neuron raises SweepError, as does a layer type the slicer does not know. The
    result lives on the CPU, wherever ``model`` is."""
    _check_layer_types(model)
    keep = _full_keep(model, keep)
    low_rank = list(low_rank)
    unit = model.unit_layers()
    bad = [n for n in low_rank if n not in unit]
    if bad:
        raise SweepError(f"cannot factorise {', '.join(bad)} in {model.name}; allowed: {', '.join(unit)}")

    c, h, w = model.input_size
    new = models.create(
        model.name,
        num_classes=model.num_classes,
        in_channels=c,
        input_size=(h, w),
        widths={n: int(m.sum()) for n, m in keep.items()},
    ).eval()
    shapes = _input_shapes(model)
    new_layers = dict(new.body.named_children())
    if list(new_layers) != [n for n, _ in model.body.named_children()]:
        raise SweepError(f"model {model.name} rebuilt with other widths has different layers")

    # Indices of the channels/features that the next conv/linear layer reads; None: all of them.
    incoming: torch.Tensor | None = None
    for name, old in model.body.named_children():
        fresh = new_layers[name]
        if isinstance(old, UNIT_TYPES):
            out_idx = keep[name].nonzero().flatten() if name in keep else None
            weight = old.weight.detach().cpu()
            if incoming is not None:
                weight = weight.index_select(1, incoming)
            if out_idx is not None:
                weight = weight.index_select(0, out_idx)
            _copy(fresh.weight, weight, name)
            if old.bias is not None:
                bias = old.bias.detach().cpu()
                _copy(fresh.bias, bias if out_idx is None else bias.index_select(0, out_idx), name)
            incoming = out_idx
        elif isinstance(old, BN_TYPES):
            for attr in ("weight", "bias", "running_mean", "running_var"):
                src = getattr(old, attr)
                if src is not None:
                    src = src.detach().cpu()
                    _copy(
                        getattr(fresh, attr), src if incoming is None else src.index_select(0, incoming), name
                    )
            if old.num_batches_tracked is not None:
                fresh.num_batches_tracked.copy_(old.num_batches_tracked)
        elif isinstance(old, nn.Flatten) and incoming is not None:
            spatial = 1
            for d in shapes[name][2:]:
                spatial *= d
            incoming = (incoming[:, None] * spatial + torch.arange(spatial)[None, :]).flatten()

    for name in low_rank:
        pair = _factorise(new.layer(name), rank_rtol)  # type: ignore[arg-type]
        if pair is not None:
            setattr(new.body, name, pair)
    return new.eval()


def _copy(dst: torch.Tensor, src: torch.Tensor, name: str) -> None:
    if dst.shape != src.shape:
        raise SweepError(
            f"layer {name}: sliced shape {tuple(src.shape)} does not fit the rebuilt {tuple(dst.shape)}"
        )
    dst.copy_(src)


@torch.no_grad()
def logits_difference(
    dense: nn.Module, compact_model: nn.Module, inputs: torch.Tensor
) -> tuple[float, float]:
    """(max |dense - compact| over the logits, that divided by the dense logits' largest magnitude)."""
    dense_was, compact_was = dense.training, compact_model.training
    dense.eval()
    compact_model.eval()
    try:
        a = dense(inputs).double()
        b = compact_model(inputs).double()
    finally:
        dense.train(dense_was)
        compact_model.train(compact_was)
    if a.shape != b.shape:
        raise SweepError(
            f"the compact model gives logits of shape {tuple(b.shape)}, the dense {tuple(a.shape)}"
        )
    diff = float((a - b).abs().max())
    scale = float(a.abs().max())
    return diff, diff / max(scale, 1e-12)


def check_equivalence(
    dense: nn.Module, compact_model: nn.Module, inputs: torch.Tensor, rtol: float = 1e-5
) -> float:
    """Raise SweepError unless both models give the same logits on ``inputs`` (max abs difference at most
    ``rtol`` times the dense logits' largest magnitude). Returns the relative difference."""
    diff, rel = logits_difference(dense, compact_model, inputs)
    if not rel <= rtol:
        raise SweepError(
            f"the compact model does not compute the dense one's function: max logit difference {diff:.3g} "
            f"({rel:.3g} of the logits' scale, allowed {rtol:g}) on {inputs.shape[0]} inputs"
        )
    return rel
