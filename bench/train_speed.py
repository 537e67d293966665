"""`sweep train`'s epoch time against a bare PyTorch loop on the same in-memory tensors.

One process, both loops interleaved epoch by epoch so both see the same machine load and the same
``torch.get_num_threads()`` (``--threads``): `sweep train`'s trial (``sweep.train.trial.train_trial`` with the
model's search-space recipe and `sweep train`'s default penalty, group lasso at lambda 1e-3 on the layers
`sweep train` constrains by default (lenet: every layer that can lose units; cifar10_quick: its recipe's
conv3 and fc1): prox after every step, held-out evaluation, sparsity metrics and checkpoint every epoch)
runs an epoch, then, from its report callback, the bare loop runs one: the same network built from the
same seed, the same training images normalised once into one float tensor, the same batch size,
``torch.optim.SGD`` with the same lr, momentum and weight decay, shuffled by ``randperm`` and batched by
``index_select`` as the trial's batches are, and nothing else (no prox, no evaluation, no metrics).
``random_shift`` is 0 for the trial, since the bare loop does not shift. A subset holds out the share the
whole dataset holds out (1 in 12 of MNIST, 1 in 10 of CIFAR-10), so the held-out evaluation weighs on an
epoch as in `sweep train` on all of it. The first epoch of each is a warm-up (data read, model built,
allocators) and is left out; the trial's last epoch is too (it also measures the test error, once per
trial). ratio = the median over the measured epochs of (trial epoch / the bare epoch run right after it);
the ratio of the two medians is printed beside it.

    python bench/train_speed.py [--epochs 6] [--threads T] [--subset-mnist 30000] [--subset-cifar 20000]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from sweep import models
from sweep.data import datasets as data
from sweep.train import HOLDOUT_SEED, command_line_config, seed_everything, train_trial

CASES = (("lenet", "mnist"), ("cifar10_quick", "cifar10"))
FULL_TRAIN = {"mnist": 60000, "cifar10": 50000}


def bare_loop(cfg: Any) -> Any:
    """An epoch function of the plain PyTorch loop for ``cfg``'s model, batch, optimizer settings."""
    splits = data.load(
        cfg.dataset, data_dir=cfg.data_dir, subset=cfg.subset, holdout=cfg.holdout, seed=HOLDOUT_SEED
    )
    train = splits.train
    rows = train.index if train.index is not None else torch.arange(len(train.labels))
    x_all = train.images[rows].to(torch.float32).mul_(train._scale).sub_(train._shift)
    y_all = train.labels[rows]
    info = splits.info
    seed_everything(cfg.seed)
    model = models.create(
        cfg.model, num_classes=info.num_classes, in_channels=info.in_channels, input_size=info.input_size
    )
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)

    def epoch() -> float:
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(y_all), generator=generator)
        for i in range(0, len(y_all), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]  # index_select, as the trial's batches: x[idx] is slower
            x, y = x_all.index_select(0, idx), y_all.index_select(0, idx)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - start

    return epoch, len(y_all)


def measure(model: str, dataset: str, subset: int, epochs: int, data_dir: str | None) -> dict[str, Any]:
    # held out in the share the whole dataset holds out (5,000 of 60,000 or 50,000), so the held-out
    # evaluation weighs on an epoch as in `sweep train` on all of it (a subset's default is a sixth)
    holdout = max(1, round(subset * data.DATASETS.get(dataset).default_holdout / FULL_TRAIN[dataset]))
    given = {"dataset": dataset, "data_dir": data_dir, "subset": subset, "holdout": holdout, "epochs": epochs}
    given |= {"penalty": "group_lasso", "lam": 1e-3, "random_shift": 0, "device": "cpu", "precision": "fp32"}
    cfg, _ = command_line_config(model, given)
    bare, n_train = bare_loop(cfg)
    trial_times: list[float] = []
    bare_times: list[float] = []
    marks = {"resumed": time.perf_counter()}
    details: list[dict[str, float]] = []

    def report(metrics: dict[str, Any], _checkpoint: str | None) -> None:
        now = time.perf_counter()
        trial_times.append(now - marks["resumed"])
        details.append({"epoch_seconds": metrics["epoch_seconds"]})
        bare_times.append(bare())
        marks["resumed"] = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="train-speed-") as out:
        train_trial(cfg, report, out)
    steady = slice(1, epochs - 1)  # leave out the warm-up epoch and the trial's last (test error)
    trial_med = statistics.median(trial_times[steady])
    bare_med = statistics.median(bare_times[1:])
    # each trial epoch against the bare epoch run right after it: a slow spell of the shared machine
    # (or a paused one) lands on both of a pair more often than on one median
    paired = [t / b for t, b in zip(trial_times[steady], bare_times[steady], strict=True)]
    return {
        "model": model,
        "dataset": dataset,
        "train_images": n_train,
        "holdout": holdout,
        "layers": ", ".join(cfg.layers) if cfg.layers else "all",
        "batch": cfg.batch_size,
        "steps": -(-n_train // cfg.batch_size),
        "trial_s": trial_med,
        "trial_inner_s": statistics.median(d["epoch_seconds"] for d in details[steady]),
        "bare_s": bare_med,
        "ratio": statistics.median(paired),
        "ratio_of_medians": trial_med / bare_med,
        "paired": paired,
        "trial_all": trial_times,
        "bare_all": bare_times,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | dataset | train / held-out images | constrained | batch | steps/epoch | sweep train epoch s "
        "| of it in the loop s | bare loop epoch s | ratio of medians | ratio (median of pairs) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['dataset']} | {r['train_images']:,} / {r['holdout']:,} | {r['layers']} | "
            f"{r['batch']} | {r['steps']} | "
            f"{r['trial_s']:.3f} | {r['trial_inner_s']:.3f} | {r['bare_s']:.3f} | {r['ratio_of_medians']:.3f} | "
            f"**{r['ratio']:.3f}** |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=6, help="per loop; the first (and the trial's last) left out"
    )
    parser.add_argument("--subset-mnist", type=int, default=30000)
    parser.add_argument("--subset-cifar", type=int, default=20000)
    parser.add_argument("--data-dir", default=os.environ.get("SWEEP_DATA_DIR"))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", help="also write the table as markdown here")
    args = parser.parse_args()
    if args.epochs < 3:
        parser.error("--epochs must be at least 3 (a warm-up, a measured one, the trial's last)")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load = os.getloadavg()
    rows = []
    for model, dataset in CASES:
        subset = args.subset_mnist if dataset == "mnist" else args.subset_cifar
        rows.append(measure(model, dataset, subset, args.epochs, args.data_dir))
        r = rows[-1]
        print(
            f"{model}: trial epochs {', '.join(f'{t:.2f}' for t in r['trial_all'])} s; bare "
            f"{', '.join(f'{t:.2f}' for t in r['bare_all'])} s; pairs "
            f"{', '.join(f'{t:.3f}' for t in r['paired'])}; ratio {r['ratio']:.3f}",
            flush=True,
        )
    text = table(rows)
    print(text)
    if args.out:
        head = (
            f"`python bench/train_speed.py --epochs {args.epochs} --threads {args.threads} "
            f"--subset-mnist {args.subset_mnist} "
            f"--subset-cifar {args.subset_cifar}` on {platform.node()} ({os.cpu_count()} CPU cores, "
            f"{args.threads} torch threads), {time.strftime('%Y-%m-%d %H:%M')}, "
            f"{time.perf_counter() - started:.0f} s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
            "at the start (a shared machine: compare the two loops of one run only).\n\n"
            "Epochs 2 to N-1 of each loop, run interleaved; ratio: the median of trial epoch / the bare "
            "epoch run right after it (the ratio of medians beside it takes the bare loop's epochs 2 to N). "
            "`of it in the loop`: the trial's own `epoch_seconds` (training steps, held-out evaluation and "
            "metrics; the checkpoint and the report come after it).\n\n"
        )
        Path(args.out).write_text(f"# sweep train against a bare PyTorch loop\n\n{head}{text}\n")


if __name__ == "__main__":
    main()
