"""Reading a real Optuna study in SQLite: rows, the front, picks and the `sweep pareto` command."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from sample_study import COMPLETE_NUMBERS, FRONT_NUMBERS, STUDY, deep_study, make_study

from sweep.cli import main
from sweep.errors import SweepError
from sweep.select import all_rows, front, pick, trial_rows
from sweep.study import BASELINE_ATTR, load_study_readonly

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("study") / "sweep.db"
    make_study(path)
    return path


@pytest.fixture(scope="module")
def url(db: Path) -> str:
    return f"sqlite:///{db}"


@pytest.fixture(scope="module")
def rows(url: str) -> list:
    return trial_rows(load_study_readonly(STUDY, url))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_trial_rows_hold_the_recorded_attributes(url: str, rows: list) -> None:
    assert [r.number for r in rows] == COMPLETE_NUMBERS
    by_number = {r.number: r for r in rows}
    baseline = by_number[0]
    assert baseline.is_baseline and baseline.lam == 0.0 and baseline.neurons == 570
    sgl = by_number[4]
    assert (sgl.penalty, sgl.lam, sgl.alpha) == ("sparse_group_lasso", 5e-3, 0.3)
    assert by_number[1].alpha is None  # alpha means nothing for group lasso
    assert by_number[1].widths_text() == "conv1 20/20, conv2 50/50, fc1 13/500"
    assert by_number[1].params == 36123 and by_number[1].test_top1_error == pytest.approx(1.16)
    assert by_number[5].has_empty_layer
    assert by_number[2].checkpoint == "runs/lenet-mnist/trial2/model.pt"
    assert by_number[2].config["debias_epochs"] == 5
    assert len(by_number[2].history) == 11 and by_number[2].history[0]["neurons"] is not None
    # Trial 3 recorded no history: its curve comes from Optuna's intermediate values.
    assert [h["epoch"] for h in by_number[3].history] == list(range(1, 12))


def test_early_stopped_and_failed_rows_only_on_request(url: str) -> None:
    study = load_study_readonly(STUDY, url)
    with_early = trial_rows(study, include_early_stopped=True)
    assert [r.number for r in with_early] == sorted([*COMPLETE_NUMBERS, 7])
    assert next(r for r in with_early if r.number == 7).early_stopped
    with_failed = trial_rows(study, include_failed=True)
    failed = [r for r in with_failed if r.state == "FAIL"]
    assert [r.number for r in failed] == [6] and failed[0].fail_reason == "NaN loss at epoch 2"


def test_front_is_sorted_by_size_and_never_holds_early_stopped_trials(url: str, rows: list) -> None:
    assert [r.number for r in front(rows)] == FRONT_NUMBERS
    everything = trial_rows(load_study_readonly(STUDY, url), include_early_stopped=True, include_failed=True)
    assert [r.number for r in front(everything)] == FRONT_NUMBERS  # trial 7 (0.50%, 60 neurons) stays out
    assert [r.number for r in front(rows, x="params")] == FRONT_NUMBERS
    three = front(rows, x="neurons", y="top1_error", z="test_top1_error")
    assert [r.number for r in three] == FRONT_NUMBERS


def test_front_names_an_unrecorded_column(rows: list) -> None:
    with pytest.raises(
        SweepError, match=r"'latency_ms'.*recorded columns: top1_error, test_top1_error, neurons"
    ):
        front(rows, x="latency_ms")
    with pytest.raises(SweepError, match="'accuracy'"):
        front(rows, y="accuracy")


def test_pick_smallest_under_an_error(rows: list) -> None:
    assert pick(rows, max_error=1.05).number == 2
    assert pick(rows, max_error=1.2).number == 1
    assert pick(rows, max_error=1.05, size="params").number == 2
    # Trial 5 (70 neurons, fc1 empty) is never picked, however large the allowed error.
    assert pick(rows, max_error=100.0).number == 1


def test_pick_by_size_and_knee(rows: list) -> None:
    assert pick(rows, max_neurons=100).number == 1
    assert pick(rows, max_params=250_000).number == 3
    assert pick(rows, max_error=1.0, max_neurons=400).number == 2
    assert pick(rows, knee=True).number == 2


def test_pick_says_what_was_asked_and_the_best_achievable(rows: list) -> None:
    with pytest.raises(SweepError, match=r"at most 0\.5% error; the lowest is 0\.87% error \(trial 0"):
        pick(rows, max_error=0.5)
    with pytest.raises(SweepError, match=r"at most 80 neurons; the lowest is 83 neurons \(trial 1"):
        pick(rows, max_neurons=80)
    with pytest.raises(SweepError, match="say what to pick"):
        pick(rows)


def test_pareto_command_prints_the_front_and_json(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "pareto", STUDY, "--storage", url, "--max-error", "1.05", "--json")
    assert code == 0, err
    lines = out.strip().splitlines()
    table = "\n".join(lines[:-1])
    assert "conv1 20/20, conv2 50/50, fc1 13/500" in table
    assert "5 of 7 complete trials on the front" in table
    assert "chosen, the smallest network by neurons with at most 1.05% error: trial 2" in table
    entries = json.loads(lines[-1])
    assert [e["number"] for e in entries] == FRONT_NUMBERS
    assert [e["number"] for e in entries if e["chosen"]] == [2]
    assert entries[1]["widths"] == {"conv1": 20, "conv2": 50, "fc1": 13}
    assert entries[1]["penalty"] == "group_lasso" and entries[1]["lam"] == pytest.approx(1e-2)


def test_pareto_command_x_params(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "pareto", STUDY, "--storage", url, "--x", "params", "--json")
    assert code == 0
    assert [e["number"] for e in json.loads(out.strip().splitlines()[-1])] == FRONT_NUMBERS


def one_line_error(code: int, err: str) -> str:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sweep: error: ")
    return lines[0]


def test_bad_input_gives_one_line(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(*run_cli(capsys, "pareto", "vgg13", "--storage", url)[::2])
    assert "'vgg13'" in line and f"studies there: {STUDY}" in line
    line = one_line_error(*run_cli(capsys, "pareto", STUDY, "--storage", url, "--x", "latency_ms")[::2])
    assert "'latency_ms'" in line and "neurons, params, flops" in line
    line = one_line_error(*run_cli(capsys, "pareto", STUDY, "--storage", url, "--max-error", "0.1")[::2])
    assert "0.87%" in line
    line = one_line_error(*run_cli(capsys, "pareto", STUDY, "--storage", "not a url")[::2])
    assert "not a url" in line
    missing = tmp_path / "nothing.db"
    line = one_line_error(*run_cli(capsys, "pareto", STUDY, "--storage", f"sqlite:///{missing}")[::2])
    assert str(missing) in line and not missing.exists()


def test_empty_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = make_study(tmp_path / "empty.db", name="empty", with_trials=False)
    line = one_line_error(*run_cli(capsys, "pareto", "empty", "--storage", url)[::2])
    assert "no complete trials" in line


def test_default_storage_from_env_then_working_dir(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWEEP_STORAGE", url)
    assert run_cli(capsys, "pareto", STUDY)[0] == 0
    monkeypatch.delenv("SWEEP_STORAGE")
    line = one_line_error(*run_cli(capsys, "pareto", STUDY)[::2])
    assert "sweep.db" in line
    assert not (tmp_path / "sweep.db").exists()  # reading never creates a database


def test_reading_never_writes(db: Path, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    study = load_study_readonly(STUDY, url)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        study.set_user_attr("touched", True)
    assert run_cli(capsys, "pareto", STUDY, "--storage", url)[0] == 0
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_a_file_that_is_not_a_study_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE notes (x INTEGER)").connection.commit()
    with pytest.raises(SweepError, match="holds no Optuna studies"):
        load_study_readonly(STUDY, f"sqlite:///{path}")


def test_reading_waits_out_a_writer_holding_the_lock(db: Path, url: str) -> None:
    study = load_study_readonly(STUDY, url)
    writer = sqlite3.connect(db, check_same_thread=False)
    writer.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(1.5, writer.rollback)
    release.start()
    start = time.monotonic()
    try:
        assert [r.number for r in trial_rows(study)] == COMPLETE_NUMBERS
    finally:
        release.join()
        writer.close()
    assert time.monotonic() - start >= 1.0


def test_new_trials_appear_on_the_next_read(tmp_path: Path) -> None:
    url = make_study(tmp_path / "live.db")
    reader = load_study_readonly(STUDY, url)
    assert len(trial_rows(reader)) == len(COMPLETE_NUMBERS)
    writer = optuna.load_study(study_name=STUDY, storage=url)
    writer.add_trial(optuna.trial.create_trial(values=[0.7, 60.0], user_attrs={"config": {"penalty": "l1"}}))
    assert len(trial_rows(reader)) == len(COMPLETE_NUMBERS) + 1


def test_the_marked_baseline_is_the_baseline_before_it_records_a_config(tmp_path: Path) -> None:
    """The baseline samples no penalty, so a running one (no ``config`` yet) is known by its mark."""
    url = make_study(tmp_path / "running.db")
    writer = optuna.load_study(study_name=STUDY, storage=url)
    writer.enqueue_trial({}, user_attrs={BASELINE_ATTR: True})
    running = writer.ask()
    row = next(r for r in all_rows(load_study_readonly(STUDY, url)) if r.number == running.number)
    assert (row.state, row.penalty, row.lam, row.is_baseline) == ("RUNNING", "none", 0.0, True)


POSTGRES_URL = os.environ.get("SWEEP_TEST_POSTGRES", "postgresql://sweep:sweep@127.0.0.1:5432/sweep_test")


@pytest.mark.postgres
def test_postgres_study_is_read_without_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        load_study_readonly("absent", POSTGRES_URL)
    except SweepError as err:
        if "cannot open storage" in str(err):
            pytest.skip(f"no PostgreSQL server: {err}")
    name = f"picks-{os.getpid()}-{time.time_ns()}"
    write_url = sqlalchemy.engine.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg2")
    writer_url = write_url.render_as_string(hide_password=False)
    writer = optuna.create_study(study_name=name, storage=writer_url, directions=["minimize", "minimize"])
    try:
        writer.add_trial(optuna.trial.create_trial(values=[1.5, 40.0], user_attrs={"widths": {"fc1": 40}}))
        study = load_study_readonly(name, POSTGRES_URL)
        assert [r.neurons for r in trial_rows(study)] == [40.0]
        with pytest.raises(optuna.exceptions.StorageInternalError):
            study.set_user_attr("touched", True)
        code, out, _ = run_cli(capsys, "pareto", name, "--storage", POSTGRES_URL, "--json")
        assert code == 0 and json.loads(out.strip().splitlines()[-1])[0]["neurons"] == 40.0
    finally:
        optuna.delete_study(study_name=name, storage=writer_url)


def test_wal_database_is_read_while_a_write_is_open(tmp_path: Path) -> None:
    """`sweep run` keeps its SQLite file in WAL mode: a reader then never waits for the writer."""
    path = tmp_path / "wal.db"
    url = make_study(path)
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.close()
    study = load_study_readonly(STUDY, url)
    writer = sqlite3.connect(path)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE studies SET study_name = study_name")
    try:
        start = time.monotonic()
        assert [r.number for r in trial_rows(study)] == COMPLETE_NUMBERS
        assert time.monotonic() - start < 1.0
    finally:
        writer.rollback()
        writer.close()


def test_sweep_pareto_folds_a_56_layer_networks_widths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = deep_study(tmp_path / "deep.db")
    assert main(["pareto", "deep", "--storage", url]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "alive in 30 layers" in line]
    assert len(rows) == 5 and all(len(line) < 250 and "narrowest: " in line for line in rows)
