"""Who drives a study: driver identities, heartbeats, reconciling trials left RUNNING, and the lock that
makes several drivers of one study take turns where they would otherwise race.

A trial's RUNNING record is made by the driver, not by the Ray worker that trains it: Ray Tune asks the
driver's searcher for a trial, and the searcher's ``study.ask()`` claims a WAITING trial or creates a new
one. So the driver owns the record. When a worker (or its whole Ray node) dies, Ray tells the driver,
which marks the trial FAIL with the reason or has Ray retry it (``--max-failures``). When the driver
itself dies, nobody is told: its trials stay RUNNING until another driver reconciles them. Same host:
its process is gone. Any host: its Optuna heartbeat, which a live driver records every
``HEARTBEAT_INTERVAL_S`` for each trial it holds, is older than the storage's grace period.

What several drivers of one study rely on (Optuna's RDB storage, optuna/storages/_rdb/storage.py):

- Claiming a WAITING trial (``Study._pop_waiting_trial_id``, called by ``ask``) goes through
  ``set_trial_state_values(trial, RUNNING)``, which reads the trial row ``SELECT ... FOR UPDATE``, returns
  False unless it is still WAITING, and sets RUNNING in the same transaction. On PostgreSQL a second
  driver's ``FOR UPDATE`` waits for the first to commit, then sees RUNNING and moves on to the next
  WAITING trial: each enqueued trial is claimed by exactly one driver. (SQLite ignores ``FOR UPDATE``;
  there the database's single writer is what separates them.)
- Nothing in Optuna makes "look whether a point is queued, then enqueue it" atomic, nor "count the
  trials, then ask for one". Two drivers started together would both enqueue the baseline and the start
  points, and both ask past the number of trials wanted. ``study_lock`` serialises those two steps:
  a PostgreSQL transaction-level advisory lock keyed on the study, or an exclusive ``flock`` beside a
  SQLite file. Optuna's own writes go through other connections and never wait on it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from sweep.study import _optuna

HEARTBEAT_INTERVAL_S = 20  # a driver records a heartbeat this often for each trial it holds
HEARTBEAT_GRACE_S = 120  # a RUNNING trial whose heartbeat is older than this has lost its driver
RUNS_ATTR = "sweep_runs"  # study user attribute: drivers that have started on the study
LOCK_CLASS = zlib.crc32(b"sweep.study_lock") & 0x7FFFFFFF  # first key of the advisory lock


# ------------------------------------------------------------------------------------------ drivers


def driver_identity() -> dict[str, Any]:
    """Who runs this sweep: host, process id and that process's start (so a reused pid is not mistaken
    for the original), and the heartbeat interval it keeps for its trials."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start": _process_start(os.getpid()),
        "heartbeat_s": HEARTBEAT_INTERVAL_S,
    }


def _process_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"  # field 22: start time in clock ticks


def driver_alive(driver: Any) -> bool | None:
    """True/False for a driver on this host; None when it ran elsewhere (cannot be checked from here)."""
    if not isinstance(driver, dict) or driver.get("host") != socket.gethostname():
        return None
    pid = driver.get("pid")
    if not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = driver.get("start")
    return start is None or _process_start(pid) in (None, start)


# ---------------------------------------------------------------------------------------- heartbeat


def grace_period(storage: Any) -> int | None:
    """The storage's heartbeat grace period in seconds; None when it records no heartbeats."""
    rdb = _optuna.rdb_backend(storage)
    interval = getattr(rdb, "heartbeat_interval", None)
    if interval is None:
        return None
    return getattr(rdb, "grace_period", None) or 2 * interval


def stale_trial_ids(storage: Any, study_id: int) -> set[int]:
    """RUNNING trials whose last heartbeat is older than the grace period (by the database's clock).

    Optuna's public ``fail_stale_trials`` fails them without a reason; the private lookup
    (``sweep.study._optuna.stale_trial_ids``) lets the reason be written first."""
    if grace_period(storage) is None:
        return set()
    return set(_optuna.stale_trial_ids(storage, study_id))


class Heartbeat:
    """Records an Optuna heartbeat every ``interval`` seconds for the trials ``live()`` names (trial ids),
    in a daemon thread, while the ``with`` block runs. A failed write (the database away for a moment)
    is tried again at the next beat."""

    def __init__(
        self, storage: Any, live: Callable[[], list[int]], interval: float = HEARTBEAT_INTERVAL_S
    ) -> None:
        self.storage = storage
        self.live = live
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-heartbeat", daemon=True)

    def __getstate__(self) -> dict[str, Any]:
        """Ray Tune pickles its experiment state, and with it whatever holds the searcher: a copy beats
        for nothing (no thread, no trials)."""
        return {"storage": self.storage, "interval": self.interval}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["storage"], list, state["interval"])

    def beat(self, trial_id: int) -> None:
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError):
            self.storage.record_heartbeat(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for trial_id in self.live():
                self.beat(trial_id)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# ----------------------------------------------------------------------------------------- reconcile


def reconcile(study: optuna.Study, all_hosts: bool = False) -> list[int]:
    """Mark FAIL, with ``fail_reason``, the trials left RUNNING by a driver that is gone: one on this
    host whose process has ended; one whose heartbeat is older than the grace period (any host); or,
    with ``all_hosts`` (``--resume``: the user says the old driver is stopped), one whose driver kept no
    heartbeat and is not alive here. A trial with a fresh heartbeat belongs to a live driver and is
    left alone. Under the study's lock, so that no driver's trial is judged between its ask and its
    first heartbeat. Returns the trial numbers it changed."""
    storage = _optuna.study_storage(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    with study_lock(_optuna.rdb_backend(storage), study_id):
        return _reconcile(study, storage, study_id, all_hosts)


def _reconcile(study: optuna.Study, storage: Any, study_id: int, all_hosts: bool) -> list[int]:
    stale = stale_trial_ids(storage, study_id)
    grace = grace_period(storage)
    changed: list[int] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        driver = trial.user_attrs.get("driver")
        alive = driver_alive(driver)
        where = f"{driver.get('host')} pid {driver.get('pid')}" if isinstance(driver, dict) else "unknown"
        beats = isinstance(driver, dict) and driver.get("heartbeat_s") is not None
        if alive:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        if trial_id in stale:
            reason = (
                f"no heartbeat from the sweep driver ({where}) for over {grace} s while this trial ran; "
                "marked failed by the next sweep"
            )
        elif alive is None and (beats or not all_hosts):
            continue
        else:
            reason = (
                f"the sweep driver ({where}) stopped while this trial ran; marked failed by the next sweep"
            )
        try:
            storage.set_trial_user_attr(trial_id, "fail_reason", reason)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except RuntimeError:  # finished meanwhile (optuna.exceptions.UpdateFinishedTrialError)
            continue
        changed.append(trial.number)
    return changed


# ---------------------------------------------------------------------------------------- the lock


@contextlib.contextmanager
def study_lock(storage: optuna.storages.RDBStorage, study_id: int) -> Iterator[None]:
    """Hold the study's cross-driver lock for the ``with`` block (see the module's docstring). Other
    backends than PostgreSQL and SQLite get no lock."""
    engine = storage.engine
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        with engine.begin() as conn:  # the lock ends with this transaction, whatever happens inside
            conn.execute(
                sqlalchemy.text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": LOCK_CLASS, "b": study_id}
            )
            yield
        return
    database = engine.url.database
    if backend != "sqlite" or not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.sweep-lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def count_run(study: optuna.Study) -> int:
    """How many ``sweep run`` drivers started on ``study`` before this one (user attribute
    ``sweep_runs``), counting this one in. Call it under ``study_lock``: drivers started together get
    different numbers (and so samplers seeded apart)."""
    runs = study.user_attrs.get(RUNS_ATTR, 0)
    runs = runs if isinstance(runs, int) else 0
    study.set_user_attr(RUNS_ATTR, runs + 1)
    return runs
