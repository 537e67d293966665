"""How much better than random search any sampler could have done: the headroom of a search-efficiency run.

    python bench/search_headroom.py [--model lenet] [--trials 16] [--epochs 2] [--budget smoke]
        [--storage sqlite:///results/search_efficiency/studies.db,...] [--out results/....md]

Reads every study that ``bench/search_efficiency.py`` left for one model, trial count, epochs and budget
(every sampler, every seed; nothing is trained) and pools their fully trained trials. The best
``--trials`` of that pool, picked greedily by hypervolume (the baseline always among them), is what a
sampler that knew every outcome in advance would have run: its hypervolume over random search's mean
is the most any sampler's ratio could have been on this space and budget, as far as these trials show.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from search_efficiency import REF_ERRORS, REFERENCE_SIZE_MARGIN, box_share, full_neurons, study_rows  # noqa: E402

from sweep.select.picks import TrialRow, select_rows  # noqa: E402

DEFAULT_STORAGES = (
    "sqlite:///results/search_efficiency/studies.db",
    "sqlite:///results/search_efficiency/sampler/studies.db",
)
USEFUL_MARGINS = (
    5.0,
    2.5,
)  # points over the baseline's error: the search-efficiency bench's, and a tighter one


def pooled(storages: Sequence[str], model: str, suffix: str) -> dict[str, list[TrialRow]]:
    """Every study of ``model`` whose name ends in ``suffix`` (e.g. ``-t16-e2-smoke``), by study name
    (first storage wins)."""
    studies: dict[str, list[TrialRow]] = {}
    for url in storages:
        for summary in optuna.get_all_study_summaries(url):
            name = summary.study_name
            if name.startswith(f"se-{model}-") and name.endswith(suffix) and name not in studies:
                rows = study_rows(summary.study_name, url)
                if rows:
                    studies[summary.study_name] = list(select_rows(rows))
    return studies


def method_of(study: str, model: str) -> str:
    """``se-lenet-random-s0-t16-e2-smoke`` -> ``random``."""
    return study.removeprefix(f"se-{model}-").split("-s", 1)[0]


def seed_of(study: str) -> str:
    """``se-lenet-random-s0-t16-e2-smoke`` -> ``0``."""
    found = re.search(r"-s(\d+)-t\d+-", study)
    return found.group(1) if found else "?"


def per_seed_lines(
    studies: dict[str, list[TrialRow]], model: str, n: int, fixed: float, ref_neurons: float
) -> list[str]:
    """Each seed's own pool (its studies share their held-out split and baseline) against that seed's
    random study, the useful references from that seed's baseline: the headroom without one seed's
    luckier split standing in for another's."""
    seeds = sorted({seed_of(s) for s in studies if method_of(s, model) == "random"})
    if not seeds:
        return []
    lines = [
        "",
        f"Per seed: the best {n} of that seed's own studies over that seed's random search (a seed fixes "
        "the held-out split and the baseline, which pooling across seeds mixes).",
        "",
        "| reference | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]
    # per seed: its pooled trials, its random study's, its baseline's error
    pools = {}
    for seed in seeds:
        mine = [r for s, rows in studies.items() if seed_of(s) == seed for r in rows]
        random_rows = next(
            rows for s, rows in studies.items() if seed_of(s) == seed and method_of(s, model) == "random"
        )
        baseline = statistics.mean(
            r.top1_error for r in mine if r.penalty == "none" and r.top1_error is not None
        )
        pools[seed] = (mine, random_rows, baseline)
    for margin in (None, *USEFUL_MARGINS):
        label = f"fixed ({fixed:g}%)" if margin is None else f"its baseline + {margin:g}"
        ratios = []
        for mine, random_rows, baseline in pools.values():
            ref_error = fixed if margin is None else baseline + margin
            random_hv = box_share(random_rows, ref_error, ref_neurons)
            best = greedy_best(mine, n, ref_error, ref_neurons)
            ratios.append(best / random_hv if random_hv else float("nan"))
        cells = " | ".join(f"{r:.2f}x" for r in ratios)
        lines.append(f"| {label} | {cells} | {statistics.mean(ratios):.2f}x |")
    return lines


def greedy_best(rows: Sequence[TrialRow], n: int, ref_error: float, ref_neurons: float) -> float:
    """The hypervolume of ``n`` rows picked one at a time for the largest gain: the baseline (a sampler's
    first trial in every study) and the ``n - 1`` best of the rest."""
    chosen = [r for r in rows if r.penalty == "none"][:1]
    rest = [r for r in rows if r.penalty != "none"]
    while len(chosen) < n and rest:
        best = max(rest, key=lambda r: box_share([*chosen, r], ref_error, ref_neurons))
        chosen.append(best)
        rest.remove(best)
    return box_share(chosen, ref_error, ref_neurons)


def report(args: argparse.Namespace) -> str:
    suffix = f"-t{args.trials}-e{args.epochs}-{args.budget}"
    studies = pooled(args.storage, args.model, suffix)
    if not studies:
        raise SystemExit(f"no study ending in {suffix} in {', '.join(args.storage)}")
    every = [r for rows in studies.values() for r in rows]
    ref_neurons = REFERENCE_SIZE_MARGIN * full_neurons(every, args.model)
    baseline = statistics.mean(
        r.top1_error for r in every if r.penalty == "none" and r.top1_error is not None
    )
    refs = [("fixed", REF_ERRORS.get(args.model, 100.0))]
    refs += [(f"baseline + {m:g}", baseline + m) for m in USEFUL_MARGINS]
    methods = sorted({method_of(s, args.model) for s in studies})
    lines = [
        f"## Headroom over random search: {args.model}, {args.trials} trials of {args.epochs} epoch(s), "
        f"budget {args.budget}",
        "",
        f"Made by `python bench/search_headroom.py --model {args.model} --trials {args.trials} --epochs "
        f"{args.epochs} --budget {args.budget}` from the studies of `bench/search_efficiency.py` "
        f"({len(studies)} studies, {len(every)} fully trained trials: {', '.join(methods)}). Hypervolume as "
        f"that bench's, to {ref_neurons:g} neurons and the error named (the mean baseline: {baseline:.2f}%). "
        f"*Best {args.trials} of the pool*: greedily the trials that add the most hypervolume, the baseline "
        "first; what a sampler that knew every outcome in advance would have run. `default` names the "
        "studies run with `--sampler auto` (the bench's key for it), `tpe` those with `sweep run`'s default.",
        "",
        "| reference (held-out error) | "
        + " | ".join(f"{m}, mean" for m in methods)
        + f" | all pooled | best {args.trials} of the pool | best / random |",
        "|---|" + "---|" * (len(methods) + 3),
    ]
    for label, ref_error in refs:
        means = {
            m: statistics.mean(
                box_share(rows, ref_error, ref_neurons)
                for s, rows in studies.items()
                if method_of(s, args.model) == m
            )
            for m in methods
        }
        best = greedy_best(every, args.trials, ref_error, ref_neurons)
        random_mean = means.get("random")
        ratio = f"{best / random_mean:.2f}x" if random_mean else "-"
        cells = " | ".join(f"{means[m]:.4f}" for m in methods)
        lines.append(
            f"| {label} ({ref_error:.2f}%) | {cells} | {box_share(every, ref_error, ref_neurons):.4f} | "
            f"{best:.4f} | {ratio} |"
        )
    lines += per_seed_lines(studies, args.model, args.trials, refs[0][1], ref_neurons)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--budget", default="smoke")
    parser.add_argument("--storage", default=",".join(DEFAULT_STORAGES), type=lambda s: s.split(","))
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    text = report(args)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
