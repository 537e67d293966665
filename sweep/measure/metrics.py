"""What a trained network would cost once its dead channels are removed: widths, params, FLOPs, memory.

One cost function for every model: a twin of the network on the meta device (no memory, no compute) is
pruned with ``sweep.structure.prune`` from the alive masks, and the copy that physically remains is
measured, so it counts exactly what removing the channels produces. FLOPs come from
``torch.utils.flop_counter`` (multiply-adds counted as 2) for one image; pooling, activations and
BatchNorm are not counted. Results are remembered per set of masks (an epoch whose widths did not move
costs nothing)."""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sweep import models
from sweep.models import Net
from sweep.sparsity import alive_masks
from sweep.structure import prune

if TYPE_CHECKING:
    from sweep.device import Compute

BYTES_PER_PARAM = 4  # float32


@dataclass(frozen=True)
class NetworkSize:
    params: int
    flops: int
    memory_mb: float  # float32 weights, MiB


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


def measure(model: nn.Module, example: torch.Tensor) -> NetworkSize:
    """Parameters, FLOPs for ``example`` (one image) and float32 memory of ``model`` as it is."""
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(example)
    return NetworkSize(params, int(counter.get_total_flops()), params * BYTES_PER_PARAM / 2**20)


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


@contextlib.contextmanager
def cpu_max_pool_channels_last(model: nn.Module, device: torch.device) -> Iterator[None]:
    """While inside, on the CPU, each ``nn.MaxPool2d`` of ``model`` pools a contiguous NCHW input in the
    channels_last layout and hands NCHW on. A maximum is exact in any order, so the outputs are the same
    values; torch's NCHW max-pool kernel is the slow one on the CPU (measured at 1 thread: 32 ms against
    6.5 ms with both copies for cifar10_quick's pool1 on 100 images, 14 ms against 4.7 ms for lenet's on
    200), about half of these networks' forward pass. For evaluation only: a training step keeps torch's
    own kernel (its gradient picks one of several equal maxima, and that choice must not move)."""
    if device.type != "cpu":
        yield
        return
    converted: set[int] = set()

    def before(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        x = args[0]
        if not (isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_contiguous()):
            return None
        converted.add(id(module))
        return (x.contiguous(memory_format=torch.channels_last), *args[1:])

    def after(module: nn.Module, _args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor | None:
        if id(module) not in converted:
            return None
        converted.discard(id(module))
        return out.contiguous()

    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d) and not m.return_indices]
    handles = [
        h for m in pools for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()  # as no_grad, and no version counters or views tracked: the same numbers
def top1_error(
    model: torch.nn.Module, batches, device: torch.device, compute: Compute | None = None
) -> tuple[float, float]:
    """(top-1 error in percent, mean cross-entropy) over an iterable of (images, labels); ``compute``:
    the trial's autocast and input layout. Counted on the device, read once at the end (each batch's
    loss summed in float64, as a Python float sum of them would be)."""
    model.eval()
    wrong = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    total = 0
    with cpu_max_pool_channels_last(model, device):
        for x, y in batches:
            x = compute.inputs(x) if compute is not None else x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with compute.autocast() if compute is not None else contextlib.nullcontext():
                logits = model(x)
            loss_sum += torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum").double()
            wrong += (logits.argmax(dim=1) != y).sum()
            total += int(y.numel())
    return 100.0 * int(wrong) / max(total, 1), float(loss_sum) / max(total, 1)


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
