"""Table 1 of Zhou, Alvarez, Porikli, "Less Is More: Towards Compact CNNs" (ECCV 2016), beside ours.

    python bench/paper.py [--run] [--models lenet,cifar10_quick] [--storage-dir results] [--trials N]
                          [--data-dir DIR]

With ``--run`` it first runs the ``paper`` budget sweep of each model (``python -m sweep run MODEL
--budget paper --study paper-MODEL --storage sqlite:///results/MODEL/study.db``) and records each
sweep's wall time in ``results/MODEL/sweep.json``; ``--budget long`` runs a model's ``long`` budget instead
(study ``paper-MODEL-long``, same database). Then, from the study databases alone, it prints the paper's
rows with ours beside them (the ``paper`` study of each model, and its ``long`` study where there is one),
writes the table as markdown to ``results/table.md``, the dashboard of each study to
``results/MODEL/dashboard.html`` (``dashboard-long.html``), and exports the compact network of every row it
reports to ``results/MODEL/ROW`` (``results/MODEL/long/ROW``) with ``python -m sweep export``, so anyone can
evaluate them again.

Our rows, per model, all among complete, fully trained trials with every layer alive:
  (a) the trial of the error/neurons Pareto front whose held-out error is nearest the paper's error,
  (b) the smallest network (fewest neurons) within +0.1 point of our unconstrained baseline's held-out
      error, and (c) within +0.5 point;
  (d) for each floor of bench/paper_floors.py (a shape and an error to stay under), the trial of that shape
      with the lowest held-out error, and whether its test error meets the floor.
Trials are chosen on the held-out split only; the errors in the table are on the official test split.
The baseline is the ``penalty: none`` trial (the one with the lowest held-out error when there are several,
as ``sweep export`` states it in each card).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: the project's packages come first
    sys.path.insert(0, str(ROOT))

from bench.paper_floors import FLOORS, TOLERANCE, choose_floor  # noqa: E402
from bench.paper_results import Choice, Measured, ModelResult  # noqa: E402
from bench.paper_run import (  # noqa: E402
    database_path,
    duration,
    export_rows,
    read_record,
    run_sweep,
    storage_url,
    study_name,
    write_dashboard,
)
from sweep.errors import SweepError  # noqa: E402
from sweep.measure import BYTES_PER_PARAM, PAPER_TABLE1, PaperResult  # noqa: E402
from sweep.select import TrialRow, front, pick, trial_rows  # noqa: E402
from sweep.study import close_study, load_study_readonly  # noqa: E402

MIB = 2**20  # memory in float32 MiB, as the paper counts it (431,080 x 0.92 x 4 bytes = 1.51)
MARGINS = (0.1, 0.5)  # points of held-out error above our baseline, rows (b) and (c)
CONSTRAINED_LAYER = "fc1"  # the layer the paper's Table 1 reports for LeNet and CIFAR-10 quick
IMAGENET_NOTE = "needs ImageNet + GPUs: see README"


DEFAULT_MODELS = ("lenet", "cifar10_quick")
# Budgets whose studies the table shows: `paper` always, the others where a model's database holds one.
TABLE_BUDGETS = ("paper", "long")
# Where our `paper` budget leaves the paper's Caffe solver (the search spaces say why).
RECIPE_CHANGES = {
    "lenet": 'Caffe\'s lenet_solver with a cosine schedule instead of its "inv" policy, plus random shifts '
    "of up to 2 px of the training digits",
    "cifar10_quick": "Caffe's cifar10_quick solver with lr 0.01 instead of 0.001 (standardised inputs); "
    "penalty on conv3 and fc1",
}


# ------------------------------------------------------------------------------ choosing the rows


def usable(rows: Sequence[TrialRow]) -> list[TrialRow]:
    """Complete, fully trained trials with a held-out error and every layer alive."""
    return [
        r
        for r in rows
        if r.state == "COMPLETE"
        and not r.early_stopped
        and not r.has_empty_layer
        and r.top1_error is not None
    ]


def baseline_of(rows: Sequence[TrialRow]) -> TrialRow | None:
    """The unconstrained (``penalty: none``) trial; with several, the lowest held-out error."""
    baselines = [r for r in usable(rows) if r.is_baseline]
    return min(baselines, key=lambda r: (r.value("top1_error"), r.number)) if baselines else None


def nearest_on_front(rows: Sequence[TrialRow], target_error: float) -> TrialRow | None:
    """The error/neurons front trial whose held-out error is nearest ``target_error`` (ties: fewer
    neurons, then the lower trial number). The front is over usable trials only."""
    candidates = [r for r in usable(rows) if r.neurons is not None]
    if not candidates:
        return None
    on_front = front(candidates, x="neurons", y="top1_error")
    return min(
        on_front, key=lambda r: (abs(r.value("top1_error") - target_error), r.value("neurons"), r.number)
    )


def choose_rows(rows: Sequence[TrialRow], paper_error: float) -> tuple[TrialRow | None, list[Choice]]:
    """(our baseline, rows (a), (b), (c)) from a study's trials; chosen on held-out error only."""
    candidates = usable(rows)
    baseline = baseline_of(candidates)
    choices = [
        Choice(
            "paper-match",
            "ours: front trial nearest the paper's error",
            nearest_on_front(candidates, paper_error),
            "no complete trial with every layer alive",
        )
    ]
    for margin in MARGINS:
        key, label = f"within-{margin:g}", f"ours: smallest within +{margin:g} of our baseline"
        if baseline is None:
            choices.append(Choice(key, label, None, "no unconstrained (penalty none) trial in the study"))
            continue
        limit = baseline.value("top1_error") + margin + TOLERANCE
        try:
            choices.append(Choice(key, label, pick(candidates, max_error=limit)))
        except SweepError as err:
            choices.append(Choice(key, label, None, str(err)))
    return baseline, choices


def measure(row: TrialRow, layer: str = CONSTRAINED_LAYER) -> Measured:
    """fc1 widths, the shares of neurons and parameters removed, and the float32 memory saved."""

    def removed(after: float | None, before: float | None) -> float | None:
        return None if after is None or not before else 100.0 * (1.0 - after / before)

    units_full = sum(row.widths_full.values()) if row.widths_full else None
    units = sum(row.widths.values()) if row.widths else row.neurons
    saved = None
    if row.params is not None and row.params_full is not None:
        saved = (row.params_full - row.params) * BYTES_PER_PARAM / MIB
    fc1_before, fc1_after = row.widths_full.get(layer), row.widths.get(layer)
    return Measured(
        trial=row.number,
        fc1_before=fc1_before,
        fc1_after=fc1_after,
        fc1_removed=removed(fc1_after, fc1_before),
        units_removed=removed(units, units_full),
        params_removed=removed(row.params, row.params_full),
        memory_saved_mb=saved,
        test_error=row.test_top1_error,
        holdout_error=row.top1_error,
    )


def load_result(storage_dir: Path, model: str, budget: str = "paper") -> ModelResult:
    """Read one model's study (read-only) and choose its rows; a missing study gives a note instead."""
    paper = PAPER_TABLE1[model]
    result = ModelResult(paper, study_name(model, budget), storage_url(storage_dir, model), budget)
    if not database_path(storage_dir, model).is_file():
        result.note = (
            IMAGENET_NOTE
            if paper.dataset == "imagenet"
            else f"no study yet: python bench/paper.py --run --models {model}"
        )
        return result
    try:
        study = load_study_readonly(result.study, result.storage)
    except SweepError as err:
        result.note = str(err)
        return result
    try:
        rows = trial_rows(study)
        result.epochs = (study.user_attrs.get("fingerprint") or {}).get("trial", {}).get("epochs")
    finally:
        close_study(study)
    result.available = True
    result.trials = len(rows)
    result.baseline, result.choices = choose_rows(rows, paper.top1_error)
    result.floors = [choose_floor(f, usable(rows), result.baseline) for f in FLOORS.get(model, ())]
    result.choices += [
        Choice(f.floor.key, f.floor.label, f.row, "no complete trial of that shape") for f in result.floors
    ]
    record = read_record(storage_dir, model)
    runs = [r for r in record.get("runs") or [] if r.get("budget", "paper") == budget]
    if runs:
        result.wall_seconds = sum(float(r.get("wall_seconds", 0.0)) for r in runs)
        result.machine = str(runs[-1].get("machine", ""))
    return result


# ------------------------------------------------------------------------------------- the table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


HEADER = (
    "network",
    "result",
    "trial",
    "fc1 neurons",
    "neurons removed",
    "all units removed",
    "params removed",
    "memory saved (MiB)",
    "test top-1 error % (unconstrained)",
    "held-out error % (unconstrained)",
    "sweep wall time",
    "compact model",
)


def paper_cells(paper: PaperResult, units_full: dict[str, int] | None) -> list[str]:
    fc1 = "-" if paper.fc1 is None else f"{paper.fc1[0]} → {paper.fc1[1]}"
    units = "-"
    if paper.fc1 is not None and units_full:  # the paper constrained fc1 alone; the other layers stay full
        total = sum(units_full.values())
        units = _pct(100.0 * (paper.fc1[0] - paper.fc1[1]) / total)
    return [
        f"{paper.network} ({paper.dataset_label})",
        "paper, Table 1",
        "-",
        fc1,
        _pct(paper.neurons_removed),
        units,
        _pct(paper.params_removed),
        f"{paper.memory_saved_mb:.2f}",
        f"{paper.top1_error:.2f} ({paper.baseline_error:.2f})",
        "-",
        "-",
        "-",
    ]


def budget_tag(result: ModelResult) -> str:
    """How a row names a study under a budget other than ``paper`` (empty for ``paper``)."""
    if result.budget == "paper":
        return ""
    epochs = f", {result.epochs} epochs" if result.epochs else ""
    return f" [{result.budget} budget{epochs}]"


def our_cells(result: ModelResult, choice: Choice) -> list[str]:
    name = f"{result.paper.network} ({result.paper.dataset_label})"
    label = choice.label + budget_tag(result)
    if choice.row is None:
        return [name, label, "-", *(["-"] * 7), duration(result.wall_seconds), choice.missing]
    m = measure(choice.row)
    base = result.baseline
    fc1 = "-" if m.fc1_before is None or m.fc1_after is None else f"{m.fc1_before} → {m.fc1_after}"
    test = _num(m.test_error)
    held = _num(m.holdout_error)
    if base is not None:
        test += f" ({_num(base.test_top1_error)})"
        held += f" ({_num(base.top1_error)})"
    return [
        name,
        label,
        str(m.trial),
        fc1,
        _pct(m.fc1_removed),
        _pct(m.units_removed),
        _pct(m.params_removed),
        _num(m.memory_saved_mb),
        test,
        held,
        duration(result.wall_seconds),
        result.exports.get(choice.key, "-"),
    ]


def table_rows(results: Sequence[ModelResult]) -> list[list[str]]:
    rows: list[list[str]] = []
    for result in results:
        if result.budget == "paper":
            rows.append(paper_cells(result.paper, full_units(result)))
        if not result.available:
            rows.append(
                [f"{result.paper.network} ({result.paper.dataset_label})", "ours", *(["-"] * 9), result.note]
            )
            continue
        rows.extend(our_cells(result, choice) for choice in result.choices)
    return rows


def full_units(result: ModelResult) -> dict[str, int]:
    """Widths of the full network: from the study where there is one, else from the model itself."""
    for choice in result.choices:
        if choice.row is not None and choice.row.widths_full:
            return choice.row.widths_full
    import torch

    from sweep import models

    with torch.device("meta"):
        return models.create(result.paper.model).widths()


def markdown_table(results: Sequence[ModelResult]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(results)]
    return "\n".join(lines)


def notes(results: Sequence[ModelResult]) -> list[str]:
    out = [
        "Our rows are chosen on the held-out split (images held out of the training set), never on the "
        "test split; every error in the table is top-1 on the official test split, with the unconstrained "
        "network's in parentheses (the held-out column shows what the choice saw). Only complete, fully "
        "trained trials with every layer alive take part.",
        "Neurons removed: of fc1, the layer the paper constrained in LeNet and CIFAR-10 quick (for the "
        "paper's AlexNet and VGG-13: of the layers it constrained); all units removed: of every conv filter "
        "and hidden neuron (the paper's LeNet and CIFAR-10 quick keep their conv layers whole). Memory "
        "saved: removed parameters x 4 bytes (float32), in MiB.",
    ]
    for r in results:
        if not r.available:
            continue
        base = r.baseline
        base_text = (
            f"unconstrained baseline trial {base.number}: held-out {_num(base.top1_error)}%, test "
            f"{_num(base.test_top1_error)}%"
            if base is not None
            else "no unconstrained baseline trial"
        )
        wall = (
            f"sweep wall time {duration(r.wall_seconds)}{f' on {r.machine}' if r.machine else ''}"
            if r.wall_seconds is not None
            else "sweep wall time not recorded (run with --run)"
        )
        recipe = RECIPE_CHANGES.get(r.paper.model)
        out.append(
            f"{r.paper.network}{budget_tag(r)}: study `{r.study}`, {r.trials} complete trials; {base_text}; "
            f"{wall}" + (f"; training: {recipe}." if recipe else ".")
        )
        out += [f"{r.paper.network}{budget_tag(r)} {f.sentence()}." for f in r.floors]
    return out


def render(results: Sequence[ModelResult]) -> str:
    title = "Table 1 of Zhou, Alvarez, Porikli, *Less Is More: Towards Compact CNNs* (ECCV 2016), and ours"
    body = [f"## {title}", "", markdown_table(results), ""]
    body += [f"- {line}" for line in notes(results)]
    return "\n".join(body) + "\n"


# ----------------------------------------------------------------------------------- the command


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="store_true", help="run the sweeps first (else only read the databases)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"of {', '.join(PAPER_TABLE1)}")
    p.add_argument("--storage-dir", default="results", help="one folder per model with study.db in it")
    p.add_argument("--trials", type=int, help="trials per sweep (default: the budget's)")
    p.add_argument(
        "--budget", default="paper", help="the budget --run sweeps (paper; long, where a space has it; smoke)"
    )
    p.add_argument("--data-dir", default=os.environ.get("SWEEP_DATA_DIR"), help="where the datasets lie")
    p.add_argument("--ray-dir", default="runs/paper", help="where Ray keeps the trials' checkpoints")
    p.add_argument("--cpus-per-trial", type=float, help="passed to sweep run")
    p.add_argument("--gpus-per-trial", type=float, help="passed to sweep run")
    p.add_argument("--no-export", action="store_true", help="do not export the rows' compact models")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in PAPER_TABLE1]
    if unknown or not chosen:
        print(
            f"paper.py: error: --models takes a comma-separated list of {', '.join(PAPER_TABLE1)}, "
            f"got {args.models!r}",
            file=sys.stderr,
        )
        return 2
    if args.trials is not None and args.trials < 1:
        print(f"paper.py: error: --trials must be at least 1, got {args.trials}", file=sys.stderr)
        return 2
    storage_dir = Path(args.storage_dir)
    failed_runs = []
    if args.run:
        extra = [
            *(["--cpus-per-trial", str(args.cpus_per_trial)] if args.cpus_per_trial else []),
            *(["--gpus-per-trial", str(args.gpus_per_trial)] if args.gpus_per_trial else []),
        ]
        for model in chosen:
            code = run_sweep(
                model, storage_dir, args.budget, args.trials, args.data_dir, Path(args.ray_dir), extra
            )
            if code != 0:
                failed_runs.append(model)
    shown = [*chosen, *(m for m in PAPER_TABLE1 if m not in chosen)]  # every paper row, ours first
    budgets = [*TABLE_BUDGETS, *([args.budget] if args.budget not in TABLE_BUDGETS else [])]
    results = [
        result
        for m in shown
        for b in budgets
        if (result := load_result(storage_dir, m, b)).available or b == "paper"
    ]
    for result in results:
        if not result.available:
            continue
        print(f"dashboard: {write_dashboard(result, storage_dir)}", flush=True)
        if args.no_export:
            continue
        export_rows(result, storage_dir, args.data_dir)
    text = render(results)
    storage_dir.mkdir(parents=True, exist_ok=True)
    (storage_dir / "table.md").write_text(text)
    print(text)
    print(f"written: {storage_dir / 'table.md'}")
    if failed_runs:
        print(f"paper.py: the sweep of {', '.join(failed_runs)} exited with an error", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
