"""What a trained network would cost once its dead neurons are removed: widths, params, FLOPs, memory.

Sizes are measured on the network rebuilt at the alive widths (on the meta device: no memory, no
compute), so they count exactly what export will produce. FLOPs come from ``torch.utils.flop_counter``
(multiply-adds counted as 2) for one image; pooling and activations are not counted."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from sweep import models
from sweep.models.base import ChainNet
from sweep.sparsity.groups import alive_widths

BYTES_PER_PARAM = 4  # float32


@dataclass(frozen=True)
class NetworkSize:
    params: int
    flops: int
    memory_mb: float  # float32 weights, MiB


def size_at(model: ChainNet, widths: dict[str, int] | None = None) -> NetworkSize:
    """Size of ``model``'s architecture at ``widths`` (its own widths when None). A width of 0 is
    measured as 1: such a network is unusable anyway, and the trial says so with ``empty_layers``."""
    clamped = {k: max(1, v) for k, v in (widths or {}).items()}
    c, h, w = model.input_size
    with torch.device("meta"):
        net = models.create(
            model.name, num_classes=model.num_classes, in_channels=c, input_size=(h, w), widths=clamped
        )
        x = torch.zeros(1, c, h, w)
    params = sum(p.numel() for p in net.parameters())
    with FlopCounterMode(display=False) as counter:
        net.eval()(x)
    return NetworkSize(params, int(counter.get_total_flops()), params * BYTES_PER_PARAM / 2**20)


@torch.no_grad()
def top1_error(model: torch.nn.Module, batches, device: torch.device) -> tuple[float, float]:
    """(top-1 error in percent, mean cross-entropy) over an iterable of (images, labels)."""
    model.eval()
    wrong = total = 0
    loss_sum = 0.0
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        loss_sum += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
        wrong += int((logits.argmax(dim=1) != y).sum())
        total += int(y.numel())
    return 100.0 * wrong / max(total, 1), loss_sum / max(total, 1)


def sparsity_metrics(model: ChainNet, full: NetworkSize | None = None) -> dict:
    """Alive widths and the size of the network that would remain, beside the full network's."""
    widths = alive_widths(model)
    full = full or size_at(model)
    now = size_at(model, widths)
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
