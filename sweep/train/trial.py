"""ONE trial: build the network, train it with the proximal sparsity step, evaluate, report each epoch.

Knows nothing of Ray or Optuna: it takes a plain ``TrialConfig`` and a ``report(metrics, checkpoint_dir)``
callable, so the same function runs as ``sweep train``, inside a Ray trial, and in tests.

A trial has a sparse phase (penalty on, its prox after every optimizer step, lambda ramped up over the
warm-up) and an optional debias phase (penalty off, neurons dead at its start held at zero), because the
prox also shrinks the surviving neurons and that costs accuracy."""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.metadata
import importlib.util
import json as jsonlib
import math
import os
import platform
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sweep import models
from sweep._version import __version__
from sweep.config import TrialConfig
from sweep.data import datasets as data
from sweep.device import Compute, out_of_memory, resolve_compute, resolve_device
from sweep.errors import SweepError, quote
from sweep.files import check_writable_folder
from sweep.measure import (
    EVAL_BATCH,
    EVAL_BATCH_CPU,
    compact_latency_ms,
    size_at,
    sparsity_metrics,
    top1_error,
    widths_text,
)
from sweep.sparsity import DeadMask, ProxStep, make_penalty, neuron_groups
from sweep.train.channels import ChannelPlan, method_text, scaled_layer_scales
from sweep.train.checkpoint import save_checkpoint
from sweep.train.rerun import recorded_trial_config
from sweep.train.step import Teacher, TrainStep
from sweep.train.weights import absolute_init, check_init, load_initial_weights

__all__ = ["DivergedError", "resolve_device", "train_command", "train_trial"]

Report = Callable[[dict[str, Any], str | None], None]
NAN_CHECK_EVERY = 50
# Every trial of a study is scored on the same held-out images, whatever its own seed.
HOLDOUT_SEED = 0
# What each epoch leaves in a trial's `history`.
HISTORY_KEYS = ("epoch", "phase", "loss", "top1_error", "neurons", "widths", "epoch_seconds")


class DivergedError(SweepError):
    """The loss became NaN or infinite (for example lambda far too large)."""


def learning_rate(cfg: TrialConfig, it: int, epoch: int, schedule_iters: int) -> float:
    """The learning rate at iteration ``it`` of the running schedule (which the debias phase restarts);
    ``epoch`` counts from the start of training (multistep milestones never move), ``schedule_iters``
    is the running schedule's length (cosine reaches 0 at its end)."""
    if cfg.lr_policy == "inv":  # Caffe's "inv": base_lr * (1 + gamma * iter) ^ (-power)
        return cfg.lr * (1 + cfg.lr_gamma * it) ** (-cfg.lr_power)
    if cfg.lr_policy == "multistep":
        return cfg.lr * cfg.lr_gamma ** sum(epoch >= m for m in cfg.lr_milestones)
    if cfg.lr_policy == "cosine":
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * it / max(schedule_iters, 1)))
    return cfg.lr


def versions() -> dict[str, str]:
    return {
        "sweep": __version__,
        "torch": str(torch.__version__),
        "torchvision": torchvision_version(),
        "python": platform.python_version(),
    }


@functools.cache
def torchvision_version() -> str:
    """``torchvision.__version__`` (local tag included, e.g. ``+cu130``), read from its ``version.py``
    without importing torchvision: that import costs a second or more in every trial's worker process,
    and a trial on an in-memory dataset needs nothing else from it."""
    loaded = sys.modules.get("torchvision")
    if loaded is not None:
        return str(loaded.__version__)
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return "not installed"
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        text = ""
    found = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", text, flags=re.MULTILINE)
    return found.group(1) if found else importlib.metadata.version("torchvision")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_trial(cfg: TrialConfig, report: Report | None = None, out_dir: str | None = None) -> dict[str, Any]:
    """Train one network as ``cfg`` says; returns the final metrics (DESIGN.md's trial attributes).
    The device and precision it resolved are in the metrics' ``config`` (and the checkpoint's)."""
    cfg.validate()
    compute = resolve_compute(cfg.device, cfg.precision)
    try:
        return _train(cfg, compute, report, out_dir)
    except torch.cuda.OutOfMemoryError as err:
        message = str(err)
    # raised here, outside the except: the CUDA error and the tensors its frames hold are let go
    raise out_of_memory(message, compute.device)


def _train(cfg: TrialConfig, compute: Compute, report: Report | None, out_dir: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    seed_everything(cfg.seed)
    device = compute.device
    compute.start()
    cfg = dataclasses.replace(cfg, device=str(device), precision=compute.precision)
    dataset = cfg.dataset or models.default_dataset(cfg.model)
    splits = data.load(
        dataset,
        data_dir=cfg.data_dir,
        subset=cfg.subset,
        holdout=cfg.holdout,
        seed=HOLDOUT_SEED,
        num_workers=min(cfg.num_workers, os.cpu_count() or 1),
        input_size=cfg.input_size,
    ).to(device)  # in-memory images move to the device once; a step reads no host memory
    info = splits.info
    model = models.create(
        cfg.model, num_classes=info.num_classes, in_channels=info.in_channels, input_size=info.input_size
    )
    if cfg.init is not None:
        load_initial_weights(model, cfg.init)
    full_size = size_at(model)
    model.to(device)
    # the network init loaded, frozen, before the first step changes it
    teacher = Teacher(copy.deepcopy(model), cfg.distill, cfg.distill_temperature) if cfg.distill else None
    constrained = neuron_groups(model, cfg.layers)
    unknown_scales = sorted(set(cfg.layer_scales) - set(model.unit_layers()))
    if unknown_scales:
        raise SweepError(
            f"layer_scales names {', '.join(unknown_scales)}; allowed: {', '.join(model.unit_layers())}"
        )
    # after init: the rms scaling measures the network the penalty starts from
    channels = ChannelPlan(cfg, model, constrained, splits, compute, full_size)
    prox = ProxStep(
        constrained,
        make_penalty(cfg.penalty, cfg.alpha),
        cfg.lam if cfg.method == "prox" else 0.0,  # a magnitude trial has no penalty
        scaled_layer_scales(cfg, model, constrained) if cfg.method == "prox" else cfg.layer_scales,
        cfg.lam_scaling,
    )
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    step = TrainStep(model, optimizer, compute, teacher)
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="sweep-trial-"))
    iters_per_epoch = splits.train.num_batches(cfg.batch_size)
    total_iters = iters_per_epoch * cfg.epochs
    warmup_iters = cfg.warmup_epochs * iters_per_epoch
    sparse_epochs = cfg.epochs - cfg.debias_epochs
    use_prox = cfg.method == "prox" and cfg.penalty != "none" and cfg.lam > 0
    # magnitude: pruning at the start (of each of the first prune_steps epochs), then fine-tuning with
    # the pruned channels held at 0
    mask: DeadMask | None = None
    history: list[dict[str, Any]] = []
    it = 0
    # The debias phase restarts the learning-rate schedule (it fine-tunes a new network), so then each
    # phase runs a whole schedule: a cosine anneals the sparse phase to 0, and again the debias phase.
    schedule_start = 0
    restarts = use_prox and cfg.debias_epochs > 0 and cfg.debias_restart
    schedule_iters = iters_per_epoch * sparse_epochs if restarts else total_iters
    metrics: dict[str, Any] = {}
    eval_batch = eval_batch_size(compute)
    for epoch in range(cfg.epochs):
        epoch_start = time.perf_counter()
        mask = channels.at_epoch(epoch, optimizer) or mask
        if epoch == sparse_epochs and use_prox and mask is None:
            mask = channels.at_debias(optimizer)
            if restarts:
                schedule_start = it
                schedule_iters = total_iters - it
        model.train()
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for x, y in splits.train.batches(
            cfg.batch_size,
            shuffle=True,
            seed=cfg.seed * 1000 + epoch,
            shift=cfg.random_shift,
            **({"flip": True} if cfg.random_flip else {}),  # a split type without flips is asked none
        ):
            x, y = compute.inputs(x), y.to(device, non_blocking=True)
            lr = learning_rate(cfg, it - schedule_start, epoch, schedule_iters)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, stepped = step(x, y)  # autocast forward + loss; fp32 weights, optimizer step
            if mask is not None:
                mask(optimizer)
            elif use_prox and stepped:  # on the fp32 weights, after the (scaler's) step
                prox(optimizer, min(1.0, (it + 1) / warmup_iters) if warmup_iters > 0 else 1.0)
                if channels.target_met(it):  # the prox reached its FLOPs target: the debias phase starts
                    mask = channels.at_debias(optimizer)
                    schedule_start, schedule_iters = (it, total_iters - it) if restarts else (0, total_iters)
            loss_sum += loss.detach().float() * y.numel()
            seen += y.numel()
            it += 1
            if it % NAN_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
                break
        train_loss = float(loss_sum) / max(seen, 1)
        if not math.isfinite(train_loss):
            raise DivergedError(
                f"training loss became {train_loss} in epoch {epoch + 1} "
                f"(penalty {cfg.penalty}, lambda {cfg.lam:g}): diverged"
            )
        error, holdout_loss = top1_error(model, splits.holdout.batches(eval_batch), device, compute)
        metrics = {
            "epoch": epoch + 1,
            "phase": "finetune" if cfg.method != "prox" else "debias" if mask is not None else "sparse",
            "loss": round(train_loss, 6),
            "holdout_loss": round(holdout_loss, 6),
            "top1_error": error,
            "lr": lr,
            "penalty_value": float(prox.value()) if use_prox else 0.0,
            **sparsity_metrics(model, full_size),
            **compute.memory(),
            "config": cfg.to_dict(),  # device and precision as resolved
            "epoch_seconds": round(time.perf_counter() - epoch_start, 3),
        }
        history.append({k: metrics[k] for k in HISTORY_KEYS})
        last = epoch + 1 == cfg.epochs
        if last:
            metrics.update(final_metrics(cfg, model, splits, compute, dataset, history, started))
            if channels.ratio is not None:  # the ratio a FLOPs target came to
                metrics["pruned_ratio"] = round(channels.ratio, 6)
            if cfg.lam_scaling != "uniform":  # what it measured, in the checkpoint's metrics
                metrics["lam_scales"] = {
                    g.name: round(s, 4) for g, s in zip(constrained, prox.scales, strict=True)
                }
        # No optimizer state: a trial cut short is re-run, never continued, and momentum would double
        # the file (about 1 GB for the 224 px VGG-13).
        save_checkpoint(
            out,
            model,
            cfg,
            epoch + 1,
            metrics,
            masks={g.name: dead for g, dead in mask.entries} if mask else None,
        )
        if report is not None:
            report(metrics, str(out))
    return metrics


def eval_batch_size(compute: Compute) -> int:
    return EVAL_BATCH_CPU if compute.device.type == "cpu" else EVAL_BATCH


def final_metrics(
    cfg: TrialConfig,
    model: models.Net,
    splits: data.Splits,
    compute: Compute,
    dataset: str,
    history: list[dict[str, Any]],
    started: float,
) -> dict[str, Any]:
    test_error = None
    if cfg.eval_test:
        # in float32 whatever the trial's precision: export measures it again and must find it equal
        test_error, _ = top1_error(model, splits.test.batches(EVAL_BATCH), compute.device)
    extra = {"latency_ms": compact_latency_ms(model)} if cfg.measure_latency else {}
    return {
        **extra,
        "done": True,
        "test_top1_error": test_error,
        "epochs": cfg.epochs,
        "early_stopped": False,
        "dataset": dataset,
        "data_source": splits.source,
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        "versions": versions(),
        "history": history,
        "train_seconds": round(time.perf_counter() - started, 3),
    }


def train_command(
    model: str | None,
    penalty: str | None,
    lam: float | None,
    alpha: float | None,
    layers: str | None,
    epochs: int | None,
    debias_epochs: int | None,
    warmup_epochs: float | None,
    batch_size: int | None,
    lr: float | None,
    random_shift: int | None,
    lr_policy: str | None,
    device: str | None,
    dataset: str | None,
    data_dir: str | None,
    subset: int | None,
    seed: int | None,
    out: str,
    json: bool,
    precision: str | None = None,
    init: str | None = None,
    input_size: int | None = None,
    distill: float | None = None,
    distill_temperature: float | None = None,
    lam_scaling: str | None = None,
    method: str | None = None,
    prune_ratio: float | None = None,
    importance: str | None = None,
    scope: str | None = None,
    flops_target: float | None = None,
    rewind: bool | None = None,
    prune_steps: int | None = None,
    from_trial: str | None = None,
    config: str | None = None,
    storage: str | None = None,
) -> int:
    given = {
        "init": absolute_init(init),
        "dataset": dataset,
        "data_dir": data_dir,
        "subset": subset,
        "input_size": input_size,
        "penalty": penalty,
        "lam": lam,
        "alpha": alpha,
        "layers": [s.strip() for s in layers.split(",") if s.strip()] if layers else None,
        "epochs": epochs,
        "debias_epochs": debias_epochs,
        "warmup_epochs": warmup_epochs,
        "batch_size": batch_size,
        "lr": lr,
        "random_shift": random_shift,
        "lr_policy": lr_policy,
        "seed": seed,
        "device": device,
        "precision": precision,
        "distill": distill,
        "distill_temperature": distill_temperature,
        "lam_scaling": lam_scaling,
        **{"method": method, "prune_ratio": prune_ratio, "importance": importance, "scope": scope},
        **{"flops_target": flops_target, "rewind": rewind, "prune_steps": prune_steps},
    }
    if from_trial is not None or config is not None:  # a whole recorded config (sweep.train.rerun)
        cfg, source = recorded_trial_config(from_trial, config, storage, model, given)
        model = cfg.model
        check_command_config(cfg)
        check_writable_folder(out, "--out")
    else:
        if model is None:
            raise SweepError("say what to train: MODEL, --from STUDY:TRIAL or --config FILE.json")
        model = models.check(model)  # a reference's file made absolute, as the checkpoint records it
        check_writable_folder(out, "--out")
        given.update({k: v for k, v in OPTION_DEFAULTS.items() if given[k] is None})
        cfg, source = command_line_config(model, given)
    compute = resolve_compute(cfg.device, cfg.precision)  # a GPU that is not there: refused before data
    distilled = (
        f"distilled from --init (share {cfg.distill:g}, T {cfg.distill_temperature:g}); "
        if cfg.distill
        else ""
    )
    print(
        f"sweep train {model}: {method_text(cfg)}, {cfg.epochs} epochs "
        f"({cfg.debias_epochs} debias), batch {cfg.batch_size}, lr {cfg.lr:g} ({cfg.lr_policy}); "
        f"{distilled}{compute.device}, {compute.precision}; settings from {source}; checkpoint in {out}",
        flush=True,
    )

    def progress(m: dict[str, Any], _checkpoint: str | None) -> None:
        print(
            f"epoch {m['epoch']:>3}/{cfg.epochs} [{m['phase']}] loss {m['loss']:.4f}  "
            f"held-out error {m['top1_error']:.2f}%  neurons {m['neurons']}  "
            f"({widths_text(m['widths'], m['widths_full'], sep=' ')})  {m['epoch_seconds']:.1f}s",
            flush=True,
        )

    final = train_trial(cfg, progress, out)
    test = final["test_top1_error"]
    print(
        f"done in {final['train_seconds']:.1f}s: held-out error {final['top1_error']:.2f}%, test error "
        f"{test:.2f}%, neurons {final['neurons']}/{sum(final['widths_full'].values())}, params "
        f"{final['params']:,}/{final['params_full']:,} ({100 * (1 - final['params'] / final['params_full']):.1f}% "
        f"removed), FLOPs {final['flops']:,}/{final['flops_full']:,}"
    )
    if final["empty_layers"]:
        print(
            f"warning: layer(s) {', '.join(final['empty_layers'])} lost every neuron: the network is "
            "empty and cannot be exported",
            file=sys.stderr,
        )
    if json:
        print(_json_line(final))
    return 0


# sweep train's defaults for the options that a --from or --config run takes from the recorded config
OPTION_DEFAULTS: dict[str, Any] = {
    "penalty": "group_lasso",
    "lam": 1e-3,
    "alpha": 0.5,
    "debias_epochs": 0,
    "warmup_epochs": 0.0,
    "seed": 0,
    "device": "auto",
    "precision": "auto",
}


def command_line_config(model: str, given: dict[str, Any]) -> tuple[TrialConfig, str]:
    """The model's search space's fixed settings (its training recipe) under the options given on the
    command line; TrialConfig's defaults where the model has no search space. Every setting is checked
    here, before any data is read."""
    from sweep.space import load_space, space_path

    try:
        path: Path | None = space_path(model)
    except SweepError:
        path = None
    if path is None and models.is_external(model):  # sweep.space.default's recipe
        space = load_space(model, None, given.get("dataset"))
        cfg = space.trial_config({}, None, given)
        source = f"{space.path} + the command line"
    elif path is None:
        cfg = TrialConfig(model=model, **{k: v for k, v in given.items() if v is not None})
        dataset = cfg.dataset or models.default_dataset(model)
        cfg.validate(data.info(dataset).input_size if dataset in data.DATASETS else None)
        source = "the command line and defaults"
    else:
        cfg = load_space(model, str(path), given.get("dataset")).trial_config({}, None, given)
        source = f"{path.name} + the command line"
    check_command_config(cfg)
    return cfg, source


def check_command_config(cfg: TrialConfig) -> None:
    """What ``sweep train`` checks of a config before any data is read: its settings, its init weights,
    the layers it names and a nuclear penalty on a network it cannot act on."""
    from sweep.space import sizes as sizes_for
    from sweep.space import unit_layers

    model = cfg.model
    dataset = cfg.dataset or models.default_dataset(model)
    cfg.validate(data.info(dataset).input_size if dataset in data.DATASETS else None)
    check_init(cfg.model, cfg.dataset or models.default_dataset(cfg.model), cfg.init, sweep=False)
    outside = models.is_external(model)  # a model from outside the package is built for the data
    sizes = sizes_for(cfg.dataset) if outside else {}
    allowed = unit_layers(model, cfg.dataset if outside else None)
    unknown = [name for name in cfg.layers or () if name not in allowed]
    if unknown:
        raise SweepError(
            f"--layers names {', '.join(map(quote, unknown))}, not a layer that can lose units; "
            f"allowed: {', '.join(allowed)}"
        )
    if cfg.penalty == "nuclear" and not models.is_chain(model):
        # nuclear acts on single layers; refuse a residual stream or depthwise pair before reading data
        ProxStep(
            neuron_groups(models.create(model, **sizes), cfg.layers),
            make_penalty("nuclear"),
            cfg.lam,
            cfg.layer_scales,
        )


def _json_line(metrics: dict[str, Any]) -> str:
    return jsonlib.dumps({k: v for k, v in metrics.items() if k != "history"}, sort_keys=True)
