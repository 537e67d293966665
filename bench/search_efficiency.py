"""How much of the error/neurons trade-off each way of searching finds for the same number of trials.

    python bench/search_efficiency.py [--model lenet,cifar10_quick] [--trials 16] [--epochs 2]
        [--seeds 0,1,2] [--only default,random,tpe] [--useful-margin 5] [--subset N] [--data-dir DIR]

Runs ``python -m sweep run`` (Ray Tune, Optuna) per model, method and seed into studies of one database,
over the model's space without its start points. Methods: ``default`` (``--sampler auto``; the study's
settings record the gp or tpe it resolved to), ``random``, ``tpe``; with --only also ``grid`` (group lasso
on fc1, lambda on a log grid) and ``fifo``/``asha`` (TPE, ``--asha-epochs`` epochs, ASHA stops early).
Per study: the hypervolume of its fully trained trials as a share of the box from (0 % error, 0 neurons)
to (``--ref-error`` %, 1.1 x the full network's neurons), and to the useful region's reference (its own
baseline error + ``--useful-margin`` points); trials to 95 % of the final hypervolume; epochs; wall time.
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
from sweep.study.create import gp_startup_trials, tpe_startup_trials  # noqa: E402

T = TypeVar("T")
REFERENCE_SIZE_MARGIN = 1.1  # as the dashboards: the full network (the baseline) still counts
GRID_LAYER = "fc1"
GRID_PENALTY = "group_lasso"
ERROR_MARGIN = 0.5  # "smallest within +0.5 point of the study's own baseline"
REACH_SHARE = 0.95  # "trials to reach 95 % of the final hypervolume"


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    sampler: str
    scheduler: str
    long: bool = False  # trained --asha-epochs epochs per trial, not --epochs
    grid: bool = False


METHODS = (
    Method("default", "--sampler auto", "auto", "fifo"),  # key "default": the study names kept
    Method("random", "random search", "random", "fifo"),
    Method("tpe", "TPE sampler", "tpe", "fifo"),
    Method("grid", f"log grid over lambda, {GRID_PENALTY} on {GRID_LAYER}", "grid", "fifo", grid=True),
    Method("fifo", "TPE, FIFO", "tpe", "fifo", long=True),
    Method("asha", "TPE, ASHA", "tpe", "asha", long=True),
)
DEFAULT_METHODS = ("default", "random", "tpe")  # run when --only is not given
COMPARISONS = (("default", "random"), ("default", "tpe"), ("tpe", "random"))
COMPARISONS += (("tpe", "grid"), ("asha", "fifo"))
REF_ERRORS = {"lenet": 20.0, "cifar10_quick": 80.0}  # fixed reference, % held-out error; others: 100


@dataclass
class Outcome:
    model: str
    method: Method
    seed: int
    study: str
    epochs_per_trial: int
    sampler: str | None = None  # the sampler the study ran, as its settings record it (auto resolved)
    complete: int = 0
    early_stopped: int = 0
    failed: int = 0
    hypervolume: float = 0.0  # fixed reference
    baseline_error: float | None = None
    useful_hypervolume: float | None = None  # useful-region reference; None without a baseline
    reach: int | None = None  # trials to REACH_SHARE of the final hypervolume (fixed reference)
    useful_reach: int | None = None  # the same, useful-region reference
    epochs_spent: int = 0
    smallest_near_baseline: float | None = None  # neurons, within ERROR_MARGIN of its own baseline
    wall_seconds: float | None = None
    read_again: bool = False  # the study was run earlier: its wall time is its trials' span


def full_neurons(rows: Sequence[TrialRow], model: str) -> float:
    for row in rows:
        if row.widths_full:
            return float(sum(row.widths_full.values()))
    import torch

    from sweep import models

    with torch.device("meta"):
        return float(sum(models.create(model).widths().values()))


def box_share(rows: Sequence[TrialRow], ref_error: float, ref_neurons: float) -> float:
    """Hypervolume of the fully trained rows' (held-out error, neurons): share of [0, ref_error] x [0, ref_neurons]."""
    points = [
        [r.value("top1_error") / ref_error, r.value("neurons") / ref_neurons]
        for r in select_rows(rows)
        if r.top1_error is not None and r.neurons is not None
    ]
    return pareto.hypervolume(points, [1.0, 1.0]) if points else 0.0


def trial_epochs(row: TrialRow) -> int:
    """Epochs one trial trained: its recorded ``epochs``, else those it reported before failing."""
    if row.epochs is not None:
        return row.epochs
    return sum(1 for h in row.history if isinstance(h.get("epoch"), int | float))


def trials_to_reach(rows: Sequence[TrialRow], ref_error: float, ref_neurons: float) -> int | None:
    """Trials (by number) until the fully trained ones' hypervolume is REACH_SHARE of the final one."""
    kept = sorted(select_rows(rows), key=lambda r: r.number)
    final = box_share(kept, ref_error, ref_neurons)
    if final <= 0:
        return None
    for i, row in enumerate(kept):
        if box_share(kept[: i + 1], ref_error, ref_neurons) >= REACH_SHARE * final - 1e-12:
            return row.number + 1
    return None


def baseline_error(rows: Sequence[TrialRow]) -> float | None:
    """The held-out error of the study's own (best) fully trained baseline."""
    errors = [r.value("top1_error") for r in select_rows(rows) if r.is_baseline and r.top1_error is not None]
    return min(errors) if errors else None


def smallest_near_baseline(rows: Sequence[TrialRow], margin: float = ERROR_MARGIN) -> float | None:
    if (base := baseline_error(rows)) is None:
        return None
    try:
        return pick(select_rows(rows), max_error=base + margin + 1e-9).neurons
    except SweepError:
        return None


def summarise(
    outcome: Outcome, rows: Sequence[TrialRow], ref_error: float, ref_neurons: float, useful_margin: float
) -> Outcome:
    outcome.complete = sum(r.state == "COMPLETE" and not r.early_stopped for r in rows)
    outcome.early_stopped = sum(r.early_stopped and r.state != "FAIL" for r in rows)
    outcome.failed = sum(r.state == "FAIL" for r in rows)
    outcome.hypervolume = box_share(rows, ref_error, ref_neurons)
    outcome.reach = trials_to_reach(rows, ref_error, ref_neurons)
    outcome.baseline_error = baseline_error(rows)
    if outcome.baseline_error is not None:
        useful = outcome.baseline_error + useful_margin
        outcome.useful_hypervolume = box_share(rows, useful, ref_neurons)
        outcome.useful_reach = trials_to_reach(rows, useful, ref_neurons)
    outcome.epochs_spent = sum(trial_epochs(row) for row in rows)
    outcome.smallest_near_baseline = smallest_near_baseline(rows)
    return outcome


def space_without_start(model: str) -> dict:
    """The shipped search space of ``model`` as a YAML document without its start points."""
    from sweep.space import space_path

    doc = yaml.safe_load(space_path(model).read_text())
    doc.pop("start", None)
    return doc


def grid_space(model: str, budget: str, trials: int, out: Path) -> Path:
    """The baseline plus ``trials - 1`` log-spaced lambdas of the budget's range, group lasso on fc1 only."""
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
    """Seconds from the study's first trial start to its last trial end (a study read again)."""
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
    """Run (or finish) one study with ``python -m sweep run``: its wall time, None if it held its trials."""
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
    args: argparse.Namespace, model: str, method: Method, seed: int, name: str, space: Path | None
) -> float | None:
    """One method's study of one model for one seed (see ``run_sweep``)."""
    epochs = args.asha_epochs if method.long else args.epochs
    options = ["--epochs", str(epochs), "--seed", str(seed)]
    options += ["--sampler", method.sampler, "--scheduler", method.scheduler]
    options += ["--subset", str(args.subset)] if args.subset else []
    options += ["--space", str(space)] if space is not None else []
    return run_sweep(
        model, args.budget, name, args.storage, args.trials, options, args.ray_dir, args.data_dir
    )


def study_name(args: argparse.Namespace, model: str, method: Method, seed: int) -> str:
    epochs = args.asha_epochs if method.long else args.epochs
    data = f"n{args.subset}" if args.subset else args.budget
    return f"se-{model}-{method.key}-s{seed}-t{args.trials}-e{epochs}-{data}"


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


def startup_line(key: str, sampler: str | None, trials: int) -> str | None:
    """What the sampler of method ``key`` draws at random before it models, true for the sampler that ran."""
    name = f"`--sampler auto` (resolved: {sampler})" if key == "default" else "The TPE sampler"
    n = gp_startup_trials(trials) if sampler == "gp" else tpe_startup_trials(trials)
    if sampler not in ("gp", "tpe"):
        return None
    if sampler == "gp":
        return (
            f"{name} draws at random until {n} penalised trials are complete (`gp_startup_trials`; the "
            f"baseline is not counted), so at least the first {n + 1} trials (the enqueued baseline included; "
            "more while trials run in parallel) come from the same seed's random draws as the random study."
        )
    text = f"{name} draws its first {n} trials (`tpe_startup_trials`, the enqueued baseline included) at random, "
    return (
        text
        + f"from the same seed as the random study: of {trials} trials they differ in the last {trials - n}."
    )


def _pair(a: Outcome | None, b: Outcome | None, attr: str) -> float | None:
    x, y = (None if o is None else getattr(o, attr) for o in (a, b))
    return None if x is None or y is None else x / y if y else math.inf if x > 0 else None


def model_section(
    args: argparse.Namespace, model: str, outcomes: list[Outcome], ref_error: float, ref_neurons: float
) -> list[str]:
    by_key = {k: [o for o in outcomes if o.method.key == k] for k in {o.method.key for o in outcomes}}

    def mean(key: str, attr: str, spec: str) -> str:
        return _f(_mean([getattr(o, attr) for o in by_key.get(key, [])]), spec)

    def ratio(a: str, b: str, attr: str) -> str:
        means = [_mean([getattr(o, attr) for o in by_key[k]]) for k in (a, b)]
        return f"{_f(means[0], '.4g')} vs {_f(means[1], '.4g')} | {_ratio(*means)}"

    def reach(key: str) -> str:
        return f"{mean(key, 'reach', '.1f')} / {mean(key, 'useful_reach', '.1f')}"

    resolved = ", ".join(sorted({o.sampler or "?" for o in by_key.get("default", [])})) or "-"
    data = f"{args.subset} training images" if args.subset else f"the {args.budget} budget data"
    lines = [
        f"## Search efficiency on {model}: equal budgets of {args.trials} trials",
        "",
        f"Trials train {args.epochs} epoch(s) ({args.asha_epochs} for FIFO vs ASHA) on {data}; seeds "
        f"{', '.join(map(str, args.seed_list))} (means over seeds). `sweep run --sampler auto` "
        f'("default" in the study names) resolved to: **{resolved}**. Hypervolume: share of the box from (0% error, '
        "0 neurons) to a reference point that the fully trained trials dominate (early-stopped and failed "
        f"trials add nothing), at {ref_neurons:g} neurons = {REFERENCE_SIZE_MARGIN:g} x the full network "
        f"and *fixed*: {ref_error:g}% held-out top-1 error, or *useful*: the study's own baseline error + "
        f"{args.useful_margin:g} points. Reach: trials (by number) until the hypervolume of those so far is "
        f"{100 * REACH_SHARE:g}% of the study's final one, fixed / useful.",
        "",
        "| comparison | hypervolume, fixed | ratio | hypervolume, useful | ratio | reach (trials) | "
        "epochs spent | ratio | smallest within +0.5 of baseline (neurons) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a, b in (c for c in COMPARISONS if c[0] in by_key and c[1] in by_key):
        small = " vs ".join(mean(k, "smallest_near_baseline", ".0f") for k in (a, b))
        lines.append(
            f"| {a} vs {b} | {ratio(a, b, 'hypervolume')} | {ratio(a, b, 'useful_hypervolume')} | "
            f"{reach(a)} vs {reach(b)} | {ratio(a, b, 'epochs_spent')} | {small} |"
        )
    if "default" in by_key and "random" in by_key:
        rand = {o.seed: o for o in by_key["random"]}
        pairs = [(d, rand.get(d.seed)) for d in by_key["default"]]
        fixed, useful = ([_pair(d, r, a) for d, r in pairs] for a in ("hypervolume", "useful_hypervolume"))
        lines += [
            "",
            "| default / random, seed | ratio, fixed | ratio, useful | reach, default | reach, random |",
        ]
        lines += ["|---|---|---|---|---|"]
        for (d, r), f, u in zip(pairs, fixed, useful, strict=True):
            each = " | ".join(f"{_f(o and o.reach, 'd')} / {_f(o and o.useful_reach, 'd')}" for o in (d, r))
            lines.append(f"| {d.seed} | {_f(f, '.2f')} | {_f(u, '.2f')} | {each} |")
        both = f"{reach('default')} | {reach('random')}"
        lines.append(f"| mean | {_f(_mean(fixed), '.2f')} | {_f(_mean(useful), '.2f')} | {both} |")
        low = [_f(min((v for v in vs if v is not None), default=None), ".2f") for vs in (fixed, useful)]
        lines += [
            "",
            f"No seed below: the smallest default/random ratio over seeds is {low[0]} (fixed), {low[1]} (useful).",
        ]
    lines += [
        "",
        "| method | seed | study | epochs/trial | complete | early-stopped | failed | baseline error | "
        "hypervolume, fixed | hypervolume, useful | reach | epochs spent | smallest within +0.5 | "
        "wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        name = f"--sampler auto ({o.sampler})" if o.method.key == "default" else o.method.label
        lines.append(
            f"| {name} | {o.seed} | `{o.study}` | {o.epochs_per_trial} | {o.complete} | "
            f"{o.early_stopped} | {o.failed} | {_f(o.baseline_error, '.2f')} | {o.hypervolume:.4f} | "
            f"{_f(o.useful_hypervolume, '.4f')} | {_f(o.reach, 'd')} / {_f(o.useful_reach, 'd')} | "
            f"{o.epochs_spent} | {_f(o.smallest_near_baseline, '.0f')} | "
            f"{_f(o.wall_seconds, '.0f')}{'*' if o.read_again else ''} |"
        )
    notes = {startup_line(k, o.sampler, args.trials) for k in ("default", "tpe") for o in by_key.get(k, [])}
    return lines + [line for n in sorted(notes - {None}) for line in ("", n)]


def report(args: argparse.Namespace, outcomes: list[Outcome], refs: dict[str, tuple[float, float]]) -> str:
    lines: list[str] = []
    for model in args.models:
        lines += [*model_section(args, model, [o for o in outcomes if o.model == model], *refs[model]), ""]
    grids = "; grid spaces " + ", ".join(f"`{args.grid_space(m)}`" for m in args.models)
    lines += [
        f"Studies in `{args.storage}`{grids if any(m.grid for m in args.methods) else ''}. {WALL_TIMES_NOTE}"
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--model", default="lenet", help="comma-separated models, one report section each")
    add("--trials", type=int, default=16, help="trials per study (the equal budget)")
    add("--epochs", type=int, default=2, help="epochs per trial for the sampler comparison")
    add("--asha-epochs", type=int, default=4, help="epochs per trial for FIFO vs ASHA (>= 2)")
    add("--subset", type=int, default=0, help="training images (0: the budget's)")
    add("--budget", default="smoke", help="the search space's budget the runs start from")
    add("--seeds", default="0,1,2", help="comma-separated seeds; each method runs once per seed")
    add("--ref-error", type=float, help="fixed reference error, %% (lenet 20, cifar10_quick 80, else 100)")
    add("--useful-margin", type=float, default=5.0, help="useful reference: baseline error + this")
    add("--storage-dir", default="results/search_efficiency", help="folder of the study database")
    add("--out", default="results/search_efficiency.md", help="markdown report")
    add("--ray-dir", default="runs/search_efficiency", help="where Ray keeps checkpoints")
    add("--data-dir", default=os.environ.get("SWEEP_DATA_DIR"))
    add("--only", help=f"comma-separated {', '.join(m.key for m in METHODS)} (default: default,random,tpe)")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.model.split(",") if m.strip()]
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not args.seed_list or not args.models or args.trials < 2 or args.epochs < 1 or args.asha_epochs < 2:
        p.error("need a seed, a model, --trials >= 2 (baseline + 1), --epochs >= 1, --asha-epochs >= 2")
    if not (args.ref_error or 1) > 0 or not args.useful_margin > 0:
        p.error(f"--ref-error and --useful-margin must be > 0, got {args.ref_error} and {args.useful_margin}")
    args.ref_errors = {m: args.ref_error or REF_ERRORS.get(m, 100.0) for m in args.models}
    known = [m.key for m in METHODS]
    wanted = args.only.split(",") if args.only else DEFAULT_METHODS
    args.methods = [m for m in METHODS if m.key in wanted]
    if set(wanted) - set(known) or not args.methods:
        p.error(f"--only takes a comma-separated list of {', '.join(known)}, got {args.only!r}")
    folder = Path(args.storage_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # relative to the working folder (sweep run runs in the checkout): no machine path in the report
    args.storage = f"sqlite:///{os.path.relpath(folder / 'studies.db', ROOT)}"
    args.grid_space = lambda model: folder / f"{model}-grid-t{args.trials}.yaml"
    return args


def sampler_ran(study: optuna.Study) -> str | None:
    """The sampler the study ran, as ``sweep run`` records it in its settings (auto resolved)."""
    return (study.user_attrs.get("settings") or {}).get("sampler")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    outcomes: list[Outcome] = []
    refs: dict[str, tuple[float, float]] = {}
    for model in args.models:
        grid = args.grid_space(model)
        grids = any(m.grid for m in args.methods)
        space = grid_space(model, args.budget, args.trials, grid) if grids else None
        scratch = scratch_space(model, grid.with_name(f"{model}-scratch.yaml"))
        studies: list[tuple[Outcome, list[TrialRow]]] = []
        for seed in args.seed_list:
            for method in args.methods:
                name = study_name(args, model, method, seed)
                wall = run_study(args, model, method, seed, name, space if method.grid else scratch)
                again = wall is None
                wall = read_study(name, args.storage, trials_span) if again else wall
                epochs = args.asha_epochs if method.long else args.epochs
                sampler = read_study(name, args.storage, sampler_ran)
                outcome = Outcome(model, method, seed, name, epochs, sampler, wall_seconds=wall)
                outcome.read_again = again
                studies.append((outcome, study_rows(name, args.storage) or []))
        ref_neurons = REFERENCE_SIZE_MARGIN * full_neurons([r for _, rows in studies for r in rows], model)
        refs[model] = (args.ref_errors[model], ref_neurons)
        outcomes += [summarise(o, rows, *refs[model], args.useful_margin) for o, rows in studies]
    text = report(args, outcomes, refs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written: {out}")
    return 0 if all(o.complete for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
