"""The private parts of Optuna that the study room still reaches into, each behind one small function.

Each function says why Optuna's public API does not do the job. ``tests/test_optuna_private.py``
exercises every one against the installed Optuna, so an upgrade that moves one fails a named test
instead of a sweep. Ids go through the public storage API (``get_study_id_from_name``,
``get_trial_id_from_study_id_trial_number``), not ``Study._study_id`` or ``FrozenTrial._trial_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

__all__ = ["rdb_backend", "stale_trial_ids", "study_storage", "study_view", "table_names"]


def study_storage(study: optuna.Study) -> Any:
    """The storage a study reads and writes through (``Study._storage``).

    Public API: a ``Study`` keeps the storage it was given but offers no accessor for it, and its
    ``set_user_attr`` reaches only the study; marking a WAITING trial as the baseline
    (``enqueue_missing``), failing a dead driver's trial with a reason (``reconcile``) and the study's
    lock all need the storage behind a study their callers hand over already loaded."""
    return study._storage


def rdb_backend(storage: Any) -> Any:
    """The ``RDBStorage`` under Optuna's caching wrapper (``_CachedStorage._backend``); ``storage``
    itself when it is not wrapped.

    Public API: ``optuna.load_study`` wraps an ``RDBStorage`` in a cache that exposes neither its
    engine nor its heartbeat settings; closing the connections and reading the grace period need the
    storage underneath."""
    return getattr(storage, "_backend", storage)


def stale_trial_ids(storage: Any, study_id: int) -> list[int]:
    """RUNNING trials of the study whose last heartbeat is older than the grace period
    (``RDBStorage._get_stale_trial_ids``, by the database's clock).

    Public API: ``optuna.storages.fail_stale_trials`` fails them at once, without a reason; sweep
    writes why (``fail_reason``) before it marks them FAIL."""
    return list(rdb_backend(storage)._get_stale_trial_ids(study_id))


def table_names() -> frozenset[str]:
    """The tables Optuna's ``RDBStorage`` creates (``optuna.storages._rdb.models``), without Alembic's.

    Public API: none lists them; telling Optuna's own database from another program's (before
    ``sweep run`` writes into it) needs the schema of the installed version."""
    from optuna.storages._rdb import models

    return frozenset(models.BaseModel.metadata.tables)


class _StudyView:
    """A study whose ``_get_trials`` leaves out the trials ``keep`` refuses; all else is the study's."""

    def __init__(self, study: optuna.Study, keep: Callable[[optuna.trial.FrozenTrial], bool]) -> None:
        self._study, self._keep = study, keep

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, *args: Any, **kwargs: Any) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self._study._get_trials(*args, **kwargs) if self._keep(t)]


def study_view(study: optuna.Study, keep: Callable[[optuna.trial.FrozenTrial], bool]) -> Any:
    """``study`` as ``GPSampler.sample_relative`` reads it (``Study._get_trials``, ``Study._storage``),
    with only the trials that ``keep`` accepts.

    Public API: GPSampler fits its model on every complete trial of the study and needs each to hold
    every modelled parameter; a study's baseline holds none of the penalty's, and no argument of the
    sampler leaves a trial out (``sweep.study.create.BaselineFreeGPSampler``)."""
    return _StudyView(study, keep)
