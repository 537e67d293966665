"""How well a network does: top-1 error and mean cross-entropy over a split, and the batch sizes that
training and export measure with (so that export's re-measured error matches training's to the image)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from sweep.device import Compute

EVAL_BATCH = 500  # the test error (export measures it again with the same) and held-out error on a GPU
# The held-out error of every epoch on the CPU: batches of 200 keep a LeNet/CIFAR layer's activations in
# cache, measured 25% faster than 500 at 1 thread for lenet and cifar10_quick, logits equal image by image.
EVAL_BATCH_CPU = 200


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


def measure_error(model: nn.Module, split: Any, device: torch.device) -> float:
    """Top-1 error (percent) of ``model`` on ``split`` in float32, in batches of ``EVAL_BATCH`` as the
    trial's test error was measured; the model is left on the CPU."""
    model.to(device)
    try:
        return top1_error(model, split.batches(EVAL_BATCH), device)[0]
    finally:
        model.to("cpu")
