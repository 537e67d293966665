"""Cost of the proximal step relative to a plain training step (forward, backward, SGD step).

Runs the same batches through the same network with and without the group-lasso prox on every layer
that can lose units, interleaving the two so both see the same machine load, and prints ratios.

    python bench/prox_cost.py [--steps N] [--threads T]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sweep import models
from sweep.sparsity import ProxStep, make_penalty, neuron_groups

CASES = [
    ("lenet", (1, 28, 28), 64),
    ("vgg13_cifar", (3, 32, 32), 64),
    ("resnet20", (3, 32, 32), 64),
    ("mobilenet_v2", (3, 32, 32), 64),
]


def make_step(model: torch.nn.Module, prox: ProxStep | None, opt: torch.optim.Optimizer):
    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if prox is not None:
            prox(opt)

    return step


def measure(name: str, shape: tuple[int, int, int], batch: int, steps: int) -> dict[str, float]:
    torch.manual_seed(0)
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    runs = {}
    for label in ("plain", "prox"):
        model = models.create(name)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        prox = ProxStep(neuron_groups(model), make_penalty("group_lasso"), 1e-4) if label == "prox" else None
        runs[label] = (make_step(model, prox, opt), prox, opt)
    times: dict[str, list[float]] = {"plain": [], "prox": [], "prox_only": []}
    for i in range(steps + 2):
        for label, (step, prox, opt) in runs.items():
            t0 = time.perf_counter()
            step(x, y)
            elapsed = time.perf_counter() - t0
            if i >= 2:  # the first steps warm up allocators and kernels
                times[label].append(elapsed)
                if prox is not None:
                    t0 = time.perf_counter()
                    prox(opt)
                    times["prox_only"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "plain_ms": 1e3 * med["plain"],
        "prox_ms": 1e3 * med["prox_only"],
        "ratio": med["prox"] / med["plain"],
        "prox_share": med["prox_only"] / med["plain"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, {args.steps} steps each, batch 64, group lasso on every unit layer")
    print(f"{'model':<14}{'step ms':>10}{'prox ms':>10}{'prox/step':>11}{'with/without':>14}")
    for name, shape, batch in CASES:
        steps = args.steps if name == "lenet" else max(5, args.steps // 6)
        r = measure(name, shape, batch, steps)
        print(
            f"{name:<14}{r['plain_ms']:>10.2f}{r['prox_ms']:>10.2f}{r['prox_share']:>10.1%}"
            f"{r['ratio']:>14.3f}"
        )


if __name__ == "__main__":
    main()
