"""Ray processes that outlive a killed driver. A driver that starts Ray itself (no ``--address``) owns that
instance; after ``kill -9`` of the driver its raylet, GCS server and agents (about 170 MB) keep running and
ignore SIGTERM. The driver records the Ray session's name with its identity on every trial; a later
sweep of the same study that finds the driver dead ends the processes of exactly that session."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna

from sweep.study import driver_alive

SESSION_KEY = "ray_session"  # in a trial's ``driver`` user attribute, when that driver started Ray


def local_session_name() -> str:
    """The name of the Ray session this process is connected to (``session_2026-...``)."""
    import ray

    return str(ray.get_runtime_context().get_session_name())


def processes_of(session: str) -> list[int]:
    """Processes whose command line names ``session`` (Ray passes it to each process it starts)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if session in cmdline:
            found.append(int(entry.name))
    return found


def dead_drivers_sessions(trials: Iterable[optuna.trial.FrozenTrial]) -> set[str]:
    """Ray sessions started by drivers of these trials that ran on this host and are gone."""
    sessions: set[str] = set()
    for trial in trials:
        driver: Any = trial.user_attrs.get("driver")
        session = driver.get(SESSION_KEY) if isinstance(driver, dict) else None
        if isinstance(session, str) and session.startswith("session_") and driver_alive(driver) is False:
            sessions.add(session)
    return sessions


def end_leftover_ray(study: optuna.Study, current: str | None = None) -> int:
    """SIGKILL the processes of Ray sessions whose driver died; returns how many were ended."""
    ended = 0
    for session in dead_drivers_sessions(study.get_trials(deepcopy=False)) - {current}:
        for pid in processes_of(session):
            try:
                os.kill(pid, signal.SIGKILL)
                ended += 1
            except (ProcessLookupError, PermissionError):
                continue
    return ended
