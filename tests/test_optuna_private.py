"""Each private reach into Optuna that the study room makes (``sweep.study._optuna``), exercised against
the installed Optuna: an upgrade that moves one fails the test named after it."""

from __future__ import annotations

import warnings

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from sweep.study import _optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)
# ask() on a storage with heartbeats warns that they are meant for optimize(); sweep asks on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


@pytest.fixture
def storage(tmp_path) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            f"sqlite:///{tmp_path / 'private.db'}", heartbeat_interval=60, grace_period=120
        )


def test_study_storage_is_the_storage_behind_a_loaded_study(storage) -> None:
    optuna.create_study(study_name="s", storage=storage)
    study = optuna.load_study(study_name="s", storage=storage)
    inner = _optuna.study_storage(study)
    assert isinstance(inner, optuna.storages.BaseStorage)
    assert inner.get_study_id_from_name("s") == storage.get_study_id_from_name("s")
    trial = study.ask()
    tid = inner.get_trial_id_from_study_id_trial_number(inner.get_study_id_from_name("s"), trial.number)
    inner.set_trial_user_attr(tid, "seen", True)  # what enqueue_missing and reconcile do through it
    assert study.get_trials(deepcopy=False)[0].user_attrs["seen"] is True


def test_rdb_backend_unwraps_the_cache_and_passes_a_bare_storage(storage) -> None:
    study = optuna.create_study(study_name="s", storage=storage)
    assert _optuna.rdb_backend(_optuna.study_storage(study)) is storage
    assert _optuna.rdb_backend(storage) is storage
    assert isinstance(_optuna.rdb_backend(storage).engine, sqlalchemy.engine.Engine)


def test_stale_trial_ids_lists_running_trials_without_a_fresh_heartbeat(storage) -> None:
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    sid = storage.get_study_id_from_name("s")
    tid = storage.get_trial_id_from_study_id_trial_number(sid, trial.number)
    storage.record_heartbeat(tid)
    assert _optuna.stale_trial_ids(storage, sid) == []
    with storage.engine.begin() as conn:  # the heartbeat an hour old, past the 120 s grace period
        conn.execute(
            sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-1 hour')")
        )
    cached = _optuna.study_storage(optuna.load_study(study_name="s", storage=storage))
    assert _optuna.stale_trial_ids(cached, sid) == [tid]
    assert study.get_trials(deepcopy=False)[0].state == TrialState.RUNNING  # looked up, not failed


def test_table_names_are_the_tables_optuna_creates(storage) -> None:
    names = _optuna.table_names()
    assert {"studies", "trials", "version_info", "trial_heartbeats"} <= names
    assert names == set(sqlalchemy.inspect(storage.engine).get_table_names()) - {"alembic_version"}
