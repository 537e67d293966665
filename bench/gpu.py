"""Trials at GPU speed, measured side by side in one run on whatever CUDA GPU is present.

1. The GPU's bf16 matmul peak: a large bf16 matmul, timed.
2. vgg13_cifar and resnet20, one epoch of 50,000 CIFAR-sized images (synthetic uint8 tensors on the GPU,
   the trial's own path: ``TensorSplit`` on the device, ``Compute``/``TrainStep`` of ``sweep.train.step``
   and the group-lasso prox on every layer after each step) in fp32 and in bf16; images/s and the share
   of the bf16 matmul peak that the model's training FLOPs (3x its forward FLOPs) reach.
3. 1, 2 and 4 resnet20 bf16 trials packed on the GPU, each its own process (as Ray runs them with
   ``--gpus-per-trial 1``, 0.5, 0.25), all started together: aggregate images/s against one trial's.
4. The ImageNet path: a synthetic ImageFolder of JPEGs at 224 px written into a temporary folder, read
   as ``sweep`` reads imagenet (``FolderSplit``: DataLoader workers decoding, random resized crops,
   pinned memory), feeding resnet18 bf16 training steps; against the same steps on tensors already on
   the GPU, and the decode throughput of the loader alone per worker count.

On a machine without a CUDA GPU it prints that no GPU is present and exits 0.

    python bench/gpu.py [--out results/gpu.md] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's sweep, here and in workers
CIFAR_IMAGES = 50_000
PACK_SECONDS = 20.0  # each packing measurement's timed window


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_mib(device: torch.device, reset: bool = False) -> float:
    if device.type != "cuda":
        return 0.0
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


# ----------------------------------------------------------------------------------- matmul peak


def matmul_peak_tflops(n: int = 8192, iters: int = 50) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(3):
        start.record()
        for _ in range(iters):
            a @ b
        end.record()
        synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * n**3 * iters / best / 1e12


# ------------------------------------------------------------------------------- the trial's loop


def cifar_split(n: int, device: torch.device, seed: int = 0) -> Any:
    from sweep.data import TensorSplit

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    return TensorSplit(images, labels, mean, std).to(device)


def trial_parts(
    model_name: str, precision: str, device: torch.device, num_classes: int = 10, side: int = 32
) -> tuple[Any, ...]:
    """What ``train_trial`` builds for one trial: network, SGD, prox, compute, step."""
    from sweep import models
    from sweep.device import Compute
    from sweep.sparsity import ProxStep, make_penalty, neuron_groups
    from sweep.train import TrainStep

    model = models.create(model_name, num_classes=num_classes, in_channels=3, input_size=(side, side))
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    prox = ProxStep(neuron_groups(model), make_penalty("group_lasso"), 1e-5)
    compute = Compute(device, precision, channels_last=True)
    compute.start()
    return model, optimizer, prox, compute, TrainStep(model, optimizer, compute)


def run_steps(parts: tuple[Any, ...], batches: Any, limit: int | None = None) -> int:
    """The trial's per-step work (train_trial's inner loop without the learning-rate schedule)."""
    model, optimizer, prox, compute, step = parts
    model.train()
    images = 0
    for i, (x, y) in enumerate(batches):
        if limit is not None and i >= limit:
            break
        x, y = compute.inputs(x), y.to(compute.device, non_blocking=True)
        _, stepped = step(x, y)
        if stepped:
            prox(optimizer)
        images += len(y)
    return images


def forward_flops(model_name: str) -> int:
    from sweep import models
    from sweep.measure import size_at

    return size_at(models.create(model_name)).flops


def epoch_seconds(model_name: str, precision: str, split: Any, batch: int) -> tuple[float, float]:
    """(seconds of one epoch over ``split``, peak GPU MiB), after a warm-up of 30 steps."""
    device = split.device
    parts = trial_parts(model_name, precision, device)
    run_steps(parts, split.batches(batch, shuffle=True, seed=1), limit=30)
    synchronize()
    peak_mib(device, reset=True)
    start = time.perf_counter()
    run_steps(parts, split.batches(batch, shuffle=True, seed=2))
    synchronize()
    return time.perf_counter() - start, peak_mib(device)


# --------------------------------------------------------------------------------- packed trials


def _packed_worker(rank: int, barrier: Any, results: Any, seconds: float, device_name: str) -> None:
    device = torch.device(device_name)
    split = cifar_split(10_000, device, seed=rank)
    parts = trial_parts("resnet20", "bf16", device)
    run_steps(parts, split.batches(128, shuffle=True, seed=0), limit=20)
    synchronize()
    barrier.wait()
    start = time.perf_counter()
    images, epoch = 0, 1
    while time.perf_counter() - start < seconds:
        for x, y in split.batches(128, shuffle=True, seed=epoch):
            images += run_steps(parts, [(x, y)])
            if time.perf_counter() - start >= seconds:
                break
        epoch += 1
    synchronize()
    results.put((rank, images / (time.perf_counter() - start)))


def packed_images_per_s(trials: int, seconds: float, device: str = "cuda:0") -> float:
    import queue

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(trials)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_packed_worker, args=(r, barrier, results, seconds, device)) for r in range(trials)
    ]
    for p in procs:
        p.start()
    rates: dict[int, float] = {}
    deadline = time.perf_counter() + seconds + 180
    while len(rates) < trials and time.perf_counter() < deadline:
        try:
            rank, rate = results.get(timeout=5)
            rates[rank] = rate
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                break
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    if len(rates) != trials:
        raise RuntimeError(f"{trials - len(rates)} of {trials} packed trial processes gave no result")
    return float(sum(rates.values()))


# -------------------------------------------------------------------------------- ImageNet path


def write_jpeg_folder(root: Path, classes: int, per_class: int, side: int = 224) -> None:
    """root/train/cNN/*.jpg and root/val/cNN/*.jpg: smooth random colour images, JPEG quality 90."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", max(1, per_class // 10))):
        for c in range(classes):
            folder = root / split / f"c{c:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                small = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
                image = Image.fromarray(small).resize((side, side), Image.BILINEAR)
                noise = rng.integers(-12, 13, (side, side, 3))
                pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


def imagenet_path(root: Path, workers: list[int], batch: int, device: torch.device) -> dict[str, Any]:
    from sweep.data import datasets as data

    out: dict[str, Any] = {"decode": {}}
    for w in workers:  # the loader alone: decode + crop + to tensor, into pinned memory
        split = data.load("imagenet", data_dir=str(root), num_workers=w).train.to(device)
        iterator = iter(split.batches(batch, shuffle=True, seed=0))
        next(iterator)  # workers started
        start, images = time.perf_counter(), 0
        for x, _ in iterator:
            images += len(x)
        out["decode"][w] = images / (time.perf_counter() - start)
    best = max(workers)
    splits = data.load("imagenet", data_dir=str(root), num_workers=best).to(device)
    classes = len(splits.info.classes)
    parts = trial_parts("resnet18", "bf16", device, num_classes=classes, side=224)
    run_steps(parts, splits.train.batches(batch, shuffle=True, seed=0), limit=5)
    synchronize()
    start = time.perf_counter()
    images = run_steps(parts, splits.train.batches(batch, shuffle=True, seed=1))
    synchronize()
    out["folder_s"], out["images"], out["workers"] = time.perf_counter() - start, images, best
    # the same steps on tensors already on the GPU: what the model alone allows
    x = torch.randn(batch, 3, 224, 224, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    steps = -(-images // batch)
    run_steps(parts, [(x, y)] * 5)
    synchronize()
    start = time.perf_counter()
    run_steps(parts, [(x, y)] * steps)
    synchronize()
    out["gpu_s"] = (time.perf_counter() - start) * images / (steps * batch)
    return out


# ------------------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the table as markdown here")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a check that it runs)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA GPU is present on this machine; nothing to measure")
        return 0
    started = time.perf_counter()
    device = torch.device("cuda", 0)
    name = torch.cuda.get_device_name(device)
    n_images = 10_000 if args.quick else CIFAR_IMAGES
    lines = [
        f"# bench/gpu.py on {name}",
        "",
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, {os.cpu_count()} CPU cores, "
        f"{time.strftime('%Y-%m-%d %H:%M')}{' (--quick)' if args.quick else ''}.",
        "",
    ]

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    side = 4096 if args.quick else 8192
    peak = matmul_peak_tflops(side)
    emit(f"bf16 matmul peak measured: **{peak:.0f} TFLOP/s** ({side}^3, best of 3 x 50)")
    emit()
    emit(f"## Epoch of {n_images:,} CIFAR-sized images (trial loop, data on the GPU, prox every step)")
    emit()
    emit("| model | batch | fp32 s | bf16 s | bf16 speed-up | bf16 images/s | of bf16 peak | peak MiB bf16 |")
    emit("| --- | --- | --- | --- | --- | --- | --- | --- |")
    split = cifar_split(n_images, device)
    for model_name in ("vgg13_cifar", "resnet20"):
        fp32, _ = epoch_seconds(model_name, "fp32", split, 128)
        bf16, mem = epoch_seconds(model_name, "bf16", split, 128)
        rate = n_images / bf16
        share = 3 * forward_flops(model_name) * rate / (peak * 1e12)
        emit(
            f"| {model_name} | 128 | {fp32:.2f} | {bf16:.2f} | **{fp32 / bf16:.2f}x** | {rate:,.0f} | "
            f"**{share:.0%}** | {mem:,.0f} |"
        )
    del split
    torch.cuda.empty_cache()
    emit()
    emit(f"## resnet20 bf16 trials packed on one GPU (one process each, {PACK_SECONDS:.0f} s window)")
    emit()
    emit("| trials | aggregate images/s | vs one trial |")
    emit("| --- | --- | --- |")
    pack_seconds = 8.0 if args.quick else PACK_SECONDS
    one = None
    for trials in (1, 2, 4):
        rate = packed_images_per_s(trials, pack_seconds)
        one = one or rate
        emit(f"| {trials} | {rate:,.0f} | **{rate / one:.2f}x** |")
    emit()
    classes, per_class = (10, 50) if args.quick else (20, 250)
    workers = [w for w in (1, 2, 4, 8, 16) if w <= (os.cpu_count() or 1)]
    with tempfile.TemporaryDirectory(prefix="gpu-bench-jpegs-") as tmp:
        t0 = time.perf_counter()
        write_jpeg_folder(Path(tmp), classes, per_class)
        written = time.perf_counter() - t0
        result = imagenet_path(Path(tmp), workers, 128, device)
    n = result["images"]
    emit(
        f"## ImageNet path: {classes * per_class:,} synthetic 224 px JPEGs ({written:.0f} s to write), "
        "resnet18 bf16"
    )
    emit()
    emit("| loader workers | decode images/s | per worker |")
    emit("| --- | --- | --- |")
    for w, rate in result["decode"].items():
        emit(f"| {w} | {rate:,.0f} | {rate / w:,.0f} |")
    emit()
    gpu_rate = n / result["gpu_s"]
    per_worker = statistics.median(rate / w for w, rate in result["decode"].items())
    emit("| path | epoch s | images/s |")
    emit("| --- | --- | --- |")
    folder_rate = n / result["folder_s"]
    emit(f"| folder, {result['workers']} workers, pinned | {result['folder_s']:.2f} | {folder_rate:,.0f} |")
    emit(f"| tensors already on the GPU | {result['gpu_s']:.2f} | {gpu_rate:,.0f} |")
    emit()
    emit(
        f"folder / GPU-only epoch: **{result['folder_s'] / result['gpu_s']:.2f}x**; at {per_worker:,.0f} "
        f"decoded images/s per worker, keeping resnet18 busy takes about {gpu_rate / per_worker:.0f} workers "
        "per GPU"
    )
    emit()
    emit(f"total {time.perf_counter() - started:.0f} s")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
