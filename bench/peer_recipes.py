"""Torch-Pruning (``torch_pruning``) peer recipes that sweep's own pruning methods are compared against.

Each recipe starts from a sweep trial checkpoint (the study's baseline), removes channels with
Torch-Pruning until ``flops_target`` of the FLOPs are gone, and trains for exactly ``epochs`` epochs
after the baseline, with sweep's own data pipeline, SGD and learning-rate schedule (one cosine from
``lr`` to 0 over all of them), so only the pruning method differs from a sweep arm:

- ``tp_l1_local``: ``MagnitudeImportance(p=1)``, the same ratio in every layer, one-shot, then fine-tuning.
- ``tp_l1_global``: the same with ``global_pruning=True``.
- ``tp_group_norm``: ``GroupNormPruner`` (DepGraph's group sparsity, CVPR 2023, with the group norm
  importance normalised by its maximum as Torch-Pruning's CIFAR benchmark uses), global: ``reg_epochs``
  of training with its group regulariser at ``reg``, then pruned, then ``epochs - reg_epochs`` epochs of
  fine-tuning.

The pruning ratio that reaches the FLOPs target is found by bisection on copies of the network, FLOPs
counted by ``sweep.measure.size.measure`` (the counter sweep reports with): the smallest ratio that
removes at least the target, the rule sweep's own ``flops_target`` follows. The classifier's output layer (the
last ``nn.Linear``) is never pruned. Data as the baseline trial read it (its dataset, held-out split,
input size and flips); training in float32.

    python bench/peer_recipes.py tp_l1_global CHECKPOINT --target 0.45 --epochs 16 --data-dir DIR

prints the result as one JSON line."""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from sweep import models
from sweep.config import TrialConfig
from sweep.data import datasets as data
from sweep.measure import EVAL_BATCH, EVAL_BATCH_CPU, top1_error
from sweep.measure.size import measure
from sweep.train.checkpoint import load_checkpoint
from sweep.train.trial import HOLDOUT_SEED, learning_rate, seed_everything

RECIPES = ("tp_l1_local", "tp_l1_global", "tp_group_norm")
BISECT_STEPS = 14
TOLERANCE = 0.005  # share of FLOPs: stop the bisection within half a percentage point of the target
MAX_RATIO = 0.95  # upper end of the bisection's pruning ratios


def output_layer(model: nn.Module) -> nn.Linear:
    """The classifier's output layer: the last ``nn.Linear`` of ``model``."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the network has no nn.Linear output layer to keep whole")
    return linears[-1]


def make_pruner(
    recipe: str, model: nn.Module, example: torch.Tensor, ratio: float, reg: float
) -> tp.pruner.BasePruner:
    """The recipe's Torch-Pruning pruner for ``model`` at channel ``ratio`` (one-shot, one step)."""
    common: dict[str, Any] = {
        "example_inputs": example,
        "pruning_ratio": ratio,
        "iterative_steps": 1,
        "ignored_layers": [output_layer(model)],
    }
    if recipe == "tp_l1_local":
        return tp.pruner.MagnitudePruner(
            model, importance=tp.importance.MagnitudeImportance(p=1), global_pruning=False, **common
        )
    if recipe == "tp_l1_global":
        return tp.pruner.MagnitudePruner(
            model, importance=tp.importance.MagnitudeImportance(p=1), global_pruning=True, **common
        )
    if recipe == "tp_group_norm":
        return tp.pruner.GroupNormPruner(
            model,
            importance=tp.importance.GroupMagnitudeImportance(p=2, normalizer="max"),
            reg=reg,
            global_pruning=True,
            **common,
        )
    raise ValueError(f"unknown recipe {recipe!r}; one of {', '.join(RECIPES)}")


def prune_at(recipe: str, model: nn.Module, input_size: tuple[int, ...], ratio: float, reg: float) -> None:
    """Remove ``ratio`` of the channels from ``model`` (on the CPU), in place."""
    if ratio <= 0:
        return
    make_pruner(recipe, model, torch.zeros(1, *input_size), ratio, reg).step()


def find_ratio(
    recipe: str, model: nn.Module, input_size: tuple[int, ...], flops_target: float, reg: float
) -> tuple[float, float, int]:
    """Bisect the smallest pruning ratio whose pruned copy of ``model`` has at least ``flops_target`` of
    its FLOPs removed (the rule sweep's own ``flops_target`` follows: channel counts are whole, so the
    removed share moves in steps and lands at or just above the target); returns (ratio, FLOPs share
    removed at it, steps taken)."""
    full = measure(model, input_size).flops
    lo, hi = 0.0, MAX_RATIO
    best: tuple[float, float] | None = None
    most = (0.0, 0.0)
    steps = 0
    while steps < BISECT_STEPS:
        steps += 1
        ratio = (lo + hi) / 2
        twin = copy.deepcopy(model)
        prune_at(recipe, twin, input_size, ratio, reg)
        removed = 1 - measure(twin, input_size).flops / full
        most = max(most, (removed, ratio))
        if removed >= flops_target:
            if best is None or removed <= best[1]:
                best = (ratio, removed)
            if removed - flops_target <= TOLERANCE:
                break
            hi = ratio
        else:
            lo = ratio
    if best is None:  # the target is out of reach: the most this recipe removes
        best = (most[1], most[0])
    return best[0], best[1], steps


def train_epochs(
    model: nn.Module,
    splits: data.Splits,
    epochs: range,
    schedule: Callable[[int, int], float],
    iters_per_epoch: int,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    random_shift: int,
    random_flip: bool,
    seed: int,
    device: torch.device,
    regularize: Callable[[], None] | None = None,
) -> float:
    """Train ``model`` for ``epochs`` (their numbers in the whole run, which fix the batch order and the
    learning rate) as ``sweep.train.trial._train`` does; ``regularize`` runs between backward and the
    optimizer step. Returns the last epoch's mean training loss."""
    train_loss = float("nan")
    for epoch in epochs:
        model.train()
        loss_sum = torch.zeros((), device=device)
        seen = 0
        it = epoch * iters_per_epoch
        for x, y in splits.train.batches(
            batch_size,
            shuffle=True,
            seed=seed * 1000 + epoch,
            shift=random_shift,
            **({"flip": True} if random_flip else {}),
        ):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = schedule(it, epoch)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if regularize is not None:
                regularize()
            optimizer.step()
            loss_sum += loss.detach().float() * y.numel()
            seen += y.numel()
            it += 1
        train_loss = float(loss_sum) / max(seen, 1)
        if not math.isfinite(train_loss):
            raise RuntimeError(f"training loss became {train_loss} in epoch {epoch + 1}: diverged")
    return train_loss


def run_peer(
    recipe: str,
    checkpoint: str,
    flops_target: float,
    *,
    data_dir: str,
    subset: int | None,
    epochs: int,
    lr: float,
    batch_size: int,
    momentum: float,
    weight_decay: float,
    random_shift: int,
    seed: int = 0,
    reg_epochs: int = 4,
    reg: float = 5e-4,
    threads: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    """Prune the baseline in ``checkpoint`` with ``recipe`` to remove ``flops_target`` of its FLOPs and
    train it for ``epochs`` epochs; returns its sizes, errors (percent) and wall time."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; one of {', '.join(RECIPES)}")
    if not 0 < flops_target < 1:
        raise ValueError(f"flops_target is a share of the FLOPs in (0, 1), got {flops_target}")
    group_norm = recipe == "tp_group_norm"
    if group_norm and not 0 <= reg_epochs <= epochs:
        raise ValueError(f"reg_epochs must be in [0, epochs={epochs}], got {reg_epochs}")
    started = time.perf_counter()
    torch.set_num_threads(threads)
    seed_everything(seed)
    dev = torch.device(device)
    ckpt = load_checkpoint(checkpoint)
    base_cfg = ckpt.config
    model = ckpt.model.to("cpu")
    input_size = tuple(model.input_size)
    dataset = base_cfg.dataset or models.default_dataset(base_cfg.model)
    splits = data.load(
        dataset,
        data_dir=data_dir,
        subset=subset,
        holdout=base_cfg.holdout,
        seed=HOLDOUT_SEED,
        num_workers=0,
        input_size=base_cfg.input_size,
    ).to(dev)
    full = measure(model, input_size)
    iters_per_epoch = splits.train.num_batches(batch_size)
    total_iters = epochs * iters_per_epoch
    sched_cfg = TrialConfig(model=base_cfg.model, lr=lr, lr_policy="cosine")

    def schedule(it: int, epoch: int) -> float:
        return learning_rate(sched_cfg, it, epoch, total_iters)

    def sgd(net: nn.Module) -> torch.optim.SGD:
        return torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def train(net: nn.Module, span: range, regularize: Callable[[], None] | None = None) -> None:
        train_epochs(
            net,
            splits,
            span,
            schedule,
            iters_per_epoch,
            sgd(net),
            batch_size,
            random_shift,
            base_cfg.random_flip,
            seed,
            dev,
            regularize,
        )

    pruned_from = 0
    if group_norm and reg_epochs > 0:  # sparse training with the group regulariser, then pruning
        model.to(dev)
        example = torch.zeros(1, *input_size, device=dev)
        pruner = make_pruner(recipe, model, example, 0.5, reg)
        pruner.update_regularizer()
        train(model, range(reg_epochs), lambda: pruner.regularize(model))
        del pruner
        model.to("cpu")
        pruned_from = reg_epochs
    ratio, _, _ = find_ratio(recipe, model, input_size, flops_target, reg)
    prune_at(recipe, model, input_size, ratio, reg)
    size = measure(model, input_size)
    model.to(dev)
    train(model, range(pruned_from, epochs))
    eval_batch = EVAL_BATCH_CPU if dev.type == "cpu" else EVAL_BATCH
    holdout_error, _ = top1_error(model, splits.holdout.batches(eval_batch), dev)
    test_error, _ = top1_error(model, splits.test.batches(EVAL_BATCH), dev)
    return {
        "recipe": recipe,
        "flops_target": flops_target,
        "ratio": ratio,
        "flops": size.flops,
        "flops_full": full.flops,
        "params": size.params,
        "params_full": full.params,
        "flops_removed": 1 - size.flops / full.flops,
        "params_removed": 1 - size.params / full.params,
        "holdout_error": holdout_error,
        "test_error": test_error,
        "seconds": round(time.perf_counter() - started, 3),
        "epochs": epochs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=RECIPES)
    parser.add_argument("checkpoint", help="a sweep trial checkpoint folder or file (the baseline)")
    parser.add_argument("--target", type=float, default=0.45, help="share of FLOPs to remove")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--lr", type=float, default=None, help="default: the baseline's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the baseline's")
    parser.add_argument("--momentum", type=float, default=None, help="default: the baseline's")
    parser.add_argument("--weight-decay", type=float, default=None, help="default: the baseline's")
    parser.add_argument("--random-shift", type=int, default=None, help="default: the baseline's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reg-epochs", type=int, default=4)
    parser.add_argument("--reg", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    cfg = load_checkpoint(Path(args.checkpoint)).config

    def given(value: Any, recorded: Any) -> Any:
        return recorded if value is None else value

    result = run_peer(
        args.recipe,
        args.checkpoint,
        args.target,
        data_dir=given(args.data_dir, cfg.data_dir),
        subset=args.subset,
        epochs=args.epochs,
        lr=given(args.lr, cfg.lr),
        batch_size=given(args.batch_size, cfg.batch_size),
        momentum=given(args.momentum, cfg.momentum),
        weight_decay=given(args.weight_decay, cfg.weight_decay),
        random_shift=given(args.random_shift, cfg.random_shift),
        seed=args.seed,
        reg_epochs=args.reg_epochs,
        reg=args.reg,
        threads=args.threads,
        device=args.device,
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
