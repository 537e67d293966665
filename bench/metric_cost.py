"""Cost of an epoch's sparsity metrics (alive widths, params/FLOPs/memory of the network that would
remain) relative to the epoch itself, on real CIFAR-10.

Trains one sparse epoch per lambda (the resnet20 search space's recipe, --subset images) and times each
call of ``sparsity_metrics``; a lambda that kills channels makes the cost function prune and measure a new
network, one that kills none finds its result remembered.

    SWEEP_DATA_DIR=../shared/data python bench/metric_cost.py [--model resnet20] [--subset 5000]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from sweep.config import TrialConfig
from sweep.train import trial as train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--lams", default="0.01,0.06")
    args = parser.parse_args()
    calls: list[float] = []
    measured = train.sparsity_metrics

    def timed(model: Any, full: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        out = measured(model, full)
        calls.append(time.perf_counter() - t0)
        return out

    train.sparsity_metrics = timed  # type: ignore[assignment]
    for lam in (float(v) for v in args.lams.split(",")):
        calls.clear()
        cfg = TrialConfig(
            model=args.model,
            subset=args.subset,
            epochs=1,
            penalty="group_lasso",
            lam=lam,
            batch_size=128,
            lr=0.1,
            lr_policy="cosine",
            random_shift=4,
            weight_decay=1e-4,
            device="cpu",
            eval_test=False,
        )
        final = train.train_trial(cfg)
        epoch = final["epoch_seconds"]
        print(
            f"{args.model} lambda {lam:g}: epoch {epoch:.2f} s, metrics {calls[-1]:.4f} s "
            f"({100 * calls[-1] / epoch:.2f}% of the epoch); neurons {final['neurons']}/"
            f"{sum(final['widths_full'].values())}, FLOPs {final['flops']:,}/{final['flops_full']:,}"
        )


if __name__ == "__main__":
    main()
