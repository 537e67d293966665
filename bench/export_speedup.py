"""CPU speed-up of a compact network over its dense form, against the FLOP ratio, side by side in one run.

vgg13_cifar (or any registered ``--model``) with a synthetic sparsity pattern: half the filters/neurons
of every channel group set to zero (chosen at random, seed 0), then compacted: a chain by
``sweep.sparsity.compact``, any other network (resnet20, mobilenet_v2) by ``sweep.structure``'s pruning, as export
does. Dense and compact forward passes alternate so both see the same machine load; the medians are
compared.

    python bench/export_speedup.py [--threads T] [--model vgg13_cifar] [--keep 0.5]
"""

from __future__ import annotations

import argparse

import torch

from sweep import models
from sweep.measure import latency_ms, measure
from sweep.sparsity import check_equivalence, compact_network, masked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg13_cifar")
    parser.add_argument("--keep", type=float, default=0.5, help="share of units kept in each layer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=float, default=4.0, help="seconds of timing per batch size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    full = models.create(args.model).eval()
    keep = {}
    for name, width in full.widths().items():
        mask = torch.zeros(width, dtype=torch.bool)
        mask[torch.randperm(width)[: max(1, round(args.keep * width))]] = True
        keep[name] = mask
    dense = masked(full, keep)  # the dense network with the dropped groups at zero
    small = compact_network(dense, keep)
    check_equivalence(dense, small, torch.randn(8, *dense.input_size))

    before, after = measure(dense, dense.input_size), measure(small, small.input_size)
    flop_ratio = before.flops / after.flops
    print(
        f"{args.model}, {args.keep:.0%} of the units of every layer kept, {args.threads} thread(s); "
        f"params {before.params:,} -> {after.params:,}, "
        f"FLOPs/image {before.flops / 1e6:.1f}M -> {after.flops / 1e6:.1f}M (ratio {flop_ratio:.2f})"
    )
    print(f"{'batch':>6}{'dense ms':>11}{'compact ms':>12}{'speed-up':>10}{'speed-up/FLOP ratio':>21}")
    for batch in (1, 64):
        t = latency_ms({"dense": dense, "compact": small}, dense.input_size, batch, budget_s=args.budget)
        speedup = t["dense"] / t["compact"]
        print(
            f"{batch:>6}{t['dense']:>11.2f}{t['compact']:>12.2f}{speedup:>10.2f}{speedup / flop_ratio:>21.2f}"
        )


if __name__ == "__main__":
    main()
