"""How much of the error/neurons trade-off each way of searching finds for the same number of trials.

    python bench/search_efficiency.py [--model lenet] [--budget smoke] [--trials 16] [--epochs 2]
                                      [--subset N] [--asha-epochs 4] [--seeds 0,1,2] [--data-dir DIR]

Runs, with ``python -m sweep run`` (real Ray Tune, real Optuna), each into its own study of one database:

- ``tpe``: the default sampler over the model's whole search space (without its start points, which
  would hand every sampler the same good trials);
- ``random``: random search over the same space;
- ``grid``: what one would do by hand: group lasso on fc1 only, lambda on a log grid over the lambda
  range the budget searches (the unconstrained baseline plus trials - 1 values), through
  ``sweep run --sampler grid``;
- ``fifo`` and ``asha``: the default sampler with ``--asha-epochs`` epochs per trial, every trial trained
  to the end (FIFO) or stopped early by ASHA when it trails the others.

For each study: the hypervolume of its fully trained trials, in the box from (0 % error, 0 neurons) to the
fixed reference point (``--ref-error`` % held-out error, 1.1 x the full network's neurons), as a share of
that box; the epochs all its trials spent; its wall time. Prints the ratios and writes them to
``results/search_efficiency.md``. A study that already holds its trials is read, not run again.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import optuna
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sweep.errors import SweepError  # noqa: E402
from sweep.select import pareto  # noqa: E402
from sweep.select.picks import TrialRow, all_rows, pick, select_rows  # noqa: E402
from sweep.study import close_study, load_study_readonly  # noqa: E402
from sweep.study.create import tpe_startup_trials  # noqa: E402

T = TypeVar("T")
REFERENCE_SIZE_MARGIN = 1.1  # as the dashboards: the full network (the baseline) still counts
GRID_LAYER = "fc1"
GRID_PENALTY = "group_lasso"
ERROR_MARGIN = 0.5  # "smallest within +0.5 point of the study's own baseline"


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    sampler: str
    scheduler: str
    long: bool  # trained --asha-epochs epochs per trial, not --epochs
    grid: bool = False


METHODS = (
    Method("tpe", "default sampler (TPE)", "tpe", "fifo", long=False),
    Method("random", "random search", "random", "fifo", long=False),
    Method(
        "grid", f"log grid over lambda, {GRID_PENALTY} on {GRID_LAYER}", "grid", "fifo", long=False, grid=True
    ),
    Method("fifo", "default sampler, FIFO", "tpe", "fifo", long=True),
    Method("asha", "default sampler, ASHA", "tpe", "asha", long=True),
)


@dataclass
class Outcome:
    """One study's numbers."""

    method: Method
    seed: int
    study: str
    epochs_per_trial: int
    complete: int = 0
    early_stopped: int = 0
    failed: int = 0
    hypervolume: float = 0.0
    epochs_spent: int = 0
    smallest_near_baseline: float | None = None  # neurons, within ERROR_MARGIN of its own baseline
    wall_seconds: float | None = None
    read_again: bool = False  # the study was run earlier: its wall time is its trials' span


# ---------------------------------------------------------------------------------------- numbers


def full_neurons(rows: Sequence[TrialRow], model: str) -> float:
    for row in rows:
        if row.widths_full:
            return float(sum(row.widths_full.values()))
    import torch

    from sweep import models
    with torch.device("meta"):
        return float(sum(models.create(model).widths().values()))


def box_share(rows: Sequence[TrialRow], ref_error: float, ref_neurons: float) -> float:
    """Hypervolume of the complete, fully trained rows' (held-out error, neurons), as a share of the box
    [0, ref_error] x [0, ref_neurons]."""
    points = [
        [r.value("top1_error") / ref_error, r.value("neurons") / ref_neurons]
        for r in select_rows(rows)
        if r.top1_error is not None and r.neurons is not None
    ]
    return pareto.hypervolume(points, [1.0, 1.0]) if points else 0.0


def trial_epochs(row: TrialRow) -> int:
    """Epochs one trial trained: its recorded ``epochs`` (early-stopped: the ones it ran), else the epochs
    it reported before failing."""
    if row.epochs is not None:
        return row.epochs
    return sum(1 for h in row.history if isinstance(h.get("epoch"), int | float))


def epochs_spent(rows: Sequence[TrialRow]) -> int:
    """Epochs all the trials trained."""
    return sum(trial_epochs(row) for row in rows)


def smallest_near_baseline(rows: Sequence[TrialRow], margin: float = ERROR_MARGIN) -> float | None:
    finished = select_rows(rows)
    baselines = [r for r in finished if r.is_baseline and r.top1_error is not None]
    if not baselines:
        return None
    limit = min(r.value("top1_error") for r in baselines) + margin + 1e-9
    try:
        return pick(finished, max_error=limit).neurons
    except SweepError:
        return None


def summarise(outcome: Outcome, rows: Sequence[TrialRow], ref_error: float, ref_neurons: float) -> Outcome:
    outcome.complete = sum(r.state == "COMPLETE" and not r.early_stopped for r in rows)
    outcome.early_stopped = sum(r.early_stopped and r.state != "FAIL" for r in rows)
    outcome.failed = sum(r.state == "FAIL" for r in rows)
    outcome.hypervolume = box_share(rows, ref_error, ref_neurons)
    outcome.epochs_spent = epochs_spent(rows)
    outcome.smallest_near_baseline = smallest_near_baseline(rows)
    return outcome


# ---------------------------------------------------------------------------------------- running


def space_without_start(model: str) -> dict:
    """The shipped search space of ``model`` as a YAML document, its start points left out: they would
    hand every compared method the same good trials."""
    from sweep.space import space_path

    doc = yaml.safe_load(space_path(model).read_text())
    doc.pop("start", None)
    return doc


def grid_space(model: str, budget: str, trials: int, out: Path) -> Path:
    """The model's search space cut to what one would search by hand: the baseline plus ``trials - 1``
    lambda values, log-spaced over the lambda range the budget searches, for group lasso on fc1 only."""
    from sweep.space import load_space

    lam = load_space(model).for_budget(budget).search["lam"]
    doc = space_without_start(model)
    for spec in (doc.get("budgets") or {}).values():
        spec.pop("search", None)  # the grid's own search replaces every budget's
    low, high = float(lam.low), float(lam.high)
    points = max(1, trials - 1)
    ratio = (high / low) ** (1.0 / max(points - 1, 1))
    values = [float(f"{low * ratio**i:.3g}") for i in range(points)]
    fixed = {k: v for k, v in (doc.get("fixed") or {}).items() if k not in ("layers", "layer_scales")}
    doc["fixed"] = {**fixed, "layers": [GRID_LAYER]}
    doc["search"] = {"penalty": {"choices": ["none", GRID_PENALTY]}, "lam": {"choices": sorted(set(values))}}
    out.parent.mkdir(parents=True, exist_ok=True)
    header = f"# {model}: {GRID_PENALTY} on {GRID_LAYER}, lambda on a log grid (bench/search_efficiency.py)\n"
    out.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    return out


def scratch_space(model: str, out: Path) -> Path:
    """The model's search space without its start points, so every sampler starts from nothing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    header = f"# {model}: the shipped space without start points (bench/search_efficiency.py)\n"
    out.write_text(header + yaml.safe_dump(space_without_start(model), sort_keys=False))
    return out


def read_study(name: str, storage: str, read: Callable[[optuna.Study], T]) -> T | None:
    """``read(study)`` on the study opened read-only; None when the database has no such study."""
    try:
        study = load_study_readonly(name, storage)
    except SweepError:
        return None
    try:
        return read(study)
    finally:
        close_study(study)


def trials_span(study: optuna.Study) -> float | None:
    """Seconds from the study's first trial start to its last trial end: the wall time of a study read
    again from the database (without Ray's start-up)."""
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else None


def study_rows(name: str, storage: str) -> list[TrialRow] | None:
    return read_study(name, storage, all_rows)


WALL_TIMES_NOTE = (
    "Wall times include starting Ray; *: a study run earlier and read again, timed from its first trial's "
    "start to its last trial's end."
)


def run_sweep(
    model: str,
    budget: str,
    name: str,
    storage: str,
    trials: int,
    options: Sequence[str],
    ray_dir: str,
    data_dir: str | None,
) -> float | None:
    """Run (or finish) one study with ``python -m sweep run``; returns its wall time, or None when it
    already held its trials."""
    rows = study_rows(name, storage)
    finished = [] if rows is None else [r for r in rows if r.state in ("COMPLETE", "FAIL", "PRUNED")]
    if rows is not None and len(finished) >= trials:
        print(f"{name}: {len(finished)} trials already there, read again", flush=True)
        return None
    command = [sys.executable, "-m", "sweep", "run", model, "--budget", budget, "--study", name]
    command += ["--storage", storage, "--trials", str(trials), *options]
    command += ["--out", str(Path(ray_dir).resolve())]
    if data_dir:
        command += ["--data-dir", data_dir]
    if rows is not None:
        command.append("--resume")
    print("$ " + " ".join(["python", *command[1:]]), flush=True)
    started = time.perf_counter()
    code = subprocess.run(command, cwd=ROOT, check=False).returncode
    wall = time.perf_counter() - started
    if code != 0:
        print(f"{name}: sweep run exited {code}", file=sys.stderr, flush=True)
    return wall


def run_study(
    args: argparse.Namespace, method: Method, seed: int, name: str, storage: str, space: Path | None
) -> float | None:
    """One method's study for one seed (see ``run_sweep``)."""
    epochs = args.asha_epochs if method.long else args.epochs
    options = ["--epochs", str(epochs), "--seed", str(seed)]
    options += ["--sampler", method.sampler, "--scheduler", method.scheduler]
    if args.subset:
        options += ["--subset", str(args.subset)]
    if space is not None:
        options += ["--space", str(space)]
    return run_sweep(
        args.model, args.budget, name, storage, args.trials, options, args.ray_dir, args.data_dir
    )


def study_name(args: argparse.Namespace, method: Method, seed: int) -> str:
    epochs = args.asha_epochs if method.long else args.epochs
    data = f"n{args.subset}" if args.subset else args.budget
    return f"se-{args.model}-{method.key}-s{seed}-t{args.trials}-e{epochs}-{data}"


# ----------------------------------------------------------------------------------------- report


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(kept) if kept else None


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "-"
    if b == 0:
        return "inf" if a > 0 else "-"
    return f"{a / b:.2f}"


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(args: argparse.Namespace, outcomes: list[Outcome], ref_error: float, ref_neurons: float) -> str:
    by_key: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_key.setdefault(o.method.key, []).append(o)

    def mean(key: str, attr: str) -> float | None:
        return _mean([getattr(o, attr) for o in by_key.get(key, [])])

    seeds = ", ".join(str(s) for s in args.seed_list)
    lines = [
        f"## Search efficiency on {args.model}: equal budgets of {args.trials} trials",
        "",
        f"Trials train {args.epochs} epoch(s) ({args.asha_epochs} for FIFO vs ASHA) on "
        f"{f'{args.subset} training images' if args.subset else f'the {args.budget} budget data'}; "
        f"seeds {seeds} (means over seeds below). Hypervolume: share of the box from (0% error, 0 neurons) "
        f"to the reference point ({ref_error:g}% held-out top-1 error, {ref_neurons:g} neurons = "
        f"{REFERENCE_SIZE_MARGIN:g} x the full network) that the fully trained trials dominate; "
        "early-stopped and failed trials add nothing.",
        "",
        "| comparison | hypervolume | ratio | epochs spent | ratio | smallest within +0.5 of baseline (neurons) |",
        "|---|---|---|---|---|---|",
    ]
    for a, b in (("tpe", "random"), ("tpe", "grid"), ("asha", "fifo")):
        hv_a, hv_b = mean(a, "hypervolume"), mean(b, "hypervolume")
        ep_a, ep_b = mean(a, "epochs_spent"), mean(b, "epochs_spent")
        small_a, small_b = mean(a, "smallest_near_baseline"), mean(b, "smallest_near_baseline")
        lines.append(
            f"| {a} vs {b} | {_f(hv_a, '.4f')} vs {_f(hv_b, '.4f')} | {_ratio(hv_a, hv_b)} | "
            f"{_f(ep_a, '.0f')} vs {_f(ep_b, '.0f')} | {_ratio(ep_a, ep_b)} | "
            f"{_f(small_a, '.0f')} vs {_f(small_b, '.0f')} |"
        )
    hv_asha, hv_fifo = mean("asha", "hypervolume"), mean("fifo", "hypervolume")
    ep_asha, ep_fifo = mean("asha", "epochs_spent"), mean("fifo", "epochs_spent")
    if hv_asha is not None and hv_fifo is not None and ep_asha and ep_fifo:
        lines += [
            "",
            f"Hypervolume per 100 epochs spent: ASHA {100 * hv_asha / ep_asha:.4f}, FIFO "
            f"{100 * hv_fifo / ep_fifo:.4f} (ratio {_ratio(hv_asha / ep_asha, hv_fifo / ep_fifo)}).",
        ]
    lines += [
        "",
        "| method | seed | study | epochs/trial | complete | early-stopped | failed | hypervolume | "
        "epochs spent | smallest within +0.5 | wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.method.label} | {o.seed} | `{o.study}` | {o.epochs_per_trial} | {o.complete} | "
            f"{o.early_stopped} | {o.failed} | {o.hypervolume:.4f} | {o.epochs_spent} | "
            f"{_f(o.smallest_near_baseline, '.0f')} | {_f(o.wall_seconds, '.0f')}{'*' if o.read_again else ''} |"
        )
    startup = tpe_startup_trials(args.trials)
    lines += [
        "",
        f"The default TPE sampler draws its first {startup} trials (the enqueued baseline included) at random, from "
        f"the same seed as the random study: with {args.trials} trials the two differ in the last "
        f"{max(0, args.trials - startup)} only.",
        "",
        f"Studies in `{args.storage}`; grid space `{args.grid_space}`. {WALL_TIMES_NOTE}",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- command


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lenet")
    p.add_argument("--trials", type=int, default=16, help="trials per study (the equal budget)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial for the sampler comparison")
    p.add_argument("--asha-epochs", type=int, default=4, help="epochs per trial for FIFO vs ASHA (>= 2)")
    p.add_argument("--subset", type=int, default=0, help="training images (0: the budget's)")
    p.add_argument("--budget", default="smoke", help="the search space's budget the runs start from")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds; each method runs once per seed")
    p.add_argument("--ref-error", type=float, default=20.0, help="reference held-out error, percent")
    p.add_argument("--storage-dir", default="results/search_efficiency", help="folder of the study database")
    p.add_argument("--out", default="results/search_efficiency.md", help="markdown report")
    p.add_argument("--ray-dir", default="runs/search_efficiency", help="where Ray keeps checkpoints")
    p.add_argument("--data-dir", default=os.environ.get("SWEEP_DATA_DIR"))
    p.add_argument("--only", help=f"comma-separated subset of {', '.join(m.key for m in METHODS)}")
    args = p.parse_args(argv)
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not args.seed_list:
        p.error("--seeds must name at least one seed")
    if args.trials < 2:
        p.error(f"--trials must be at least 2 (the baseline and one more), got {args.trials}")
    if args.epochs < 1 or args.asha_epochs < 2:
        p.error(
            f"--epochs must be >= 1 and --asha-epochs >= 2 (so ASHA can stop something), got "
            f"{args.epochs} and {args.asha_epochs}"
        )
    if not args.ref_error > 0:
        p.error(f"--ref-error must be > 0, got {args.ref_error}")
    known = [m.key for m in METHODS]
    args.methods = [m for m in METHODS if not args.only or m.key in args.only.split(",")]
    unknown = sorted(set(args.only.split(",")) - set(known)) if args.only else []
    if unknown or not args.methods:
        p.error(f"--only takes a comma-separated list of {', '.join(known)}, got {args.only!r}")
    folder = Path(args.storage_dir)
    folder.mkdir(parents=True, exist_ok=True)
    args.storage = f"sqlite:///{(folder / 'studies.db').resolve()}"
    args.grid_space = folder / f"{args.model}-grid-t{args.trials}.yaml"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    space = (
        grid_space(args.model, args.budget, args.trials, args.grid_space)
        if any(m.grid for m in args.methods)
        else None
    )
    scratch = scratch_space(args.model, args.grid_space.with_name(f"{args.model}-scratch.yaml"))
    outcomes: list[Outcome] = []
    all_study_rows: list[list[TrialRow]] = []
    for seed in args.seed_list:
        for method in args.methods:
            name = study_name(args, method, seed)
            wall = run_study(args, method, seed, name, args.storage, space if method.grid else scratch)
            read_again = wall is None
            if read_again:
                wall = read_study(name, args.storage, trials_span)
            rows = study_rows(name, args.storage) or []
            all_study_rows.append(rows)
            epochs = args.asha_epochs if method.long else args.epochs
            outcomes.append(Outcome(method, seed, name, epochs, wall_seconds=wall, read_again=read_again))
    ref_neurons = REFERENCE_SIZE_MARGIN * full_neurons(
        [r for rows in all_study_rows for r in rows], args.model
    )
    for outcome, rows in zip(outcomes, all_study_rows, strict=True):
        summarise(outcome, rows, args.ref_error, ref_neurons)
    text = report(args, outcomes, args.ref_error, ref_neurons)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written: {out}")
    return 0 if all(o.complete for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
