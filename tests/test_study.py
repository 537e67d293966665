"""The study database: storage URLs, study creation and resumption, reconciliation, trial records, status.

Storage tests run against SQLite and, when $SWEEP_TEST_POSTGRES is set, PostgreSQL; each uses its own
study name."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import optuna
import pytest
from optuna.trial import TrialState

from sweep import cli
from sweep.errors import SweepError
from sweep.space import load_space
from sweep.study import (
    BASELINE_ATTR,
    TRIAL_ATTRS,
    create_or_resume,
    driver_identity,
    enqueue_missing,
    finished_trial_attrs,
    grid_points,
    is_baseline,
    make_sampler,
    open_storage,
    reconcile,
    resolve_storage,
    status_command,
    summary_lines,
    trial_params,
    write_trial_attrs,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'study.db'}"
        return
    yield request.getfixturevalue("postgres_url")


@pytest.fixture
def study_name(storage_url) -> Iterator[str]:
    """A unique name; the study is deleted afterwards so a shared PostgreSQL database stays clean."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    storage = open_storage(storage_url)
    if name in {s.study_name for s in storage.get_all_studies()}:
        optuna.delete_study(study_name=name, storage=storage)


def plain(url: str) -> str:
    """The URL for plain Optuna: SQLAlchemy's default PostgreSQL driver is psycopg 3, sweep uses psycopg2."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def lenet_fingerprint(budget: str = "smoke") -> dict:
    return load_space("lenet").fingerprint(budget)


def test_resolve_storage_prefers_argument_then_env_then_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWEEP_STORAGE", raising=False)
    assert resolve_storage(None) == f"sqlite:///{tmp_path}/sweep.db"
    assert resolve_storage("sqlite:///sub/x.db") == f"sqlite:///{tmp_path}/sub/x.db"
    monkeypatch.setenv("SWEEP_STORAGE", "postgresql://u:p@db:5432/s")
    assert resolve_storage(None) == "postgresql://u:p@db:5432/s"
    assert resolve_storage("sqlite:////abs/y.db") == "sqlite:////abs/y.db"
    with pytest.raises(SweepError, match=r"storage must be a database URL like sqlite:///sweep\.db"):
        resolve_storage("not a url")


def test_sqlite_storage_is_wal_and_readers_do_not_block_the_writer(tmp_path):
    path = tmp_path / "wal.db"
    storage = open_storage(f"sqlite:///{path}")
    study = optuna.create_study(study_name="s", storage=storage, directions=["minimize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[1.0, 2.0]))
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # A reader holds an open read transaction (a dashboard mid-query) while the sweep writes.
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 1
    started = time.perf_counter()
    study.add_trial(optuna.trial.create_trial(values=[3.0, 4.0]))
    assert time.perf_counter() - started < 2.0
    assert reader.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 1, "the reader sees its snapshot"
    reader.execute("COMMIT")
    assert len(optuna.load_study(study_name="s", storage=f"sqlite:///{path}").trials) == 2


def test_unreachable_or_impossible_storage_is_one_line_and_creates_nothing(tmp_path):
    with pytest.raises(SweepError) as err:
        open_storage("postgresql://sweep:secret@127.0.0.1:1/none")
    message = str(err.value)
    assert message.startswith("cannot open storage postgresql://sweep:***@127.0.0.1:1/none: ")
    assert "secret" not in message and "\n" not in message
    with pytest.raises(SweepError, match=r"folder .*missing does not exist"):
        open_storage(f"sqlite:///{tmp_path}/missing/x.db")
    with pytest.raises(SweepError, match=r"no study database at .*absent\.db"):
        open_storage(f"sqlite:///{tmp_path}/absent.db", create=False)
    assert list(tmp_path.iterdir()) == []


def test_new_study_records_fingerprint_objectives_and_settings(storage_url, study_name):
    storage = open_storage(storage_url)
    fp = lenet_fingerprint()
    opened = create_or_resume(storage, study_name, fp, {"budget": "smoke"}, resume=False)
    assert opened.created and opened.differences == []
    study = optuna.load_study(study_name=study_name, storage=plain(storage_url))
    assert study.user_attrs["objectives"] == ["top1_error", "neurons"]
    assert study.metric_names == ["top1_error", "neurons"]
    assert study.user_attrs["fingerprint"] == fp
    assert study.user_attrs["settings"] == {"budget": "smoke"}
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    again = create_or_resume(storage, study_name, fp, {}, resume=False)
    assert not again.created and again.study.study_name == study_name


def test_a_different_space_under_the_same_name_fails_unless_resumed(storage_url, study_name):
    storage = open_storage(storage_url)
    create_or_resume(storage, study_name, lenet_fingerprint("smoke"), {}, resume=False)
    with pytest.raises(SweepError) as err:
        create_or_resume(storage, study_name, lenet_fingerprint("paper"), {}, resume=False)
    message = str(err.value)
    assert "different search space or budget" in message and "trial.epochs: 2 -> 11" in message
    assert "--resume" in message
    opened = create_or_resume(storage, study_name, lenet_fingerprint("paper"), {}, resume=True)
    assert "trial.epochs: 2 -> 11" in opened.differences
    other = dict(lenet_fingerprint(), objectives=["top1_error", "params"])
    with pytest.raises(
        SweepError, match="minimises top1_error, neurons, this search space top1_error, params"
    ):
        create_or_resume(storage, study_name, other, {}, resume=True)


def test_resume_of_a_missing_study_fails_and_creates_nothing(storage_url, study_name):
    storage = open_storage(storage_url)
    before = {s.study_name for s in storage.get_all_studies()}
    with pytest.raises(SweepError, match=f"--resume: no study '{study_name}' in "):
        create_or_resume(storage, study_name, lenet_fingerprint(), {}, resume=True)
    assert {s.study_name for s in storage.get_all_studies()} == before


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_reconcile_fails_trials_of_dead_drivers_only(storage_url, study_name):
    storage = open_storage(storage_url)
    study = create_or_resume(storage, study_name, lenet_fingerprint(), {}, resume=False).study
    me = driver_identity()
    dead = {**me, "pid": dead_pid(), "start": None}
    elsewhere = {"host": "another-host", "pid": 1, "start": None}
    trials = {}
    for label, driver in (("mine", me), ("dead", dead), ("elsewhere", elsewhere)):
        trial = study.ask()
        trial.set_user_attr("driver", driver)
        trials[label] = trial.number
    done = study.ask()
    study.tell(done, [1.0, 10.0])

    assert reconcile(study) == [trials["dead"]]
    states = {t.number: t for t in study.get_trials()}
    assert states[trials["dead"]].state == TrialState.FAIL
    assert "stopped while this trial ran" in states[trials["dead"]].user_attrs["fail_reason"]
    assert states[trials["mine"]].state == TrialState.RUNNING, "a live driver's trial is left alone"
    assert states[trials["elsewhere"]].state == TrialState.RUNNING, "another host cannot be checked"
    assert states[done.number].state == TrialState.COMPLETE

    assert reconcile(study, all_hosts=True) == [trials["elsewhere"]]
    assert reconcile(study, all_hosts=True) == []


def test_finished_trial_attrs_for_final_and_early_stopped_reports():
    epoch = {"epoch": 3, "top1_error": 2.5, "neurons": 40, "widths": {"fc1": 40}, "params": 10}
    early = finished_trial_attrs(epoch, "/runs/ckpt/checkpoint.pt", {"train_seconds": 1.5})
    assert early["early_stopped"] is True and early["epochs"] == 3
    assert early["checkpoint"] == "/runs/ckpt/checkpoint.pt" and early["train_seconds"] == 1.5
    final = finished_trial_attrs({**epoch, "done": True, "epochs": 11, "test_top1_error": float("nan")}, None)
    assert final["early_stopped"] is False and final["epochs"] == 11 and "done" not in final
    assert final["test_top1_error"] is None, "NaN is not JSON: stored as null"


def test_trial_attrs_written_while_running_survive_the_tell(storage_url, study_name):
    storage = open_storage(storage_url)
    study = create_or_resume(storage, study_name, lenet_fingerprint(), {}, resume=False).study
    trial = study.ask()
    attrs = {k: k for k in TRIAL_ATTRS} | {"widths": {"conv1": 2, "fc1": 3}}
    write_trial_attrs(storage, trial._trial_id, attrs)
    study.tell(trial, [1.0, 5.0])
    stored = optuna.load_study(study_name=study_name, storage=plain(storage_url)).trials[0]
    assert stored.state == TrialState.COMPLETE and stored.values == [1.0, 5.0]
    assert stored.user_attrs["widths"] == {"conv1": 2, "fc1": 3}
    assert set(TRIAL_ATTRS) <= set(stored.user_attrs)


def test_enqueue_missing_skips_points_already_live(storage_url, study_name):
    storage = open_storage(storage_url)
    study = create_or_resume(storage, study_name, lenet_fingerprint(), {}, resume=False).study
    assert enqueue_missing(study, [{"penalty": "none"}]) == 1
    assert enqueue_missing(study, [{"penalty": "none"}]) == 0, "waiting already"
    trial = study.ask()
    assert is_baseline(trial) and trial.params == {}, "marked, with no penalty to sample"
    assert trial_params(trial) == {"penalty": "none"}
    assert enqueue_missing(study, [{"penalty": "none", "lr": 0.02}]) == 0, "one baseline per study"
    study.tell(trial, state=TrialState.FAIL)
    assert enqueue_missing(study, [{"penalty": "none"}]) == 1, "a failed baseline is run again"
    grid = [{"penalty": "l1", "lam": v} for v in (1e-3, 1e-2, 1e-1)]
    assert enqueue_missing(study, grid, limit=3) == 2, "one of the three queue places is taken"
    assert enqueue_missing(study, grid, limit=3) == 0


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2", "grid"])
def test_eight_trials_hold_one_baseline_and_never_sample_none_again(storage_url, study_name, sampler):
    """As ``sweep run`` asks (enqueue, then define-by-run), in two runs of four, the second resuming."""
    space = load_space("lenet")
    storage = open_storage(storage_url)
    create_or_resume(storage, study_name, lenet_fingerprint(), {}, resume=False)
    only = ("penalty", "lam") if sampler == "grid" else None
    for run in range(2):
        study = optuna.load_study(
            study_name=study_name, storage=storage, sampler=make_sampler(sampler, seed=run, trials=8)
        )
        enqueue_missing(study, grid_points(space) if only else [space.baseline(), *space.start], limit=4)
        for _ in range(4):
            trial = study.ask()
            params = space.suggest(trial, only=only, baseline=is_baseline(trial))
            cfg = space.trial_config(params, "smoke")
            study.tell(trial, [0.9 + 100 * cfg.lam, 570 * (1 - min(cfg.lam * 20, 0.9))])
    trials = optuna.load_study(study_name=study_name, storage=plain(storage_url)).trials
    penalties = [trial_params(t)["penalty"] for t in trials]
    assert len(penalties) == 8 and penalties.count("none") == 1 and penalties[0] == "none"
    assert [is_baseline(t) for t in trials] == [True] + [False] * 7
    assert "penalty" not in trials[0].params and trials[0].user_attrs[BASELINE_ATTR] is True
    for t in trials[1:]:
        assert t.distributions["penalty"].choices == ("group_lasso", "sparse_group_lasso")
    if not only:  # the space's start points come right after the baseline, exactly as written
        assert [trial_params(t) for t in trials[1 : 1 + len(space.start)]] == list(space.start)


def test_a_baseline_recorded_before_the_mark_still_counts(storage_url, study_name, capsys):
    """Older studies hold the baseline as the sampled choice penalty none, and may hold one enqueued with
    penalty none still waiting: both are recognised, and the waiting one gets the mark."""
    storage = open_storage(storage_url)
    study = create_or_resume(storage, study_name, lenet_fingerprint(), {}, resume=False).study
    old_choices = optuna.distributions.CategoricalDistribution(["none", "l1", "group_lasso"])
    old = study.ask({"penalty": old_choices})
    assert old.params["penalty"] in ("none", "l1", "group_lasso")
    study.tell(old, state=TrialState.FAIL)
    study.enqueue_trial({"penalty": "none"})  # how a baseline was enqueued
    assert enqueue_missing(study, [{"penalty": "none"}]) == 0, "the waiting one is the baseline"
    waiting = study.ask()
    assert is_baseline(waiting) and load_space("lenet").suggest(waiting, baseline=True)["penalty"] == "none"
    assert waiting.params == {}, "marked: the fixed penalty none is never asked for"
    study.tell(waiting, [0.9, 570.0])
    sampled = study.ask({"penalty": old_choices})
    study.tell(sampled, [1.2, 80.0])
    complete = optuna.trial.create_trial(
        params={"penalty": "none"}, distributions={"penalty": old_choices}, values=[0.88, 570.0]
    )
    study.add_trial(complete)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert [is_baseline(t) for t in trials] == [True, sampled.params["penalty"] == "none", True]
    assert trial_params(trials[2]) == {"penalty": "none"}
    assert status_command(storage_url, study_name) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [r[2:4] for r in rows if r[:2] in (["1", "COMPLETE"], ["3", "COMPLETE"])] == [["none", "-"]] * 2
    lines = summary_lines(study, storage_url)
    assert any(line.startswith("best error: trial 3 (none (baseline)): 0.88% error") for line in lines)


def test_concurrent_writers_on_sqlite_do_not_fail(tmp_path):
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    storage = open_storage(url)
    optuna.create_study(study_name="busy", storage=storage, directions=["minimize", "minimize"])
    errors: list[BaseException] = []

    def write_many(seed: int) -> None:
        try:
            study = optuna.load_study(study_name="busy", storage=open_storage(url))
            for i in range(15):
                trial = study.ask()
                trial.set_user_attr("widths", {"fc1": seed * 100 + i})
                study.tell(trial, [float(i), float(seed)])
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=write_many, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(optuna.load_study(study_name="busy", storage=url).trials) == 45


def test_status_lists_studies_and_one_studys_trials(storage_url, study_name, capsys):
    storage = open_storage(storage_url)
    study = create_or_resume(storage, study_name, lenet_fingerprint(), {}, resume=False).study
    choices = optuna.distributions.CategoricalDistribution(["none", "group_lasso"])
    for values, early in (([0.9, 570.0], False), ([1.1, 83.0], True)):
        trial = study.ask({"penalty": choices})
        write_trial_attrs(storage, trial._trial_id, {"early_stopped": early, "epochs": 11})
        study.tell(trial, values)
    failed = study.ask()
    failed.set_user_attr("fail_reason", "DivergedError: training loss became nan in epoch 2")
    study.tell(failed, state=TrialState.FAIL)

    assert status_command(storage_url, None) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("storage: ")
    row = next(line for line in out.splitlines() if line.startswith(study_name))
    assert row.split()[1:6] == ["top1_error,neurons", "1", "1", "1", "0"]

    assert status_command(storage_url, study_name) == 0
    out = capsys.readouterr().out
    assert f"study {study_name}: 1 complete, 1 early-stopped, 1 failed" in out
    assert "EARLY_STOPPED" in out and "DivergedError: training loss became nan" in out
    with pytest.raises(SweepError, match="no study 'nope' in this database; studies there: "):
        status_command(storage_url, "nope")


def test_status_of_a_missing_sqlite_file_is_an_error_and_creates_nothing(tmp_path, capsys):
    db = tmp_path / "none.db"
    assert cli.main(["status", "--storage", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no study database at" in err
    assert not db.exists()
