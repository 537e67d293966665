"""Faults in the middle of a sweep: the disk under --out or under the study database fills up, or another
process holds the SQLite database locked past the busy timeout. The sweep stops with one line, keeps every
finished trial, and a --resume completes the count."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
# enough trials that the sweep is still running when the filler, which polls every 0.2 s, has seen the
# first one complete: a smoke trial here trains in 0.2 s once its worker has started
TRIALS = 12


def fill_after_first_complete(
    url: str, disk: Path, stop: threading.Event, lock_for_s: float = 0.0
) -> threading.Thread:
    """Once the study holds a complete trial, fill ``disk`` to the last byte (or lock the database)."""

    def fill() -> None:
        while not stop.is_set():
            try:
                study = optuna.load_study(study_name="lenet-mnist", storage=url)
                if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                    break
            except Exception:  # not created yet
                pass
            time.sleep(0.2)
        if lock_for_s:  # another process's writer that holds the database past the 60 s busy timeout
            db = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
            db.execute("BEGIN EXCLUSIVE")
            stop.wait(lock_for_s)
            db.rollback()
            db.close()
            return
        with open(disk / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 2**20)
                    f.flush()
            except OSError:
                pass

    thread = threading.Thread(target=fill, daemon=True)
    thread.start()
    return thread


def sweep(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWEEP_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sweep", "run", "lenet", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )


@pytest.mark.parametrize("full", ["out", "database", "locked database"])
def test_a_full_disk_stops_the_sweep_with_one_line_and_resume_completes_it(
    full: str,
    tmpfs: Callable[[str], Path],
    tmp_path: Path,
    write_idx_dataset: Callable[..., Path],
) -> None:
    small_disk = tmpfs("size=48m")
    data = write_idx_dataset(tmp_path / "data" / "mnist", n_train=400, n_test=100)
    db = (small_disk if full == "database" else tmp_path) / "sweep.db"
    url = f"sqlite:///{db}"
    out = (small_disk if full == "out" else tmp_path) / "runs"
    args = [
        "--trials",
        str(TRIALS),
        "--epochs",
        "1",
        "--subset",
        "300",
        "--concurrency",
        "1",
        "--storage",
        url,
    ]
    args += ["--out", str(out), "--data-dir", str(data.parent)]
    stop = threading.Event()
    filler = fill_after_first_complete(url, small_disk, stop, 75.0 if full == "locked database" else 0.0)
    done = sweep(*args)
    stop.set()
    filler.join(timeout=30)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and len(err) == 1, done.stderr
    assert err[0].startswith("sweep: error: the sweep stopped: ") and "--resume" in err[0]
    what = (
        "no space left on the device under --out" if full == "out" else "study database could not be written"
    )
    assert what in err[0]
    kept = {
        t.number: t.values
        for t in optuna.load_study(study_name="lenet-mnist", storage=url).trials
        if t.state == TrialState.COMPLETE
    }
    assert kept, "the trial that finished before the disk filled is kept"

    if full != "locked database":
        (small_disk / "filler").unlink()
    again = sweep(*args, "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    trials = optuna.load_study(study_name="lenet-mnist", storage=url).trials
    complete = {t.number: t.values for t in trials if t.state == TrialState.COMPLETE}
    assert len(complete) == TRIALS and all(complete[n] == v for n, v in kept.items())
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
