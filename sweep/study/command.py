"""``sweep status``: the studies in a database with their trial counts, or one study's trials.

It only reads: the database is opened read-only (``sweep.study.storage``) and every trial attribute it
shows is checked on the way in (``sweep.study.records``); a bad one is reported in a warning line and
shown as not recorded.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from sweep.config import pruning_label
from sweep.study.create import load_existing
from sweep.study.records import check_trial, print_warning
from sweep.study.rows import StudyCounts, objective_names, trial_params
from sweep.study.storage import check_read_name, open_storage, redact, resolve_storage, with_lock_retries


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and spec:
        return format(value, spec)
    return str(value)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def trial_table(study: optuna.Study, problems: list[str] | None = None) -> list[list[str]]:
    """The text table of one study's trials, a header first: the cells ``status`` prints (the values as
    the study recorded them, unlike ``TrialRow``'s fallbacks). Attributes that fail their check are shown
    as not recorded and their lines appended to ``problems``."""
    names = objective_names(study, print_warning)
    header = ["trial", "state", "penalty", "lambda", *names, "epochs", "seconds", "note"]
    rows = [header]
    for t in study.get_trials(deepcopy=False):
        checked = check_trial(t, names, trial_params(t))
        if problems is not None:
            problems.extend(checked.problems)
        attrs, values, params = checked.attrs, checked.values, checked.params
        state = t.state.name
        if t.state == TrialState.COMPLETE and attrs.get("early_stopped"):
            state = "EARLY_STOPPED"
        seconds = t.duration.total_seconds() if t.duration else None
        note = attrs.get("fail_reason") or ""
        if attrs.get("empty_layers"):
            note = f"empty layer(s): {', '.join(attrs['empty_layers'])}"
        config = attrs.get("config") or {}
        penalty = params.get("penalty", config.get("penalty", "-"))
        lam = params.get("lam")
        pruning = pruning_label({**config, **params})
        if pruning is not None:  # a magnitude trial: its pruning, no penalty
            penalty, lam = pruning, None
        rows.append(
            [
                str(t.number),
                state,
                str(penalty),
                "-" if lam is None or penalty == "none" else f"{lam:.2e}",
                *(_fmt(values.get(n), ".2f" if n == "top1_error" else ".0f") for n in names),
                _fmt(attrs.get("epochs")),
                _fmt(seconds, ".1f"),
                note[:80],
            ]
        )
    return rows


def status_command(storage: str | None, study: str | None) -> int:
    """``sweep status``: the studies in a database with their trial counts, or one study's trials."""
    if study is not None:
        check_read_name(study)
    url = resolve_storage(storage)
    rdb = open_storage(url, readonly=True)
    try:
        return _status(rdb, url, study)
    finally:
        rdb.engine.dispose()


def _status(rdb: optuna.storages.RDBStorage, url: str, study: str | None) -> int:
    print(f"storage: {redact(url)}")
    if study is not None:
        loaded = with_lock_retries(lambda: load_existing(rdb, study))
        counts = StudyCounts.of(loaded.get_trials(deepcopy=False))
        print(f"study {study}: {counts.line()}")
        problems: list[str] = []
        rows = with_lock_retries(lambda: trial_table(loaded, problems))
        for line in problems:
            print_warning(line)
        print(_table(rows) if len(rows) > 1 else "no trials yet")
        return 0
    summaries = with_lock_retries(rdb.get_all_studies)
    if not summaries:
        print("no studies in this database; start one with: python -m sweep run MODEL")
        return 0
    rows = [["study", "objectives", "complete", "early-stopped", "failed", "running", "best top1_error"]]
    for summary in sorted(summaries, key=lambda s: s.study_name):
        loaded = optuna.load_study(study_name=summary.study_name, storage=rdb)
        trials = with_lock_retries(lambda s=loaded: s.get_trials(deepcopy=False))
        counts = StudyCounts.of(trials)
        names = objective_names(loaded, print_warning)
        best = None
        if "top1_error" in names:
            i = names.index("top1_error")
            errors = [
                t.values[i]
                for t in trials
                if t.state == TrialState.COMPLETE
                and t.user_attrs.get("early_stopped") is not True
                and t.values
            ]
            best = min(errors, default=None)
        rows.append(
            [
                summary.study_name,
                ",".join(names),
                str(counts.complete),
                str(counts.early_stopped),
                str(counts.failed),
                str(counts.running),
                _fmt(best, ".2f"),
            ]
        )
    print(_table(rows))
    return 0
