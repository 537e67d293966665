"""Sparse fine-tuning from the study's baseline (``init: baseline``) against training every trial from
scratch, for the same total epochs.

    python bench/init_vs_scratch.py [--model lenet] [--finetune-budget demo] [--scratch-budget smoke]
                                    [--trials N] [--subset N] [--report FILE] [--data-dir DIR]

Runs two studies with ``python -m sweep run`` (real Ray Tune, real Optuna) into one database:

- ``init: baseline``: the model's fine-tuning budget as shipped: its baseline trained once for
  ``baseline_epochs``, then ``trials - 1`` trials of ``epochs`` each that start from its checkpoint;
- ``from scratch``: the scratch budget's search space and start points, every trial (its own baseline
  included) trained from a fresh initialisation for ``baseline_epochs + epochs``, so each of its networks
  has trained as long as a fine-tuned one, and as many trials as fit into the epochs the first study
  spent.

Both on the same images (the fine-tuning budget's subset, or ``--subset``'s; fewer images mean fewer
prox steps per epoch, so a budget's lambdas, set for its own images, remove less). For each, at a quarter, half and all of those
epochs (trials counted in the order they started, each with the epochs it trained): the hypervolume of the
(held-out error, neurons) front in the box up to (``--ref-error`` %, 1.1 x the full network's neurons),
and the smallest network (neurons, parameters removed, test error) within ``--margin`` points of the
better of the two baselines on held-out error. A study that already holds its trials is read, not run
again. Writes ``results/init_vs_scratch-MODEL.md`` (or ``--report``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from search_efficiency import (  # noqa: E402
    REFERENCE_SIZE_MARGIN,
    WALL_TIMES_NOTE,
    _f,
    box_share,
    full_neurons,
    read_study,
    run_sweep,
    study_rows,
    trial_epochs,
    trials_span,
)

from sweep.errors import SweepError  # noqa: E402
from sweep.select.picks import TrialRow, pick, select_rows  # noqa: E402
from sweep.space.load import load_space  # noqa: E402

SHARES = (0.25, 0.5, 1.0)


@dataclass
class Arm:
    label: str
    budget: str
    study: str
    epochs: int  # per trial (the fine-tuning arm's baseline: its baseline_epochs)
    trials: int
    wall_seconds: float | None = None
    read_again: bool = False
    rows: list[TrialRow] = field(default_factory=list)


def within(rows: Sequence[TrialRow], epochs: float) -> list[TrialRow]:
    """The trials that started first, as long as their epochs add up to at most ``epochs``."""
    taken, spent = [], 0
    for row in sorted(rows, key=lambda r: r.number):
        spent += trial_epochs(row)
        if spent > epochs + 1e-9:
            break
        taken.append(row)
    return taken


def smallest_within(rows: Sequence[TrialRow], limit: float) -> TrialRow | None:
    """What ``sweep export --max-error`` would pick: the fewest neurons at most ``limit`` % held-out."""
    try:
        return pick(select_rows(rows), max_error=limit + 1e-9)
    except SweepError:
        return None


def run_arm(args: argparse.Namespace, arm: Arm, options: list[str]) -> None:
    arm.wall_seconds = run_sweep(
        args.model, arm.budget, arm.study, args.storage, arm.trials, options, args.ray_dir, args.data_dir
    )
    if arm.wall_seconds is None:
        arm.read_again = True
        arm.wall_seconds = read_study(arm.study, args.storage, trials_span)
    arm.rows = study_rows(arm.study, args.storage) or []


def describe(row: TrialRow | None) -> str:
    if row is None:
        return "none"
    removed = 1 - row.params / row.params_full if row.params is not None and row.params_full else None
    test = _f(row.test_top1_error, ".2f")
    return (
        f"trial {row.number}: {row.neurons:.0f} neurons, {_f(None if removed is None else 100 * removed, '.1f')}% "
        f"of params removed, {row.top1_error:.2f}% held-out / {test}% test"
    )


def report(args: argparse.Namespace, arms: Sequence[Arm], total: int, ref_neurons: float) -> str:
    baselines = [r for arm in arms for r in select_rows(arm.rows) if r.is_baseline and r.top1_error]
    reference = min((r.top1_error for r in baselines), default=None)
    limit = None if reference is None else reference + args.margin
    ft, scratch = arms
    lines = [
        f"## {args.model}: sparse fine-tuning from the baseline against from scratch, {total} epochs each",
        "",
        f"`{ft.label}`: budget `{ft.budget}`, the baseline trained {ft.epochs} epochs, then trials of "
        f"{args.finetune_epochs}; `{scratch.label}`: budget `{scratch.budget}`'s search and start points, every "
        f"trial {scratch.epochs} epochs from a fresh initialisation; both on {args.subset_text}. Hypervolume: "
        f"the share of the box up to ({args.ref_error:g}% held-out error, {ref_neurons:g} neurons = "
        f"{REFERENCE_SIZE_MARGIN:g} x the full network) that the fully trained trials dominate. Smallest: "
        f"the fewest neurons at most {args.margin:g} point(s) above the better baseline on held-out error "
        f"({_f(reference, '.2f')}%, so {_f(limit, '.2f')}%).",
        "",
        "| epochs spent | fine-tuning: trials | hypervolume | scratch: trials | hypervolume | ratio | "
        "smallest, fine-tuning | smallest, scratch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for share in SHARES:
        epochs = share * total
        a, b = within(ft.rows, epochs), within(scratch.rows, epochs)
        hv_a, hv_b = box_share(a, args.ref_error, ref_neurons), box_share(b, args.ref_error, ref_neurons)
        ratio = f"{hv_a / hv_b:.2f}" if hv_b > 0 else "-"
        small_a = smallest_within(a, limit) if limit is not None else None
        small_b = smallest_within(b, limit) if limit is not None else None
        lines.append(
            f"| {epochs:.0f} | {len(a)} | {hv_a:.4f} | {len(b)} | {hv_b:.4f} | {ratio} | "
            f"{describe(small_a)} | {describe(small_b)} |"
        )
    lines += ["", "| arm | study | trials | epochs/trial | baseline held-out / test % | wall time (s) |"]
    lines.append("|---|---|---|---|---|---|")
    for arm in arms:
        base = next((r for r in select_rows(arm.rows) if r.is_baseline), None)
        shown = "-" if base is None else f"{base.top1_error:.2f} / {_f(base.test_top1_error, '.2f')}"
        lines.append(
            f"| {arm.label} | `{arm.study}` | {len(arm.rows)} | {arm.epochs} | {shown} | "
            f"{_f(arm.wall_seconds, '.0f')}{'*' if arm.read_again else ''} |"
        )
    lines += [
        "",
        f"Studies in `{args.storage}`. {WALL_TIMES_NOTE}",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lenet")
    p.add_argument("--finetune-budget", default="demo", help="a budget with init: baseline")
    p.add_argument("--scratch-budget", default="smoke", help="the budget whose search the scratch study uses")
    p.add_argument("--trials", type=int, default=0, help="fine-tuning trials (0: the budget's)")
    p.add_argument("--subset", type=int, default=0, help="training images for both arms (0: the budget's)")
    p.add_argument("--ref-error", type=float, default=20.0, help="reference held-out error, percent")
    p.add_argument("--margin", type=float, default=1.0, help="points above the better baseline")
    p.add_argument("--storage-dir", default="results/init_vs_scratch", help="folder of the study database")
    p.add_argument("--ray-dir", default="runs/init_vs_scratch", help="where Ray keeps checkpoints")
    p.add_argument("--report", help="where the report goes (default: results/init_vs_scratch-MODEL.md)")
    p.add_argument("--data-dir", default=os.environ.get("SWEEP_DATA_DIR"))
    args = p.parse_args(argv)
    try:
        space = load_space(args.model)
    except SweepError as exc:
        p.error(str(exc))
    for name in (args.finetune_budget, args.scratch_budget):
        if name not in space.budgets:
            p.error(f"{args.model} has no budget {name!r}; it has {', '.join(space.budgets)}")
    budget = space.budget(args.finetune_budget)
    if budget.overrides.get("init") != "baseline" or not budget.baseline_epochs:
        p.error(f"budget {args.finetune_budget!r} does not fine-tune from the baseline (init: baseline)")
    args.budget = budget
    args.finetune_epochs = budget.epochs
    args.subset = args.subset or budget.subset
    args.subset_text = f"{args.subset} training images" if args.subset else "all training images"
    folder = Path(args.storage_dir)
    folder.mkdir(parents=True, exist_ok=True)
    args.storage = f"sqlite:///{(folder / 'studies.db').resolve()}"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    budget = args.budget
    trials = args.trials or budget.trials
    base_epochs = int(budget.baseline_epochs)
    total = base_epochs + (trials - 1) * budget.epochs
    per_network = base_epochs + budget.epochs
    images = [] if args.subset == budget.subset else ["--subset", str(args.subset)]
    tag = f"-s{args.subset}" if images else ""
    ft = Arm(
        "init: baseline",
        budget.name,
        f"ivs-{args.model}-init-{budget.name}-t{trials}{tag}",
        base_epochs,
        trials,
    )
    scratch_trials = max(2, total // per_network)
    scratch = Arm(
        "from scratch",
        args.scratch_budget,
        f"ivs-{args.model}-scratch-{args.scratch_budget}-e{per_network}-t{scratch_trials}{tag}",
        per_network,
        scratch_trials,
    )
    run_arm(args, ft, images)
    extra = ["--epochs", str(per_network)]
    if args.subset:
        extra += ["--subset", str(args.subset)]
    run_arm(args, scratch, extra)
    ref_neurons = REFERENCE_SIZE_MARGIN * full_neurons(ft.rows + scratch.rows, args.model)
    text = report(args, (ft, scratch), total, ref_neurons)
    out = Path(args.report) if args.report else ROOT / "results" / f"init_vs_scratch-{args.model}.md"
    out.write_text(text)
    print(text)
    print(f"written: {out}")
    return 0 if ft.rows and scratch.rows else 1


if __name__ == "__main__":
    sys.exit(main())
