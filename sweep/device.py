"""Where and in what precision a trial computes.

A trial resolves its device and precision once (``resolve_compute``): ``auto`` precision is bf16 on a
CUDA GPU that supports it and fp32 elsewhere; fp16 needs a CUDA GPU and gets a gradient scaler. Autocast
covers the forward pass and the loss only: the weights stay float32 (the optimizer and the sparsity prox
act on them, so the prox's zeros stay exact). On CUDA the inputs go channels_last (the convolutions then
run in that layout) and cuDNN picks its fastest kernels (``cudnn.benchmark``). A CUDA out-of-memory
error ends the trial as ``GPUMemoryError`` with the size asked for."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field

import torch
from torch import Tensor

from sweep.errors import SweepError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


class GPUMemoryError(SweepError):
    """The trial ran out of GPU memory (too many trials packed on one GPU, or too large a batch)."""


def resolve_device(name: str) -> torch.device:
    """``auto`` (a CUDA GPU when one is visible, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``; a GPU
    that is not there is one line that says which ones are."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SweepError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise SweepError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SweepError(f"device {name!r} asked for, but no CUDA GPU is visible; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise SweepError(
                f"device {name!r} asked for, but torch sees {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})"
            )
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
    return device


def resolve_precision(name: str, device: torch.device) -> str:
    """The precision a trial on ``device`` computes in: bf16, fp16 or fp32."""
    cuda = device.type == "cuda"
    if name == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if name == "fp16" and not cuda:
        raise SweepError(
            f"precision fp16 needs a CUDA GPU, and this trial runs on {device}; use bf16 or fp32 there"
        )
    if name == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise SweepError(
            f"precision bf16: {torch.cuda.get_device_name(device)} does not support it; use fp16 or fp32"
        )
    if name not in DTYPES:
        raise SweepError(f"precision must be one of auto, {', '.join(DTYPES)}, got {name!r}")
    return name


@dataclass
class Compute:
    """A trial's device and resolved precision, and what follows from them."""

    device: torch.device
    precision: str  # bf16, fp16 or fp32
    channels_last: bool = False
    dtype: torch.dtype | None = field(init=False)

    def __post_init__(self) -> None:
        self.dtype = DTYPES[self.precision]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def inputs(self, x: Tensor) -> Tensor:
        """A batch of images on the device, in the layout the network runs in."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def start(self) -> None:
        """Set up the device for one trial (a Ray worker runs several): cuDNN autotuning, peak memory
        counted from zero."""
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.cuda.reset_peak_memory_stats(self.device)

    def memory(self) -> dict[str, float]:
        """``gpu_memory_mb``: the most GPU memory the trial held at once (MiB), on CUDA only."""
        if self.device.type != "cuda":
            return {}
        return {"gpu_memory_mb": round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)}


def resolve_compute(device_name: str, precision: str) -> Compute:
    device = resolve_device(device_name)
    return Compute(device, resolve_precision(precision, device), channels_last=device.type == "cuda")


_ASKED = re.compile(r"[Tt]ried to allocate ([0-9.]+) (B|KiB|MiB|GiB|TiB)")


_UNITS = {"B": 2**-20, "KiB": 2**-10, "MiB": 1.0, "GiB": 2**10, "TiB": 2**20}


def out_of_memory(message: str, device: torch.device | None = None) -> GPUMemoryError:
    """The error a trial ends with when CUDA could not allocate: ``out of GPU memory (N MiB asked)``."""
    found = _ASKED.search(message)
    asked = f"{float(found.group(1)) * _UNITS[found.group(2)]:.0f} MiB" if found else "an unknown size"
    held = ""
    if device is not None and device.type == "cuda":
        with contextlib.suppress(RuntimeError):
            held = f"; the trial held {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB at most"
            torch.cuda.empty_cache()
    return GPUMemoryError(
        f"out of GPU memory ({asked} asked{held}): fewer trials per GPU (a larger --gpus-per-trial) or a "
        "smaller batch"
    )
