"""ONE cost function: what a network costs, and what a trained one would cost once its dead channels are
removed: widths, params, FLOPs, memory.

``measure`` counts a network as it is: its parameters, its FLOPs for one image (from
``torch.utils.flop_counter``, multiply-adds counted as 2; pooling, activations and BatchNorm are not
counted) and its float32 weight memory. ``size_at`` counts what removing channels would leave: a twin of
the network on the meta device (no memory, no compute) is pruned with ``sweep.structure.prune`` from the
alive masks, and the copy that physically remains is measured, so it counts exactly what removing the
channels produces. Results are remembered per set of masks (an epoch whose widths did not move costs
nothing)."""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sweep import models
from sweep.models import Net
from sweep.sparsity import alive_masks
from sweep.structure import prune

BYTES_PER_PARAM = 4  # float32
MIB = 2**20


@dataclass(frozen=True)
class NetworkSize:
    params: int
    flops: int
    memory_mb: float  # float32 weights, MiB

    def as_dict(self) -> dict[str, float]:
        """The card's form: params, FLOPs and memory (MiB, 4 decimals)."""
        return {"params": self.params, "flops": self.flops, "memory_mb": round(self.memory_mb, 4)}


def measure(model: nn.Module, example: torch.Tensor | Sequence[int]) -> NetworkSize:
    """Parameters, FLOPs for ``example`` (one image, or its shape without the batch) and float32 memory
    of ``model`` as it is, counted in eval mode (the mode it was in is put back)."""
    if not isinstance(example, torch.Tensor):
        example = torch.zeros(1, *example)
    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
    return NetworkSize(params, int(counter.get_total_flops()), params * BYTES_PER_PARAM / MIB)


class _Twin:
    """A meta-device copy of one architecture, and the sizes measured on it per keep-mask set."""

    def __init__(self, model: Net) -> None:
        c, h, w = model.input_size
        self.shapes = _shapes(model)
        with torch.device("meta"):
            twin = models.create(model.name, num_classes=model.num_classes, in_channels=c, input_size=(h, w))
            if _shapes(twin) != self.shapes:  # a network that was already made smaller
                twin = copy.deepcopy(model).to("meta")
            self.example = torch.zeros(1, c, h, w)
        self.body = twin.body.eval()
        self.sizes: dict[tuple, NetworkSize] = {}

    def size(self, keep: dict[str, torch.Tensor]) -> NetworkSize:
        key = tuple((name, bytes(mask.cpu().numpy())) for name, mask in sorted(keep.items()))
        if key not in self.sizes:
            body = prune(self.body, self.example, keep)[0] if keep else self.body
            self.sizes[key] = measure(body, self.example)
        return self.sizes[key]


_TWINS: weakref.WeakKeyDictionary[Net, _Twin] = weakref.WeakKeyDictionary()


def _shapes(model: nn.Module) -> tuple:
    return tuple((n, tuple(p.shape)) for n, p in model.named_parameters())


def size_at(model: Net, keep: dict[str, torch.Tensor] | None = None) -> NetworkSize:
    """Size of ``model`` once the channels whose ``keep`` entry is False are removed (``keep``: group root
    -> bool per channel; groups left out keep every channel; None: the model as it is). A group with no
    channel left is measured with one: such a network is unusable anyway, and the trial says so with
    ``empty_layers``."""
    twin = _TWINS.get(model)
    if twin is None or twin.shapes != _shapes(model):
        twin = _TWINS[model] = _Twin(model)
    masks = {}
    for name, mask in (keep or {}).items():
        mask = mask.detach().to("cpu", torch.bool).view(-1)
        if not mask.any():
            mask = mask.clone()
            mask[0] = True
        if not mask.all():
            masks[name] = mask
    return twin.size(masks)


def sparsity_metrics(model: Net, full: NetworkSize | None = None) -> dict:
    """Alive widths and the size of the network that would remain, beside the full network's."""
    masks = alive_masks(model)
    widths = {name: int(mask.sum()) for name, mask in masks.items()}
    full = full or size_at(model)
    now = size_at(model, masks)
    return {
        "neurons": sum(widths.values()),
        "widths": widths,
        "widths_full": model.widths(),
        "empty_layers": [name for name, w in widths.items() if w == 0],
        "params": now.params,
        "params_full": full.params,
        "flops": now.flops,
        "flops_full": full.flops,
        "memory_mb": round(now.memory_mb, 4),
        "memory_mb_full": round(full.memory_mb, 4),
    }
