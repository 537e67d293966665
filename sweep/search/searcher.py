"""Ray Tune's side of the study record: ``StudySearch`` (the searcher) and ``SweepProgress`` (a callback).

``StudySearch`` is a Tune ``Searcher`` of sweep's own over Optuna's public ask-and-tell API: for each
trial Tune wants, it asks the study for a trial (``study.ask``; an enqueued one, such as the baseline,
comes first), lets the search space suggest its settings on it (define-by-run), and when Tune reports the
trial complete it writes the trial's user attributes (from the last result, which carries training's full
metrics as JSON under ``RECORD``) onto that Optuna trial, then tells the study the objective values
(``study.tell``), because a finished trial is read-only. Ray calls the searcher's ``on_trial_complete``
after the trial's last checkpoint has been persisted (``on_checkpoint`` comes first), so the recorded
``checkpoint`` is the final one. A trial that raises (NaN loss) reaches the searcher without its reason;
the reason arrives a moment later through the ``on_trial_error`` callback, so the searcher defers the
FAIL until then. The study database is the searcher's whole state: nothing is saved with Tune's
experiment, and a resumed sweep opens the study again.

Several drivers may share one study: ``suggest`` asks the study for a trial while holding the study's
cross-driver lock (``sweep.study.drivers.study_lock``), after checking that the study does not already
hold what this run asks for (``--resume``: complete plus running trials, whoever runs them), and gives
each trial its first heartbeat. Each trial records the Ray node it runs on (user attribute ``node``)
from its first result, and every retry Ray makes after a lost worker (``worker_failures``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from sweep.errors import first_line
from sweep.study import (
    describe_params,
    finished_trial_attrs,
    study_lock,
    trial_params,
    write_trial_attrs,
)

RECORD = "record"  # result key holding the full metrics as JSON (nested values stay out of Ray's loggers)
CHECKPOINT_FILE = "checkpoint.pt"
DATABASE_WRITE_FAILED = "the study database could not be written"
EMPTY_LAYERS = "empty_layers"  # the trial's constraint: layers left without a neuron (> 0: infeasible)


def searcher_class():
    from ray.tune.search import Searcher

    class StudySearch(Searcher):
        """A Tune searcher over the Optuna study ``study_name`` in ``storage``: ``space(trial)`` suggests a
        trial's settings on an asked Optuna trial and returns its config; ``metric`` are the objectives
        (each minimised, in the study's order); ``sampler`` proposes. Writes each trial's user attributes
        (and a failure's reason) into the study before it tells the trial's outcome."""

        def __init__(
            self,
            space: Callable[[optuna.Trial], dict[str, Any]],
            metric: list[str],
            mode: list[str],
            sampler: optuna.samplers.BaseSampler,
            storage: optuna.storages.BaseStorage,
            study_name: str,
        ) -> None:
            super().__init__(metric=metric, mode=mode)
            self.space = space
            self.storage = storage
            # The pruner Ray's OptunaSearch used: Tune's scheduler, not Optuna, stops trials early.
            self.study = optuna.load_study(
                study_name=study_name, storage=storage, sampler=sampler, pruner=optuna.pruners.NopPruner()
            )
            self.study_id = storage.get_study_id_from_name(study_name)
            self.trials: dict[str, optuna.Trial] = {}  # Ray trial id -> the Optuna trial it runs
            self.trial_ids: dict[str, int] = {}  # Ray trial id -> the Optuna trial's id in the storage
            self.completed: set[str] = set()  # Ray trial ids whose outcome reached this searcher
            self.checkpoints: dict[str, str] = {}  # Ray trial id -> last persisted checkpoint file
            self.outcomes: dict[str, dict[str, Any]] = {}  # Ray trial id -> what the progress line says
            self.pending_failures: dict[str, Any] = {}  # Ray trial id -> Optuna trial awaiting its reason
            self.worker_failures: dict[str, list[dict[str, Any]]] = {}  # Ray trial id -> retried losses
            self.config_attrs: Any = lambda params: {}  # a failed trial's resolved settings, from its params
            self.lock: Callable[[], Any] = contextlib.nullcontext  # the study's cross-driver lock
            self.study_full: Callable[[], bool] = lambda: False  # holds what this run asks for already
            self.heartbeat: Any = None  # sweep.study.drivers.Heartbeat of this driver's trials
            self.nodes: dict[str, Any] = {}  # Ray trial id -> the node its last result came from

        def share_study(self, storage: Any, study_id: int, until: int | None) -> None:
            """Ask under the study's cross-driver lock; with ``until`` (``--resume``), ask for nothing
            more once the study holds that many complete and running trials, whoever runs them."""
            self.lock = lambda: study_lock(storage, study_id)
            if until is not None:
                holds = (TrialState.COMPLETE, TrialState.RUNNING)
                self.study_full = lambda: len(storage.get_all_trials(study_id, False, holds)) >= until

        def number_of(self, trial_id: str) -> int | None:
            """The Optuna trial number of Ray's trial ``trial_id`` (None for a trial this searcher never
            asked for)."""
            trial = self.trials.get(trial_id)
            return None if trial is None else trial.number

        def suggest(self, trial_id: str) -> dict | str | None:
            """Ask the study for a trial under the study's lock, unless it holds enough already."""
            if trial_id in self.trials:
                return self._config(self.trials[trial_id])
            with self.lock():
                if self.study_full():
                    return Searcher.FINISHED
                trial = self.study.ask()
                self.trial_ids[trial_id] = self.storage.get_trial_id_from_study_id_trial_number(
                    self.study_id, trial.number
                )
                self.trials[trial_id] = trial
                config = self._config(trial)
                if self.heartbeat is not None:
                    self.heartbeat.beat(self.trial_ids[trial_id])
            return config

        def _config(self, trial: optuna.Trial) -> dict[str, Any]:
            """Define-by-run: the space suggests on ``trial``; Tune gets every suggested parameter plus
            what the space returned (the baseline's constant penalty, the trial number), nested at
            ``/`` in a name as Ray's OptunaSearch nested it."""
            returned = self.space(trial)
            if returned is not None and not isinstance(returned, dict):
                raise TypeError(f"the define-by-run space must return a dict or None, got {type(returned)}")
            return _unflatten({**trial.params, **(returned or {})})

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            """Nothing: the objectives come as a list, for which Ray's OptunaSearch reported no
            intermediate values either (Optuna takes none for several objectives); the trial's node is
            written by the progress callback, and Tune's scheduler, not Optuna, stops trials early."""

        def live_trial_ids(self) -> list[int]:
            """Optuna trial ids of this driver's trials that are not finished yet (for the heartbeat)."""
            return [
                optuna_id
                for tid, optuna_id in list(self.trial_ids.items())
                if tid not in self.completed or tid in self.pending_failures
            ]

        def note_node(self, trial_id: str, node: Any) -> None:
            """Record where the trial runs as soon as a result says so (again after a retry elsewhere)."""
            if trial_id not in self.trials or not node or self.nodes.get(trial_id) == node:
                return
            self.nodes[trial_id] = node
            if trial_id not in self.completed:
                with contextlib.suppress(RuntimeError):  # finished meanwhile
                    write_trial_attrs(self.storage, self.trial_ids[trial_id], {"node": node})

        def note_retry(self, trial_id: str, reason: str) -> int | None:
            """Ray lost the trial's worker and runs it again: keep the reason and the node it was on."""
            trial = self.trials.get(trial_id)
            if trial is None:
                return None
            failures = [
                *self.worker_failures.get(trial_id, []),
                {"reason": reason, "node": self.nodes.get(trial_id)},
            ]
            self.worker_failures[trial_id] = failures
            with contextlib.suppress(RuntimeError):
                write_trial_attrs(self.storage, self.trial_ids[trial_id], {"worker_failures": failures})
            return trial.number

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            try:
                self._record(trial_id, result, error)
            except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as err:
                # Left RUNNING in the study (it cannot be written now); the sweep stops on this outcome
                # and a --resume marks the trial FAIL.
                number = self.trials[trial_id].number
                reason = f"{DATABASE_WRITE_FAILED} ({first_line(err)})"
                self.outcomes[trial_id] = {"number": number, "state": "FAIL", "reason": reason}

        def _record(self, trial_id: str, result: dict | None, error: bool) -> None:
            trial = self.trials.get(trial_id)
            if trial is None or trial_id in self.completed:
                return
            self.completed.add(trial_id)
            if error:
                self.pending_failures[trial_id] = trial
                return
            record = _record_of(result)
            if record is None:
                reason = "the trial stopped before reporting any epoch"
                self._fail(trial_id, reason, self.config_attrs(trial_params(trial)))
                self.outcomes[trial_id] = {"number": trial.number, "state": "FAIL"}
                return
            extra = {"ray_trial_id": trial_id}
            if "train_seconds" not in record and result and result.get("time_total_s") is not None:
                extra["train_seconds"] = round(float(result["time_total_s"]), 3)
            attrs = finished_trial_attrs(record, self.checkpoints.get(trial_id), extra)
            values = [record.get(name) for name in self.metric]
            bad = [n for n, v in zip(self.metric, values, strict=True) if not _finite(v)]
            if bad:
                reason = f"objective(s) {', '.join(bad)} not reported as finite numbers"
                self._fail(trial_id, reason, attrs)
                self.outcomes[trial_id] = {"number": trial.number, "state": "FAIL", "reason": reason}
                return
            write_trial_attrs(self.storage, self.trial_ids[trial_id], attrs)
            # A network with an emptied layer is no network (about 90% error at almost no neurons): as a
            # plain point it sits on the front's small end and draws the sampler towards more of them.
            # As an infeasible trial (Optuna's constraints), TPE and NSGA-II count it among the bad ones.
            trial.set_constraint(EMPTY_LAYERS, float(len(record.get("empty_layers") or [])))
            self.study.tell(trial, [float(v) for v in values], state=TrialState.COMPLETE)
            self.outcomes[trial_id] = {
                "number": trial.number,
                "state": "COMPLETE",
                "early_stopped": attrs["early_stopped"],
                "values": dict(zip(self.metric, values, strict=True)),
                "epochs": attrs.get("epochs"),
                "params": trial_params(trial),
                "seconds": attrs.get("train_seconds"),
            }

        def _fail(self, trial_id: str, reason: str, attrs: dict[str, Any]) -> None:
            """Write the trial's attributes and ``fail_reason``, then tell the study it failed."""
            write_trial_attrs(self.storage, self.trial_ids[trial_id], {**attrs, "fail_reason": reason})
            self.study.tell(self.trials[trial_id], state=TrialState.FAIL)

        def save(self, checkpoint_path: str) -> None:
            """Nothing to save: the study database is this searcher's state, and a resumed sweep reopens
            the study rather than unpickling Ray's copy (which cannot hold the define-by-run closure)."""

        def restore(self, checkpoint_path: str) -> None:
            """Nothing to restore (see ``save``): the study is opened again by the next ``sweep run``."""

        def fail_pending(self, trial_id: str, reason: str) -> int | None:
            trial = self.pending_failures.pop(trial_id, None)
            if trial is None:
                return None
            attrs = {"ray_trial_id": trial_id, **self.config_attrs(trial_params(trial))}
            self._fail(trial_id, reason, attrs)
            self.outcomes[trial_id] = {"number": trial.number, "state": "FAIL", "reason": reason}
            return trial.number

        def fail_unfinished(self, reason: str) -> list[int]:
            """After the run: FAIL every trial this searcher asked for that was never told (interrupted)."""
            numbers = []
            for trial_id, trial in list(self.trials.items()):
                if trial_id in self.pending_failures:
                    self.fail_pending(trial_id, "the trial raised an error (see its error.txt)")
                elif trial_id not in self.completed:
                    state = self.storage.get_trial(self.trial_ids[trial_id]).state
                    if state == TrialState.RUNNING:
                        self._fail(trial_id, reason, self.config_attrs(trial_params(trial)))
                        self.outcomes[trial_id] = {
                            "number": trial.number,
                            "state": "FAIL",
                            "reason": reason,
                        }
                        numbers.append(trial.number)
            return numbers

    return StudySearch


def _unflatten(params: dict[str, Any]) -> dict[str, Any]:
    """``{"a/b": 1}`` -> ``{"a": {"b": 1}}``: the config Ray's OptunaSearch gave Tune for the same params."""
    config: dict[str, Any] = {}
    for key, value in params.items():
        *path, last = key.split("/") if isinstance(key, str) else [key]
        node = config
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return config


def root_cause_line(traceback_text: str) -> str:
    """``Kind: message`` of the first exception in a traceback's text: the root of a chain of causes."""
    for line in traceback_text.splitlines():
        found = _EXCEPTION_LINE.match(line.strip())
        if found:
            return f"{found.group(1).rsplit('.', 1)[-1]}: {found.group(2)}".strip()[:300]
    lines = [ln.strip() for ln in traceback_text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no reason given"


def _record_of(result: dict | None) -> dict[str, Any] | None:
    if not result or not isinstance(result.get(RECORD), str):
        return None
    return json.loads(result[RECORD])


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# The line of a traceback that names the exception: ``pkg.mod.KindError: message``.
_NODE_DIED = re.compile(r"its node has died\. Node Id: (\w+)")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): ?(.*)$")


def _error_reason(trial: Any) -> str:
    """``Kind: message`` of the exception a trial raised, read from Ray's text error file (``error.txt``).

    Its pickled twin (``error.pkl``) is never loaded: the trial folder may be on a shared disk, and
    unpickling a file there would run whatever code its writer put in it."""
    path = trial.error_file
    try:
        text = Path(path).read_text(errors="replace") if path and os.path.isfile(path) else ""
    except OSError:
        text = ""
    last_failure = re.split(r"^Failure # \d+.*$", text, flags=re.MULTILINE)[-1]
    lines = [ln.strip() for ln in last_failure.splitlines() if ln.strip()]
    node_died = next((_NODE_DIED.search(ln) for ln in lines if _NODE_DIED.search(ln)), None)
    if node_died:  # Ray names no exception kind then, only the node and why it went
        return f"the Ray node running the trial died (node {node_died.group(1)}): {lines[-1]}"[:500]
    for line in reversed(lines):
        found = _EXCEPTION_LINE.match(line)
        if found:
            return f"{found.group(1).rsplit('.', 1)[-1]}: {found.group(2)}".strip()[:500]
    return lines[-1][:500] if lines else "the trial raised an error"


def progress_class():
    from ray import tune

    class SweepProgress(tune.Callback):
        """Feeds the searcher the persisted checkpoint paths and error reasons; one line per trial."""

        def __init__(
            self, search: Any, total: int, scheme: str, emit: Callable[[str], None] = print_line
        ) -> None:
            self.search = search
            self.total = total
            self.scheme = scheme  # "s3://" etc. when --out is a URI: Ray's checkpoint paths lack it
            self.emit = emit  # where the lines go: this process's stdout, or back to a ray:// client
            self.done = 0

        def on_checkpoint(
            self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
        ) -> None:
            path = f"{self.scheme}{checkpoint.path}/{CHECKPOINT_FILE}"
            self.search.checkpoints[trial.trial_id] = path

        def on_trial_result(
            self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
        ) -> None:
            """A line per trained epoch, so a sweep of long trials shows it is moving; the trial's node
            goes into the study with its first result."""
            if "epoch" not in result or "top1_error" not in result:
                return
            record = _record_of(result) or {}
            self.search.note_node(trial.trial_id, record.get("node"))
            number = self.search.number_of(trial.trial_id)
            running = sum(t.status == "RUNNING" for t in trials)
            self.emit(
                f"  trial {_num(number)} epoch {int(result['epoch'])}: held-out "
                f"error {result['top1_error']:.2f}%, neurons {int(result.get('neurons', 0))} "
                f"({running} running, {self.done}/{self.total} done)"
            )

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            """The trial's worker failed and ``--max-failures`` lets Ray run it again."""
            reason = _error_reason(trial)
            number = self.search.note_retry(trial.trial_id, reason)
            self.emit(f"  trial {_num(number)} lost its worker ({reason}); Ray runs it again")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            reason = _error_reason(trial)
            number = self.search.fail_pending(trial.trial_id, reason)
            self.done += 1
            outcome = self.search.outcomes.get(trial.trial_id) or {}
            self.emit(
                f"[{self.done}/{self.total}] trial {_num(number)} FAILED: {outcome.get('reason', reason)}"
            )

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.done += 1
            self.emit(f"[{self.done}/{self.total}] {_outcome_line(self.search.outcomes.get(trial.trial_id))}")

    return SweepProgress


def print_line(line: str) -> None:
    print(line, flush=True)


def _num(number: int | None) -> str:
    return "?" if number is None else str(number)


def _outcome_line(outcome: dict[str, Any] | None) -> str:
    if outcome is None:
        return "trial ? ended without a result"
    number = outcome["number"]
    if outcome["state"] == "FAIL":
        return f"trial {number} FAILED: {outcome.get('reason', 'no result')}"
    values = outcome["values"]
    shown = ", ".join(
        f"error {v:.2f}%" if k == "top1_error" else f"{k} {v:,.0f}" if k != "latency_ms" else f"{v:.2f} ms"
        for k, v in values.items()
    )
    what = f"early-stopped at epoch {outcome['epochs']}" if outcome["early_stopped"] else "complete"
    seconds = outcome.get("seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, int | float) else ""
    return f"trial {number} {what}: {describe_params(outcome['params'])} -> {shown}{took}"
