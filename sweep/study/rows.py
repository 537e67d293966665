"""What every reader of a study's trials shares: the one state counter (``StudyCounts``), the one
objective-name function (``objective_names``) and which trial is the baseline (``trial_params``), for
``status``, ``run``'s summary, ``pareto``, ``export`` and the dashboards.

The one trial-row type, ``TrialRow``, is ``sweep.select``'s: it writes its widths with
``sweep.measure``, a room beside this one. ``StudyCounts`` counts its rows as well as Optuna's trials.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from sweep.study.records import check_objectives
from sweep.study.storage import with_lock_retries

BASELINE_ATTR = "sweep_baseline"  # user attribute that marks a study's unconstrained baseline trial


def is_baseline(trial: FrozenTrial | optuna.Trial) -> bool:
    """Whether ``trial`` is the study's unconstrained baseline: enqueued with the ``sweep_baseline``
    mark (it samples no penalty), or, in a study begun before that mark, one that took penalty none (and
    no other method: a magnitude trial is pruned, not the baseline)."""
    if bool(trial.user_attrs.get(BASELINE_ATTR)):
        return True
    method = trial.params.get("method", (trial.user_attrs.get("config") or {}).get("method", "prox"))
    return trial.params.get("penalty") == "none" and method == "prox"  # a magnitude trial has no penalty


def trial_params(trial: FrozenTrial | optuna.Trial) -> dict[str, Any]:
    """A trial's searched settings: its Optuna parameters, plus ``penalty: none`` for the baseline."""
    return {**trial.params, "penalty": "none"} if is_baseline(trial) else dict(trial.params)


Warn = Callable[[str], None]


def objective_names(
    study: optuna.Study, warn: Warn | None = None, default: Sequence[str] | None = None
) -> list[str]:
    """The study's objective names in value order: its ``objectives`` attribute, else Optuna's metric
    names, else ``default`` (``value0``, ``value1``, ... when not given). A malformed ``objectives``
    attribute is passed over and reported through ``warn``."""
    attrs = with_lock_retries(lambda: study.user_attrs)
    count = len(study.directions)
    fallback = [f"value{i}" for i in range(count)] if default is None else default
    names, problems = check_objectives(attrs, getattr(study, "metric_names", None), count, fallback)
    for line in problems if warn is not None else ():
        warn(f"study {study.study_name}: {line}")
    return names


@dataclass
class StudyCounts:
    """How many trials of a study are complete (fully trained), early-stopped, failed, running, waiting."""

    complete: int = 0
    early_stopped: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0

    @classmethod
    def of(cls, trials: Sequence[Any]) -> StudyCounts:
        """Count Optuna trials and ``TrialRow``s alike: a complete trial marked ``early_stopped`` and a
        pruned one count as early-stopped, never as complete."""
        out = cls()
        for t in trials:
            if isinstance(t, FrozenTrial):
                state, early = t.state.name, bool(t.user_attrs.get("early_stopped"))
            else:  # a row (sweep.select.TrialRow): its state's name, early_stopped already checked
                state, early = t.state, t.early_stopped
            if state == "FAIL":
                out.failed += 1
            elif state == "PRUNED" or (state == "COMPLETE" and early):
                out.early_stopped += 1
            elif state == "COMPLETE":
                out.complete += 1
            elif state == "RUNNING":
                out.running += 1
            elif state == "WAITING":
                out.waiting += 1
        return out

    def summary(self) -> dict[str, int]:
        """The counts the pages and ``pareto`` show: waiting trials count as running."""
        return {
            "complete": self.complete,
            "failed": self.failed,
            "early_stopped": self.early_stopped,
            "running": self.running + self.waiting,
        }

    def line(self) -> str:
        """``3 complete, 1 early-stopped, 0 failed`` (running and waiting only when there are any)."""
        parts = [f"{self.complete} complete", f"{self.early_stopped} early-stopped", f"{self.failed} failed"]
        if self.running:
            parts.append(f"{self.running} running")
        if self.waiting:
            parts.append(f"{self.waiting} waiting")
        return ", ".join(parts)


def counts_line(study: optuna.Study) -> str:
    return StudyCounts.of(study.get_trials(deepcopy=False)).line()
