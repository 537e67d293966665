"""Signals and bursts: SIGTERM ends a running sweep as Ctrl-C does, an interrupted export leaves no hidden
folder, export's latency lines are measured (one thread, medians with their spread), the dashboard
server answers a burst of clients and a study it cannot read, and numeric ``sweep run`` options that Ray
would choke on are refused in one line."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from conftest import write_mnist_like, write_tiny_mnist
from optuna.trial import TrialState
from sample_study import STUDY, make_study
from test_export import record, train

import sweep.dashboards.page as page_module
from sweep import models
from sweep.cli import main
from sweep.config import TrialConfig
from sweep.export import MIN_RUNS, latency_lines, measure_latency
from sweep.export import folder as folder_module
from sweep.search import STOPPED, Interrupt
from sweep.sparsity import alive_masks, compact

# ------------------------------------------------------------------------------ SIGTERM of `sweep run`


def _running_trials(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT count(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0]
    except sqlite3.Error:  # not created yet, or being written
        return 0


@pytest.mark.parametrize("budget", ["smoke", "demo"])  # demo: init: baseline, cut in its first phase
def test_sigterm_ends_a_sweep_as_ctrl_c_does(tmp_path: Path, budget: str) -> None:
    data = write_mnist_like(tmp_path / "data", 300)
    db = tmp_path / "sweep.db"
    argv = ["--budget", budget, "--trials", "3", "--epochs", "3", "--subset", "300", "--concurrency", "1"]
    argv += ["--data-dir", str(data), "--storage", f"sqlite:///{db}", "--out", str(tmp_path / "runs")]
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweep", "run", "lenet", *argv],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SWEEP_OFFLINE": "1"},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 150
        while not _running_trials(db):
            assert driver.poll() is None, f"the sweep ended before the signal:\n{driver.communicate()}"
            assert time.monotonic() < deadline, "no trial started in time"
            time.sleep(0.2)
        time.sleep(1.0)  # into the trial's training
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert driver.returncode == 130, out + err  # as Ctrl-C
    for dump in ("Fatal Python error", "SIGTERM received", "Traceback", "logging.cc"):
        assert dump not in err, err
    assert "this run: " in out and f"study lenet-mnist is in sqlite:///{db}" in out, out
    assert "the sweep was stopped by SIGTERM before it finished; continue it with --resume" in out, out
    trials = optuna.load_study(study_name="lenet-mnist", storage=f"sqlite:///{db}").trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    cut = [t for t in trials if t.state == TrialState.FAIL]
    reasons = [t.user_attrs.get("fail_reason") for t in cut]
    assert reasons and set(reasons) == {f"{STOPPED} (interrupted by SIGTERM)"}, reasons


def test_sigterm_outside_tune_is_a_keyboard_interrupt_and_the_handler_is_put_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    interrupt = Interrupt()
    with pytest.raises(KeyboardInterrupt), interrupt.handling():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs between bytecodes; this is never reached
    assert interrupt.received == "SIGTERM" and STOPPED in interrupt.reason()
    assert signal.getsignal(signal.SIGTERM) is before
    with interrupt.handling(), interrupt.deferred():  # while the stop is recorded: noted, not raised
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    assert signal.getsignal(signal.SIGTERM) is before


# ------------------------------------------------------------------------------------------ export


@pytest.fixture(scope="module")
def export_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A study with one trained LeNet trial (group lasso on fc1) and its checkpoint."""
    root = tmp_path_factory.mktemp("signals-export")
    write_tiny_mnist(root / "data")
    base = {"model": "lenet", "data_dir": str(root / "data"), "epochs": 1, "batch_size": 32, "holdout": 20}
    trained = train(
        TrialConfig(penalty="group_lasso", lam=0.05, layers=["fc1"], **base), root / "runs" / "t0"
    )
    storage = f"sqlite:///{root / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name=STUDY, directions=["minimize", "minimize"])
    record(study, trained, str(root / "runs" / "t0"))
    return {"storage": storage}


def _export(study: dict[str, Any], out: Path, *extra: str) -> int:
    return main(["export", STUDY, "--storage", study["storage"], "--trial", "0", "--out", str(out), *extra])


def test_export_prints_measured_latency_and_survives_signals(
    export_study: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "exports" / "lenet"
    assert _export(export_study, out, "--format", "safetensors") == 0
    printed = capsys.readouterr().out
    card = json.loads((out / "card.json").read_text())
    lat = card["latency_ms"]
    assert lat["threads"] == 1
    for key in ("batch1", "batch64"):
        t = lat[key]
        if t.get("left_out"):
            assert f"CPU latency batch {key[5:]}: left out (" in printed
            continue
        assert t["runs"] >= MIN_RUNS and t["dense_range"][0] <= t["dense"] <= t["dense_range"][1]
        assert t["compact_range"][0] <= t["compact"] <= t["compact_range"][1]
        if t["speedup"] is not None:
            assert t["speedup"] == pytest.approx(t["dense"] / t["compact"])
        assert f"over {t['runs']} runs, 1 thread)" in printed
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    # SIGTERM while the files are written: KeyboardInterrupt (exit 130), the earlier export untouched.
    sigterm_before = signal.getsignal(signal.SIGTERM)

    def killed(*args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)

    monkeypatch.setattr(folder_module, "save_torchscript", killed)
    assert _export(export_study, out, "--force", "--format", "torchscript") == 130
    assert "sweep: interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is sigterm_before
    assert os.listdir(out.parent) == ["lenet"], "no hidden temporary folder left beside it"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _export(export_study, tmp_path / "new" / "deeper" / "lenet", "--format", "torchscript") == 130
    assert not (tmp_path / "new").exists(), "the folders it made for the export are gone too"
    monkeypatch.undo()

    # The rename into place fails halfway: the earlier export goes back where it was.
    real_replace = os.replace

    def into_place_fails(src: Any, dst: Any) -> None:
        if Path(dst) == out and ".old." not in str(src):  # the new export's, the earlier one moved aside
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(folder_module.os, "replace", into_place_fails)
    assert _export(export_study, out, "--force", "--format", "safetensors") == 2
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.undo()
    assert os.listdir(out.parent) == ["lenet"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_latency_is_timed_on_one_thread_with_its_spread_or_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    dense = models.create("lenet").eval()
    masks = alive_masks(dense)
    for mask in masks.values():
        mask[len(mask) // 4 :] = False
    small = compact(dense, masks)
    threads = torch.get_num_threads()
    lat = measure_latency(dense, small, dense.input_size)
    assert torch.get_num_threads() == threads, "the thread count is put back"
    assert lat["threads"] == 1
    one = lat["batch1"]
    assert one["runs"] >= MIN_RUNS and one["dense_range"][0] <= one["dense"] <= one["dense_range"][1]
    assert one["speedup"] is None or one["speedup"] == pytest.approx(one["dense"] / one["compact"])
    assert one["speedup"] is not None or one["speedup_left_out"]
    lines = latency_lines(lat)
    assert lines[0].startswith("CPU latency batch 1, dense -> compact: ") and "runs, 1 thread)" in lines[0]

    monkeypatch.setattr("sweep.measure.latency.LIMIT_S", 1e-6)  # batch 64 cannot fit: left out, and why
    lat = measure_latency(dense, small, dense.input_size)
    assert lat["batch64"]["dense"] is None and "too long to time" in lat["batch64"]["left_out"]
    assert latency_lines(lat)[1].startswith("CPU latency batch 64: left out (one run of both networks")

    old = {"device": "cpu", "threads": 8, "batch1": {"dense": 1.0, "compact": 0.5, "speedup": 2.0}}
    assert latency_lines(old) == ["CPU latency batch 1 (8 threads): 1.000 -> 0.500 ms (speed-up 2.00x)"]


# --------------------------------------------------------------------------------------- dashboard


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "live.db"
    server = page_module.make_server(STUDY, make_study(db), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", db
    finally:
        server.shutdown()
        server.server_close()
        page_module.close_study(server.study)  # type: ignore[attr-defined]
        thread.join()


def test_a_hundred_clients_at_once_are_all_answered(served: tuple[str, Path]) -> None:
    address, _ = served
    answers: list[int | str] = [0] * 100

    def get(i: int) -> None:
        try:
            with urllib.request.urlopen(address, timeout=30) as reply:
                answers[i] = reply.status if b"7 complete" in reply.read() else "wrong page"
        except Exception as err:  # recorded: the assertion below names it
            answers[i] = f"{type(err).__name__}: {err}"

    started = time.monotonic()
    clients = [threading.Thread(target=get, args=(i,)) for i in range(100)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=60)
    took = time.monotonic() - started
    assert answers == [200] * 100, [a for a in answers if a != 200][:5]
    assert took < 30, f"100 clients took {took:.1f} s"


def test_a_study_that_cannot_be_read_gets_an_error_page(
    served: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    address, db = served

    def broken(study: Any) -> Any:
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(page_module, "read_study", broken)
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(address, timeout=30)
    assert failed.value.code == 500
    assert "cannot read the study: RuntimeError: disk I/O error" in failed.value.read().decode()
    monkeypatch.undo()

    db.unlink()  # the database deleted while the server runs
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(address, timeout=30)
    assert gone.value.code in (500, 503)
    assert "sweep: " in gone.value.read().decode()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "disk I/O error" in err


# ------------------------------------------------------------------------------- `sweep run` options

RUN_OPTIONS = [
    (["--cpus-per-trial", "0.00001"], "--cpus-per-trial 1e-05: must be from 0.01"),
    (["--cpus-per-trial", "0.333333"], "in steps of 0.0001"),
    (["--cpus-per-trial", "1e9"], "--cpus-per-trial 1e+09 is more than the"),
    (["--gpus-per-trial", "0.00001"], "--gpus-per-trial 1e-05: must be 0 or from 0.01"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial >= 0, got 1, -1"),
    (["--trials", "0"], "--trials must be at least 1, got 0"),
    (["--concurrency", "0"], "--concurrency must be at least 1, got 0"),
    (["--max-failures", "-1"], "--max-failures must be 0 or more, got -1"),
    (["--epochs", str(10**20)], "epochs must be an integer in [1, 100000]"),
    (["--seed", str(10**20)], "seed must be an integer in [0, 4294967295]"),
]


@pytest.mark.parametrize(("args", "fragment"), RUN_OPTIONS, ids=[" ".join(a) for a, _ in RUN_OPTIONS])
def test_absurd_run_options_are_one_line_and_create_nothing(
    args: list[str],
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWEEP_OFFLINE", "1")
    monkeypatch.delenv("SWEEP_STORAGE", raising=False)
    code = main(["run", "lenet", *args])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("sweep: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in out + err and fragment in err, err
    assert not os.listdir(tmp_path), "nothing created: no database, no runs/"
