"""``sweep run`` on a real multi-node Ray cluster, with PostgreSQL storage, driven as a user would.

Ray's own test cluster (``ray.cluster_utils.Cluster``) runs on this machine: a head with no CPU (and the
Ray client server) plus two worker nodes of one CPU each, so every trial runs on a worker node, and
trials running at once run on different nodes. Each sweep is a ``python -m sweep run`` process. Checked:
trials spread over both workers and export finds a trial's checkpoint through the path the study
recorded; the same through ``ray://``; a worker node removed while its trial runs (retried with
``--max-failures``, or FAIL with the reason); two drivers started together on one study; and the
heartbeat that tells a live driver's trials from those of a driver that is gone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import write_mnist_like
from optuna.trial import TrialState

from sweep.search import plan_sweep
from sweep.study import (
    BASELINE_ATTR,
    Heartbeat,
    create_or_resume,
    enqueue_missing,
    is_baseline,
    open_storage,
    reconcile,
    study_lock,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
POSTGRES = os.environ.get("SWEEP_TEST_POSTGRES")
TRAIN_IMAGES = 300
SWEEP_TIMEOUT_S = 300
pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_mnist_like(tmp_path_factory.mktemp("data"), TRAIN_IMAGES)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_head(num_cpus: int, client_start_s: int):
    """A Ray test cluster's head with a Ray client server on a free port (``client_port``), which gives
    the process it starts for each client ``client_start_s`` to come up (Ray's default: 30 s)."""
    from ray.cluster_utils import Cluster

    head = {"num_cpus": num_cpus, "include_dashboard": False, "object_store_memory": 100 * 2**20}
    head["ray_client_server_port"] = free_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S", str(client_start_s))  # the head inherits it
        made = Cluster(initialize_head=True, head_node_args=head)
    made.client_port = head["ray_client_server_port"]
    return made


@pytest.fixture(scope="module")
def cluster(request) -> Iterator:
    request.getfixturevalue("postgres_url")  # skips without PostgreSQL
    made = start_head(0, client_start_s=90)  # 1.5 s on an idle machine, longer on two busy cores
    try:
        yield made
    finally:
        made.shutdown()


@pytest.fixture
def workers(cluster) -> dict:
    """The cluster's worker nodes by node id: two of one CPU each (replacing any an earlier test removed)."""
    while len(cluster.worker_nodes) < 2:
        cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    return {node.node_id: node for node in cluster.worker_nodes}


@pytest.fixture
def study_name() -> Iterator[str]:
    name = f"cluster-{uuid.uuid4().hex[:8]}"
    yield name
    if POSTGRES:
        storage = open_storage(POSTGRES)
        if name in {s.study_name for s in storage.get_all_studies()}:
            optuna.delete_study(study_name=name, storage=storage)


def sweep(tmp_path: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", *argv],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=SWEEP_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out


def run_args(
    name: str, data_dir: Path, tmp_path: Path, address: str, *more: str, storage: str | None = None
) -> list[str]:
    return [
        "run", "lenet", "--study", name, "--storage", storage or POSTGRES or "", "--address", address,
        "--data-dir", str(data_dir), "--subset", str(TRAIN_IMAGES), "--out", str(tmp_path / "runs"), *more,
    ]  # fmt: skip


def trials_of(name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(POSTGRES)).trials


def states(trials: list[optuna.trial.FrozenTrial]) -> Counter:
    return Counter(t.state for t in trials)


def running_on(name: str, nodes: dict) -> tuple[int, str] | None:
    """A RUNNING trial that has reported an epoch from one of ``nodes``: (trial number, node id)."""
    try:
        trials = trials_of(name)
    except KeyError:
        return None
    for t in trials:
        node = (t.user_attrs.get("node") or {}).get("id")
        if t.state == TrialState.RUNNING and node in nodes:
            return t.number, node
    return None


def remove_a_node_under_a_trial(cluster, proc: subprocess.Popen, name: str, nodes: dict) -> tuple[int, str]:
    deadline = time.monotonic() + SWEEP_TIMEOUT_S
    while (found := running_on(name, nodes)) is None:
        assert proc.poll() is None, f"the sweep ended before a trial ran:\n{proc.communicate()[0]}"
        assert time.monotonic() < deadline, "no trial started on a worker node in time"
        time.sleep(0.2)
    cluster.remove_node(nodes[found[1]])
    return found


@pytest.mark.slow  # the four cluster-fixture tests together: 2.5-4 min on 2 cores
def test_trials_spread_over_the_worker_nodes_and_export_finds_the_recorded_checkpoint(
    cluster, workers, data_dir, tmp_path, study_name
):
    rc, out = finish(
        sweep(
            tmp_path,
            *run_args(study_name, data_dir, tmp_path, cluster.address, "--trials", "6", "--epochs", "1"),
        )
    )
    assert rc == 0, out
    trials = trials_of(study_name)
    assert states(trials) == {TrialState.COMPLETE: 6}, out
    per_node = Counter(t.user_attrs["node"]["id"] for t in trials)
    assert set(per_node) == set(workers), f"trials per node: {per_node}"
    for t in trials:
        node = t.user_attrs["node"]
        assert node["ip"] and node["host"] == socket.gethostname()
        assert Path(t.user_attrs["checkpoint"]).is_file()
    print(f"trials per worker node: {sorted(per_node.values())}")

    chosen = next(t for t in trials if t.user_attrs["node"]["id"] == sorted(workers)[1])
    export = [
        "export", study_name, "--storage", POSTGRES, "--trial", str(chosen.number), "--format", "safetensors",
        "--out", str(tmp_path / "export"), "--data-dir", str(data_dir),
    ]  # fmt: skip
    rc, out = finish(sweep(tmp_path, *export))
    assert rc == 0, out
    assert (tmp_path / "export" / "model.safetensors").is_file(), out


def client_server_logs(cluster) -> str:
    """The tails of the head's Ray client server logs, which say why it refused a session."""
    logs = Path(cluster.head_node.get_logs_dir_path())
    tails = [
        f"\n== {f.name}\n" + "\n".join(f.read_text().splitlines()[-15:])
        for f in logs.glob("ray_client_server*")
    ]
    return "".join(sorted(tails))


@pytest.mark.slow  # the four cluster-fixture tests together: 2.5-4 min on 2 cores
def test_a_sweep_through_the_ray_client(cluster, workers, data_dir, tmp_path, study_name):
    address = f"ray://127.0.0.1:{cluster.client_port}"
    rc, out = finish(
        sweep(tmp_path, *run_args(study_name, data_dir, tmp_path, address, "--trials", "3", "--epochs", "1"))
    )
    assert rc == 0, out + client_server_logs(cluster)
    trials = trials_of(study_name)
    assert states(trials) == {TrialState.COMPLETE: 3}, out
    assert {t.user_attrs["node"]["id"] for t in trials} <= set(workers)
    assert all(Path(t.user_attrs["checkpoint"]).is_file() for t in trials)
    assert out.count("] trial ") == 3 and "this run: 3 complete" in out, "the cluster's lines came back"


@pytest.mark.slow  # the four cluster-fixture tests together: 2.5-4 min on 2 cores
def test_a_worker_node_removed_under_a_trial(cluster, workers, data_dir, tmp_path, study_name):
    """Retried elsewhere with --max-failures 1 (the sweep reaches its count); FAIL with the reason
    without it; a resume then makes up the count. Nothing is left RUNNING, no finished trial is lost."""
    args = run_args(study_name, data_dir, tmp_path, cluster.address, "--epochs", "15")
    proc = sweep(tmp_path, *args, "--trials", "4", "--max-failures", "1")
    number, dead = remove_a_node_under_a_trial(cluster, proc, study_name, workers)
    rc, out = finish(proc)
    assert rc == 0, out
    trials = trials_of(study_name)
    assert states(trials) == {TrialState.COMPLETE: 4}, out
    retried = trials[number]
    (lost,) = retried.user_attrs["worker_failures"]
    assert (
        lost["node"]["id"] == dead and f"the Ray node running the trial died (node {dead})" in lost["reason"]
    )
    assert retried.user_attrs["node"]["id"] != dead, "finished on another node"
    assert f"trial {number} lost its worker" in out
    before = {t.number: t.values for t in trials}

    cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    alive = {node.node_id: node for node in cluster.worker_nodes}
    proc = sweep(tmp_path, *args, "--trials", "5", "--resume")
    number, dead = remove_a_node_under_a_trial(cluster, proc, study_name, alive)
    rc, out = finish(proc)
    assert rc == 0, out  # its one trial failed; the study has usable networks
    trials = trials_of(study_name)
    assert states(trials) == {TrialState.COMPLETE: 4, TrialState.FAIL: 1}, out
    assert (
        trials[number]
        .user_attrs["fail_reason"]
        .startswith(f"the Ray node running the trial died (node {dead})")
    )
    assert trials[number].user_attrs["node"]["id"] == dead

    rc, out = finish(sweep(tmp_path, *args, "--trials", "5", "--resume"))
    assert rc == 0, out
    trials = trials_of(study_name)
    assert states(trials) == {TrialState.COMPLETE: 5, TrialState.FAIL: 1}, out
    assert all(trials[n].values == values for n, values in before.items()), "no finished trial changed"


@pytest.mark.slow  # the four cluster-fixture tests together: 2.5-4 min on 2 cores
def test_two_drivers_started_together_on_one_study(cluster, workers, data_dir, tmp_path, study_name):
    overrides = {"dataset": None, "data_dir": str(data_dir), "subset": TRAIN_IMAGES, "epochs": 3, "seed": 0}
    options = dict(
        sampler="tpe", scheduler="fifo", cpus_per_trial=1.0, gpus_per_trial=0.0, concurrency=None,
        address=cluster.address, out=str(tmp_path / "runs"),
    )  # fmt: skip
    plan = plan_sweep("lenet", None, study_name, 6, "smoke", overrides, **options)
    create_or_resume(
        open_storage(POSTGRES), study_name, plan.space.fingerprint(plan.budget, overrides), {}, False
    )
    args = run_args(
        study_name, data_dir, tmp_path, cluster.address, "--trials", "6", "--epochs", "3", "--resume"
    )
    drivers = [sweep(tmp_path, *args) for _ in range(2)]
    results = [finish(proc) for proc in drivers]
    assert [rc for rc, _ in results] == [0, 0], results
    trials = trials_of(study_name)
    assert states(trials) == {TrialState.COMPLETE: 6}, results
    assert sum(is_baseline(t) for t in trials) == 1
    starts = Counter(
        repr(sorted(t.system_attrs["fixed_params"].items()))
        for t in trials
        if "fixed_params" in t.system_attrs
    )
    assert len(starts) == 1 + len(plan.space.start) and set(starts.values()) == {1}, (
        f"the baseline and each start point once: {starts}"
    )
    assert len({repr(sorted(t.params.items())) for t in trials}) == 6, "no two trials alike"
    pids = Counter(t.user_attrs["driver"]["pid"] for t in trials)
    assert set(pids) == {proc.pid for proc in drivers}, f"both drivers ran trials: {pids}"
    print(f"trials per driver: {sorted(pids.values())}")


# ------------------------------------------------------------------------------- without the cluster


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'study.db'}"
        return
    yield request.getfixturevalue("postgres_url")


def test_heartbeats_tell_a_live_driver_elsewhere_from_a_gone_one(storage_url, study_name):
    storage = open_storage(storage_url)
    storage.grace_period = 1  # seconds, for the test
    study = create_or_resume(storage, study_name, {"objectives": ["top1_error", "neurons"]}, {}, False).study
    elsewhere = {"host": "another-host", "pid": 1, "start": None}
    trials = {}
    for label, driver in (
        ("gone", {**elsewhere, "heartbeat_s": 1}),
        ("live", {**elsewhere, "heartbeat_s": 1}),
        ("old", elsewhere),  # a driver from before heartbeats
    ):
        trial = study.ask()
        trial.set_user_attr("driver", driver)
        if "heartbeat_s" in driver:
            storage.record_heartbeat(trial._trial_id)
        trials[label] = trial
    with Heartbeat(storage, lambda: [trials["live"]._trial_id], interval=0.3):
        time.sleep(2.5)
        assert reconcile(study) == [trials["gone"].number], "stale whatever the host"
        assert reconcile(study, all_hosts=True) == [trials["old"].number]
    by_number = {t.number: t for t in study.get_trials()}
    assert by_number[trials["live"].number].state == TrialState.RUNNING, "its driver beats: left alone"
    reason = by_number[trials["gone"].number].user_attrs["fail_reason"]
    assert reason.startswith("no heartbeat from the sweep driver (another-host pid 1) for over 1 s")


def test_the_study_lock_keeps_a_second_driver_waiting(storage_url, study_name):
    storage = open_storage(storage_url)
    study = create_or_resume(storage, study_name, {"objectives": ["top1_error", "neurons"]}, {}, False).study
    order: list[str] = []

    def second() -> None:
        with study_lock(open_storage(storage_url), study._study_id):
            order.append("second")
            enqueue_missing(study, [{"penalty": "none"}])

    with study_lock(storage, study._study_id):
        other = threading.Thread(target=second)
        other.start()
        time.sleep(1.0)
        order.append("first")
        assert enqueue_missing(study, [{"penalty": "none"}]) == 1
    other.join(timeout=30)
    assert order == ["first", "second"]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs[BASELINE_ATTR], "the second saw the first's baseline"


def test_drivers_enqueueing_and_asking_at_once_stay_within_the_study(storage_url, study_name):
    """Eight drivers at once, each with its own connection: the baseline and a start point are queued
    once, and asking stops at the number of trials wanted (what each driver's searcher does)."""
    create_or_resume(
        open_storage(storage_url), study_name, {"objectives": ["top1_error", "neurons"]}, {}, False
    )
    points = [{"penalty": "none"}, {"penalty": "group_lasso", "lam": 0.03}]
    wanted, drivers = 6, 8
    start = threading.Barrier(drivers)
    errors: list[BaseException] = []

    def driver() -> None:
        try:
            storage = open_storage(storage_url)
            study = optuna.load_study(study_name=study_name, storage=storage)
            start.wait()
            with study_lock(storage, study._study_id):
                enqueue_missing(study, points, limit=wanted)
            while True:
                with study_lock(storage, study._study_id):
                    held = storage.get_all_trials(
                        study._study_id, False, (TrialState.RUNNING, TrialState.COMPLETE)
                    )
                    if len(held) >= wanted:
                        return
                    study.ask()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=driver) for _ in range(drivers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    trials = optuna.load_study(study_name=study_name, storage=open_storage(storage_url)).trials
    assert Counter(t.state for t in trials) == {TrialState.RUNNING: wanted}
    assert sum(is_baseline(t) for t in trials) == 1
    fixed = [t.system_attrs.get("fixed_params") for t in trials if "fixed_params" in t.system_attrs]
    assert len(fixed) == 2 and {"penalty": "group_lasso", "lam": 0.03} in fixed
