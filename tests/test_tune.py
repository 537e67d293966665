"""``sweep run`` end to end: real Ray Tune, real Optuna, real LeNet training on small IDX files.

One Ray session is shared by the in-process sweeps of this module; the kill -9 tests start the driver
as a separate ``python -m sweep run`` process (with its own Ray) and resume it in-process."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
from conftest import write_mnist_like
from optuna.trial import TrialState

from sweep import cli
from sweep.errors import SweepError
from sweep.search import plan_sweep, run_command, sampled_space
from sweep.search.cluster import dead_drivers_sessions
from sweep.search.cluster import processes_of as session_processes
from sweep.space import load_space, space_path
from sweep.study import TRIAL_ATTRS, create_or_resume, is_baseline, open_storage, trial_params

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT_SPACES = space_path("lenet").parent
POSTGRES = os.environ.get("SWEEP_TEST_POSTGRES")
TRAIN_IMAGES = 300
DIVERGING_SPACE = """\
model: lenet
fixed: {lr: 1.0e+8}
search:
  penalty: {choices: [none, group_lasso]}
  lam: {low: 1.0e-4, high: 1.0e-2, log: true}
budgets:
  smoke: {trials: 2, epochs: 1}
"""

HOPELESS_SPACE = """\
model: lenet
search:
  penalty: {choices: [none, group_lasso]}
  lam: {low: 50.0, high: 100.0, log: true}
budgets:
  smoke: {trials: 3, epochs: 3}
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """mnist/ with 300 learnable training images and 60 test images, as the four IDX .gz files."""
    return write_mnist_like(tmp_path_factory.mktemp("data"), TRAIN_IMAGES)


def plain(url: str) -> str:
    """The URL for plain Optuna (whose SQLAlchemy picks psycopg 3 for postgresql://; sweep uses psycopg2)."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def run_args(*argv: str) -> dict:
    """Keyword arguments exactly as ``python -m sweep run ...`` hands them to run_command."""
    args = vars(cli.build_parser().parse_args(["run", "lenet", *argv]))
    del args["command"]
    return args


def common(data_dir: Path, tmp_path: Path, url: str) -> list[str]:
    return [
        "--storage",
        url,
        "--data-dir",
        str(data_dir),
        "--subset",
        str(TRAIN_IMAGES),
        "--out",
        str(tmp_path / "runs"),
    ]


def test_sweep_of_four_trials_lands_in_the_study(ray_session, data_dir, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    started = time.perf_counter()
    assert run_command(**run_args("--trials", "4", "--epochs", "1", *common(data_dir, tmp_path, url))) == 0
    wall = time.perf_counter() - started
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"storage: {url}"

    study = optuna.load_study(study_name="lenet-mnist", storage=url)  # plain Optuna reads it back
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert is_baseline(trials[0]) and trials[0].params == {}, "the unconstrained baseline runs first"
    assert (trials[0].user_attrs["config"]["penalty"], trials[0].user_attrs["config"]["lam"]) == ("none", 0.0)
    assert [trial_params(t)["penalty"] == "none" for t in trials] == [True, False, False, False]
    assert study.user_attrs["objectives"] == ["top1_error", "neurons"]
    own = 0.0
    for t in trials:
        attrs = t.user_attrs
        assert len(t.values) == 2
        assert set(TRIAL_ATTRS) <= set(attrs)
        assert list(attrs["widths"]) == ["conv1", "conv2", "fc1"]
        assert attrs["widths_full"] == {"conv1": 20, "conv2": 50, "fc1": 500}
        assert attrs["neurons"] == sum(attrs["widths"].values()) == t.values[1]
        assert attrs["top1_error"] == t.values[0]
        assert 0 < attrs["params"] <= attrs["params_full"] and 0 < attrs["flops"] <= attrs["flops_full"]
        assert attrs["early_stopped"] is False and attrs["epochs"] == 1
        assert t.constraints == {"empty_layers": float(len(attrs["empty_layers"]))}, "emptied layers"
        assert attrs["config"]["penalty"] == trial_params(t)["penalty"] and attrs["config"]["epochs"] == 1
        assert (attrs["dataset"], attrs["seed"]) == ("mnist", 0) and "torch" in attrs["versions"]
        checkpoint = Path(attrs["checkpoint"])
        assert checkpoint.is_absolute() and checkpoint.is_file()
        assert checkpoint.is_relative_to(tmp_path / "runs" / "lenet-mnist")
        assert f"trial_{t.number:04d}_" in str(checkpoint)
        own += attrs["train_seconds"]
    assert len({t.user_attrs["checkpoint"] for t in trials}) == 4
    progress = [line for line in lines if re.match(r"\[\d/4\] trial \d complete: ", line)]
    assert len(progress) == 4
    assert sum(": none (baseline) -> error " in line for line in progress) == 1
    assert any(line.startswith("best error: trial ") for line in lines)
    assert lines[-1] == f"dashboard: python -m sweep dashboard lenet-mnist --storage {url}"
    print(f"4-trial lenet sweep: {wall:.1f} s wall, trials' own training {own:.1f} s")


def test_a_diverging_trial_fails_with_its_reason_and_the_sweep_goes_on(
    ray_session, data_dir, tmp_path, capsys
):
    space = tmp_path / "diverging.yaml"
    space.write_text(DIVERGING_SPACE)
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    argv = ["--space", str(space), "--study", "nan", "--concurrency", "1", *common(data_dir, tmp_path, url)]
    assert run_command(**run_args(*argv)) == 1, "no trial completed"
    out = capsys.readouterr().out
    trials = optuna.load_study(study_name="nan", storage=url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL], "both trials ran"
    for t in trials:
        assert t.user_attrs["fail_reason"].startswith("DivergedError: training loss became nan")
        assert (
            t.user_attrs["config"]["lr"] == 1e8
            and t.user_attrs["config"]["penalty"] == trial_params(t)["penalty"]
        )
    assert out.count("FAILED: DivergedError") == 2
    assert "this run: 0 complete, 0 early-stopped, 2 failed" in out


def test_asha_stops_hopeless_trials_early_and_keeps_their_values(ray_session, data_dir, tmp_path, capsys):
    """Grid order: the baseline first, then group lasso so strong it empties layers; ASHA compares them at
    epoch 1 of 3 and stops the hopeless ones."""
    space = tmp_path / "hopeless.yaml"
    space.write_text(HOPELESS_SPACE)
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    argv = ["--space", str(space), "--study", "asha", "--sampler", "grid", "--scheduler", "asha"]
    argv += ["--epochs", "3", "--trials", "3", "--concurrency", "1", *common(data_dir, tmp_path, url)]
    assert run_command(**run_args(*argv)) == 0
    out = capsys.readouterr().out
    trials = optuna.load_study(study_name="asha", storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    baseline, *stopped = trials
    assert trial_params(baseline) == {"penalty": "none"} and baseline.user_attrs["early_stopped"] is False
    assert baseline.user_attrs["epochs"] == 3 and len(baseline.user_attrs["history"]) == 3
    assert baseline.constraints == {"empty_layers": 0.0}
    for t in stopped:
        attrs = t.user_attrs
        assert t.params["penalty"] == "group_lasso" and t.params["lam"] >= 50
        assert attrs["early_stopped"] is True and attrs["epochs"] == 1
        assert t.values == [attrs["top1_error"], attrs["neurons"]] and t.values[0] > baseline.values[0]
        # an emptied layer makes the trial infeasible for the sampler: its point is no network
        assert attrs["empty_layers"] and t.constraints == {"empty_layers": float(len(attrs["empty_layers"]))}
        assert set(TRIAL_ATTRS) <= set(attrs) and len(attrs["history"]) == 1
        assert Path(attrs["checkpoint"]).is_file()
    assert out.count("early-stopped at epoch 1: group_lasso") == 2
    assert "this run: 1 complete, 2 early-stopped, 0 failed" in out


def kill_leftovers(driver_pid: int) -> None:
    """Stop what the killed driver's Ray left behind: its process group and its session's workers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(driver_pid, signal.SIGKILL)
    session = re.compile(rf"session_[\d_-]+_{driver_pid}\b")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if session.search(cmdline):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def count_complete(url: str, name: str) -> int:
    try:
        study = optuna.load_study(study_name=name, storage=plain(url))
    except KeyError:
        return 0
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_kill_9_of_the_driver_then_resume_completes_the_count(ray_session, data_dir, tmp_path, backend):
    if backend == "postgres" and not POSTGRES:
        pytest.skip("SWEEP_TEST_POSTGRES is not set (bash .ci/start-postgres.sh prints the URL)")
    url = POSTGRES if backend == "postgres" else f"sqlite:///{tmp_path / 'sweep.db'}"
    name = f"kill-{uuid.uuid4().hex[:8]}"
    argv = ["--study", name, "--trials", "4", "--concurrency", "1", *common(data_dir, tmp_path, url)]
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweep", "run", "lenet", *argv],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 150
        while count_complete(url, name) < 1:
            assert driver.poll() is None, f"the sweep ended before the kill:\n{driver.communicate()[0]}"
            assert time.monotonic() < deadline, "no trial completed in time"
            time.sleep(0.1)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    except BaseException:
        kill_leftovers(driver.pid)
        raise
    before = {t.number: t for t in optuna.load_study(study_name=name, storage=plain(url)).trials}
    done_before = [n for n, t in before.items() if t.state == TrialState.COMPLETE]
    assert 1 <= len(done_before) < 4
    sessions = dead_drivers_sessions(before.values())
    assert len(sessions) == 1, "the killed driver recorded the Ray session it started"
    (session,) = sessions

    try:
        assert run_command(**run_args(*argv, "--resume")) == 0
        time.sleep(0.5)
        assert not session_processes(session), "nothing of the killed driver's Ray runs after the resume"
    finally:
        kill_leftovers(driver.pid)
    after = optuna.load_study(study_name=name, storage=plain(url)).trials
    states = Counter(t.state for t in after)
    assert states[TrialState.COMPLETE] == 4
    assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0
    for n in done_before:
        assert after[n].state == TrialState.COMPLETE and after[n].values == before[n].values, (
            "kept as they were"
        )
    for t in after:
        if t.state == TrialState.FAIL:
            assert "stopped while this trial ran" in t.user_attrs["fail_reason"]
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert sum(trial_params(t)["penalty"] == "none" for t in complete) == 1, "one baseline, not repeated"
    assert sum(is_baseline(t) for t in after) == 1, "not enqueued again by the resume"
    assert len({t.user_attrs["checkpoint"] for t in complete}) == 4
    assert all(Path(t.user_attrs["checkpoint"]).is_file() for t in complete)
    if backend == "postgres":
        optuna.delete_study(study_name=name, storage=open_storage(url))


def test_a_study_from_before_the_baseline_mark_keeps_its_penalty_choices(tmp_path):
    """Optuna keeps a categorical's choices for the life of a study: an older study, whose penalty
    choices include none, goes on sampling those; other differences are an error before Ray starts."""
    space = load_space("lenet")
    storage = open_storage(f"sqlite:///{tmp_path / 'sweep.db'}")
    study = create_or_resume(storage, "old", space.fingerprint("smoke"), {}, resume=False).study
    assert sampled_space(space, study) is space, "nothing sampled yet"
    old = optuna.distributions.CategoricalDistribution(["none", *space.search["penalty"].choices])
    study.add_trial(
        optuna.trial.create_trial(params={"penalty": "none"}, distributions={"penalty": old}, values=[1, 2])
    )
    kept = sampled_space(space, study)
    assert kept.search["penalty"].choices == old.choices and kept.search["lam"] == space.search["lam"]
    trial = study.ask()
    assert kept.suggest(trial)["penalty"] in old.choices, "no clash with the recorded distribution"
    other = create_or_resume(storage, "other", space.fingerprint("smoke"), {}, resume=False).study
    other.ask({"penalty": optuna.distributions.CategoricalDistribution(["l1", "nuclear"])})
    with pytest.raises(SweepError, match="study 'other' samples penalty from l1, nuclear, this search space"):
        sampled_space(space, other)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["run", "lenet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("sweep: error: "), err
    return err


def test_bad_input_exits_2_with_one_line_and_leaves_the_database_alone(data_dir, tmp_path, capsys):
    db = tmp_path / "sweep.db"
    url = f"sqlite:///{db}"
    base = ["--data-dir", str(data_dir), "--subset", str(TRAIN_IMAGES), "--out", str(tmp_path / "runs")]

    code, _, err = run_cli(capsys, "--storage", "postgresql://sweep:sweep@127.0.0.1:1/none", *base)
    assert code == 2 and "cannot open storage postgresql://sweep:***@127.0.0.1:1/none" in one_error_line(err)
    code, _, err = run_cli(capsys, "--storage", url, "--gpus-per-trial", "64", *base)
    assert code == 2 and "--gpus-per-trial 64 is more than the" in one_error_line(err)
    code, _, err = run_cli(capsys, "--storage", url, "--resume", *base)
    assert code == 2 and "no study database at" in one_error_line(err)
    code, _, err = run_cli(capsys, "--storage", url, "--budget", "huge", *base)
    assert code == 2 and "unknown budget 'huge'" in one_error_line(err)
    assert not db.exists()

    storage = open_storage(url)
    other = optuna.create_study(study_name="other", storage=storage, directions=["minimize", "minimize"])
    other.add_trial(optuna.trial.create_trial(values=[1.0, 2.0]))
    code, _, err = run_cli(capsys, "--storage", url, "--resume", "--study", "missing", *base)
    assert code == 2 and "no study 'missing' in this database; studies there: other" in one_error_line(err)
    code, _, err = run_cli(capsys, "--storage", url, "--study", "other", *base)
    assert code == 2 and "was not created by `sweep run`" in one_error_line(err)
    studies = optuna.get_all_study_names(storage=url)
    assert studies == ["other"]
    assert len(optuna.load_study(study_name="other", storage=url).trials) == 1


def test_a_latency_objective_makes_every_trial_time_its_compact_network(tmp_path):
    text = (
        (ROOT_SPACES / "lenet.yaml")
        .read_text()
        .replace("objectives: [top1_error, neurons]", "objectives: [top1_error, latency_ms]")
    )
    assert "latency_ms" in text
    (tmp_path / "lenet.yaml").write_text(text)
    options = dict(
        sampler="tpe",
        scheduler="fifo",
        cpus_per_trial=1.0,
        gpus_per_trial=0.0,
        concurrency=None,
        address=None,
        out=str(tmp_path / "runs"),
    )
    timed = plan_sweep("lenet", str(tmp_path / "lenet.yaml"), None, 2, "smoke", {}, **options)
    assert timed.base.measure_latency is True
    assert timed.space.trial_config({"penalty": "group_lasso"}, timed.budget, timed.overrides).measure_latency
    plain_plan = plan_sweep("lenet", None, None, 2, "smoke", {}, **options)
    assert plain_plan.base.measure_latency is False


def test_a_trials_error_reason_is_read_from_text_and_its_pickle_never_loaded(tmp_path):
    """Ray's error.pkl may sit on a shared disk: loading it would run its writer's code."""
    import pickle
    from types import SimpleNamespace

    from sweep.search.searcher import _error_reason

    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(ran), "w"))

    (tmp_path / "error.pkl").write_bytes(pickle.dumps(Payload()))
    (tmp_path / "error.txt").write_text(
        "Failure # 1 (occurred at 2026-12-02_07-00-00)\nold failure\n"
        "Failure # 2 (occurred at 2026-12-02_07-01-00)\n"
        "ray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)\n"
        '  File "sweep/train/trial.py", line 1, in train_trial\n'
        "sweep.train.trial.DivergedError: loss is nan at epoch 1\n"
    )
    trial = SimpleNamespace(
        error_file=str(tmp_path / "error.txt"), pickled_error_file=str(tmp_path / "error.pkl")
    )
    assert _error_reason(trial) == "DivergedError: loss is nan at epoch 1"
    assert not ran.exists()


def test_a_start_that_cannot_run_refuses_before_the_database_is_written(data_dir, tmp_path, tmpfs, capsys):
    """An unreachable cluster, an --out that cannot hold trials, a subset too small: no study, no file."""
    db = tmp_path / "sweep.db"
    base = ["--storage", f"sqlite:///{db}", "--data-dir", str(data_dir), "--subset", str(TRAIN_IMAGES)]
    runs = ["--out", str(tmp_path / "runs")]
    (tmp_path / "a-file").write_text("mine")
    cases = [
        ([*base, *runs, "--address", "127.0.0.1:1"], "cannot reach a Ray cluster at 127.0.0.1:1"),
        ([*base, *runs, "--address", "ray://127.0.0.1:1"], "cannot reach a Ray cluster at ray://127.0.0.1:1"),
        ([*base, "--out", str(tmp_path / "a-file" / "runs")], "is a file, not a folder"),
        ([*base, *runs, "--subset", "1"], "subset must be an integer >= 2, got 1"),
    ]
    for args, message in cases:
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and message in one_error_line(err), (args, err)
    readonly = tmpfs("ro,size=64k")
    code, _, err = run_cli(capsys, *base, "--out", str(readonly / "runs"))
    assert code == 2 and "is not writable" in one_error_line(err), err
    assert not db.exists() and not (tmp_path / "runs").exists()


def test_a_ray_client_refusal_names_the_servers_cause():
    """Ray puts the client server's traceback after "Initialization failure from server:"; the line
    sweep prints keeps its last line, where the cause is."""
    from sweep.search.cluster import reason

    refused = ConnectionAbortedError(
        "Initialization failure from server:\nTraceback (most recent call last):\n"
        '  File "proxier.py", line 775, in Datapath\n    raise RuntimeError(\n'
        "RuntimeError: Proxy failed to Connect to backend!\n"
    )
    assert (
        reason(refused)
        == "Initialization failure from server: RuntimeError: Proxy failed to Connect to backend!"
    )
    assert reason(ConnectionError("no cluster here\nmore detail")) == "no cluster here"
    assert reason(RuntimeError()) == "RuntimeError"


def test_ray_processes_of_a_dead_driver_are_ended_and_a_live_ones_kept(tmp_path):
    """What a resumed sweep does with the Ray session of a driver that was killed: its processes (they
    ignore SIGTERM) get SIGKILL; those of a driver still alive are left alone."""
    from sweep.search.cluster import SESSION_KEY, end_leftover_ray
    from sweep.study import driver_identity

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = {**driver_identity(), "pid": gone.pid, "start": None, SESSION_KEY: "session_2026_0_111"}
    alive = {**driver_identity(), SESSION_KEY: "session_2026_0_222"}
    sleeper = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    procs = {
        name: subprocess.Popen([sys.executable, "-c", sleeper, f"--session-dir=/tmp/ray/{name}"])
        for name in ("session_2026_0_111", "session_2026_0_222")
    }
    try:
        study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=["minimize"])
        for driver in (dead, alive):
            study.add_trial(optuna.trial.create_trial(values=[1.0], user_attrs={"driver": driver}))
        time.sleep(0.3)
        assert end_leftover_ray(study) == 1
        assert procs["session_2026_0_111"].wait(timeout=10) == -signal.SIGKILL
        assert procs["session_2026_0_222"].poll() is None
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
