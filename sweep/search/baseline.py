"""``init: baseline``, the two-phase sweep: the study's unconstrained baseline is trained first (once per
study, FIFO, for its own ``baseline_epochs``), then every other trial fine-tunes from its final
checkpoint. A resumed sweep, or a second driver of the study, reuses a baseline that is complete and
waits for one another driver is still training."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

from sweep.errors import SweepError
from sweep.study import is_baseline, keep_baseline, kept_baseline

if TYPE_CHECKING:
    import optuna

    from sweep.search.plan import SweepPlan

BASELINE_POLL_S = 5.0  # how often a driver looks whether another driver's baseline trial has finished

# sweep.search.driver._fit: (plan, study, storage, n_trials, seed, fault, until) -> one outcome per finished trial
Fit = Callable[..., list[dict[str, Any]]]


def fit_from_baseline(
    fit: Fit,
    plan: SweepPlan,
    study: optuna.Study,
    rdb: optuna.storages.RDBStorage,
    n_trials: int,
    seed: int,
    fault: list[str],
    until: int | None,
) -> list[dict[str, Any]]:
    """Run ``n_trials`` trials with ``fit``: the baseline first when the study has none, then the rest from
    its checkpoint. A baseline that does not finish is a fault (appended to ``fault``); nothing else runs."""
    outcomes: list[dict[str, Any]] = []
    checkpoint = baseline_checkpoint(study, rdb)
    if checkpoint is None:
        epochs = plan.budget.baseline_epochs or plan.base.epochs
        print(
            f"init: baseline: training the study's baseline first ({epochs} epoch(s)); the other trials "
            "fine-tune from it",
            flush=True,
        )
        first = dataclasses.replace(plan, baseline_only=True, scheduler="fifo")
        outcomes = fit(first, study, rdb, 1, seed, fault, until)
        n_trials -= sum(o.get("state") == "COMPLETE" for o in outcomes)
        checkpoint = None if fault else baseline_checkpoint(study, rdb)
        if checkpoint is None:
            if not fault:
                fault.append(
                    "the baseline trial, which every other trial fine-tunes from (init: baseline), "
                    "did not finish"
                )
            return outcomes
    checkpoint = _kept(study, rdb, plan.out, checkpoint)
    print(f"init: baseline: the trials fine-tune from {checkpoint}", flush=True)
    rest = dataclasses.replace(plan, overrides={**plan.overrides, "init": checkpoint})
    return outcomes + (fit(rest, study, rdb, n_trials, seed, fault, until) if n_trials > 0 else [])


def _kept(study: optuna.Study, rdb: optuna.storages.RDBStorage, out: str, checkpoint: str) -> str:
    """The baseline checkpoint the trials start from: Ray's, copied into the study's artifacts once, or
    that copy when Ray's folder is gone (a resume after ``--out`` was cleared)."""
    if Path(checkpoint).exists():
        kept = keep_baseline(study, rdb.url, out, checkpoint)
        if kept is not None:
            print(f"init: baseline: its checkpoint is kept with the study in {kept}", flush=True)
        return checkpoint
    kept = kept_baseline(study, rdb.url, out)
    if kept is None:
        raise SweepError(
            f"the study's baseline checkpoint {checkpoint} is gone and the study kept no copy of it: "
            "start a new study, or put the checkpoint back"
        )
    return str(kept)


def baseline_checkpoint(study: optuna.Study, rdb: optuna.storages.RDBStorage) -> str | None:
    """The final checkpoint of the study's complete baseline trial (waiting while another driver of the
    study trains it), or None when it has none yet."""
    from sweep.train import checkpoint_path

    while True:
        trials = [t for t in study.get_trials(deepcopy=False) if is_baseline(t)]
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("checkpoint")]
        if done:
            return str(checkpoint_path(str(done[0].user_attrs["checkpoint"]), rdb.url))
        if not any(t.state == TrialState.RUNNING for t in trials):
            return None
        print("init: baseline: waiting for the baseline trial another driver is training", flush=True)
        time.sleep(BASELINE_POLL_S)
