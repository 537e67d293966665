"""What ``sweep run`` checks before it writes a byte into a study database: that the database is one
sweep may write (a writable file whose tables are all Optuna's) and that a study of the name it was
given is sweep's own and of the same model, dataset, objectives and directions.

A database that holds another program's tables, a study that ``sweep run`` did not create (it records no
fingerprint, or a broken one) and a study of another model, dataset or objectives are refused in one
line. Every check here only reads (``sweep.study.storage``), so a refusal leaves the file as it was: no
tables added, no switch to WAL mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna

from sweep.errors import SweepError, first_line, quote
from sweep.study.storage import (
    CORE_TABLES,
    check_storage_for_writing,
    open_storage,
    redact,
    sqlite_file,
    with_lock_retries,
)

# What a study must match to take this run's trials, whatever --resume says.
ESSENTIALS = ("model", "dataset", "objectives")


def check_study_matches(
    name: str,
    shown: str,
    user_attrs: dict[str, Any],
    metric_names: Sequence[str] | None,
    directions: Sequence[optuna.study.StudyDirection],
    fingerprint: dict[str, Any],
    resume: bool,
) -> list[str]:
    """Refuse an existing study that this run must not add trials to: one that ``sweep run`` did not
    create (no fingerprint, or one that is not a mapping), or one of other objectives, directions, model
    or dataset; without ``resume`` also one of another search space or budget. Returns the differences
    ``--resume`` goes on with (``key.path: old -> new``)."""
    from sweep.space import fingerprint_differences

    objectives = list(fingerprint["objectives"])
    label = f"study {quote(name)} in {shown}"
    recorded = user_attrs.get("fingerprint")
    if recorded is None:
        raise SweepError(
            f"{label} was not created by `sweep run` (it records no fingerprint of its search space); "
            "sweep adds trials only to studies it created: choose another --study name"
        )
    if not isinstance(recorded, dict):
        raise SweepError(
            f"{label} has a broken fingerprint: its user attribute fingerprint is a {type(recorded).__name__}, "
            f"not a mapping (got {quote(recorded, 60)}); choose another --study name"
        )
    recorded_objectives = user_attrs.get("objectives") or metric_names
    if recorded_objectives and not (
        isinstance(recorded_objectives, list | tuple) and all(isinstance(n, str) for n in recorded_objectives)
    ):
        raise SweepError(
            f"{label} records objectives {quote(recorded_objectives, 60)}, not a list of names; "
            "choose another --study name"
        )
    if recorded_objectives and list(recorded_objectives) != objectives:
        raise SweepError(
            f"{label} minimises {', '.join(recorded_objectives)}, this search space "
            f"{', '.join(objectives)}; choose another --study name"
        )
    if len(directions) != len(objectives):
        raise SweepError(f"{label} has {len(directions)} objectives, not {len(objectives)}")
    if any(d != optuna.study.StudyDirection.MINIMIZE for d in directions):
        shown_directions = ", ".join(d.name.lower() for d in directions)
        raise SweepError(
            f"{label} has directions {shown_directions}; sweep minimises every objective "
            f"({', '.join(objectives)}): choose another --study name"
        )
    other = [
        f"{key} {quote(recorded.get(key, '(none)'), 60)}, this run {quote(fingerprint.get(key), 60)}"
        for key in ESSENTIALS
        if recorded.get(key) != fingerprint.get(key)
    ]
    if other:
        raise SweepError(
            f"{label} is of another model, dataset or objectives: {'; '.join(other)}; "
            "a study takes trials only of its own (--resume too): choose another --study name"
        )
    differences = fingerprint_differences(recorded, fingerprint)
    if differences and not resume:
        shown_diffs = "; ".join(differences[:6]) + (
            f"; and {len(differences) - 6} more" if len(differences) > 6 else ""
        )
        raise SweepError(
            f"{label} was made with a different search space or budget: {shown_diffs}; "
            "pass --resume to continue it anyway, or --study NAME for a new study"
        )
    return differences


def check_before_run(url: str, name: str, fingerprint: dict[str, Any], resume: bool) -> None:
    """Everything that refuses a run for its database or study, read-only and before anything slow:
    the database is one sweep may write, and the study (if there is one of that name) is sweep's own and
    matches this run; with ``resume`` it must exist."""
    shown = redact(url)
    path = sqlite_file(url)
    if path is not None and not path.parent.is_dir():
        raise SweepError(f"cannot open storage {shown}: folder {path.parent} does not exist")
    if path is not None and not path.exists():
        if resume:
            raise SweepError(
                f"no study database at {path} (storage {shown}); run a sweep first or pass --storage"
            )
        return
    tables = check_storage_for_writing(url)
    if not tables >= CORE_TABLES:  # a new (empty) database
        if resume:
            raise SweepError(f"--resume: no study {quote(name)} in {shown}: it holds no Optuna studies")
        return
    rdb = open_storage(url, readonly=True)
    try:
        names = sorted(s.study_name for s in with_lock_retries(rdb.get_all_studies))
        if name not in names:
            if resume:
                known = ", ".join(names) or "none"
                raise SweepError(f"no study {quote(name)} in this database; studies there: {known}")
            return
        study = with_lock_retries(lambda: optuna.load_study(study_name=name, storage=rdb))
        attrs = with_lock_retries(lambda: study.user_attrs)
        check_study_matches(name, shown, attrs, study.metric_names, study.directions, fingerprint, resume)
    except SweepError:
        raise
    except Exception as err:  # a row Optuna cannot decode, a schema of another Optuna version
        raise SweepError(f"cannot read study {quote(name)} from {shown}: {first_line(err)}") from None
    finally:
        rdb.engine.dispose()
