"""``--address ray://HOST:PORT``: a sweep driven from outside the cluster, through the Ray client.

Under the Ray client, Ray Tune runs ``Tuner.fit`` as an actor on the cluster anyway, and the searcher
and callbacks live there, out of reach of the process that started them. So ``sweep`` sends its whole
Tune driver (searcher, heartbeat, callbacks) to the cluster explicitly: one task, pinned to the node that
serves the client connection (the head), that needs no CPU and returns the trial outcomes. Its
progress lines come back through a ``ray.util.queue.Queue`` and are printed here as they arrive. The
study database is written from the cluster, as with ``--address auto``: the storage URL must reach the
database from there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from sweep.errors import SweepError
from sweep.search.searcher import print_line

POLL_S = 0.5  # how often the lines that came back are printed


def is_client(address: str | None) -> bool:
    return bool(address) and str(address).startswith("ray://")


def run_on_cluster(fn: Callable[..., Any], args: tuple, emit: Callable[[str], None]) -> Any:
    """``fn(*args, emit=...)`` run as a task on the node serving this Ray client, its ``emit`` lines
    printed here by ``emit``; its SweepError raised here as one. Ctrl-C cancels the task (Tune inside it
    stops and marks its unfinished trials) and is raised again here once the task has ended."""
    import ray
    from ray.util.queue import Empty, Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    head = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    lines = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": head})

    def drain() -> None:
        while True:
            try:
                emit(lines.get_nowait())
            except Empty:
                return

    remote = ray.remote(num_cpus=0, max_retries=0)(_call).options(scheduling_strategy=head)
    task = remote.remote(fn, args, lines)
    try:
        try:
            while not ray.wait([task], timeout=POLL_S)[0]:
                drain()
            status, value = ray.get(task)
        except KeyboardInterrupt:
            ray.cancel(task)
            with contextlib.suppress(Exception):
                ray.get(task, timeout=120)
            raise
        finally:
            drain()
    finally:
        lines.shutdown()
    if status == "error":
        raise SweepError(value)
    return value


def _call(fn: Callable[..., Any], args: tuple, lines: Any) -> tuple[str, Any]:
    """The task's body, on the cluster."""

    def emit(line: str) -> None:
        lines.put(line)

    try:
        return "ok", fn(*args, emit=emit)
    except SweepError as err:
        return "error", str(err)


def check_data_on_cluster(cfg: Any, check: Callable[[Any], None]) -> None:
    """``check(cfg)`` (the driver's data check), run where the Tune driver will run (the cluster sees the
    data path)."""
    run_on_cluster(_check_data, (check, cfg), emit=print)


def _check_data(check: Callable[[Any], None], cfg: Any, emit: Callable[[str], None]) -> None:
    check(cfg)


def fit_on_cluster(
    fit: Callable[..., Any],
    plan: Any,
    rdb: Any,
    n_trials: int,
    seed: int,
    fault: list[str],
    until: int | None,
) -> Any:
    """``fit`` (the driver's Tune run) run on the cluster; returns its outcomes, and adds the fault that
    stopped it, if any, to ``fault``."""
    outcomes, faults = run_on_cluster(_fit, (fit, plan, rdb, n_trials, seed, until), emit=print_line)
    fault.extend(faults)
    return outcomes


def _fit(
    fit: Callable[..., Any],
    plan: Any,
    rdb: Any,
    n_trials: int,
    seed: int,
    until: int | None,
    emit: Callable[[str], None],
) -> Any:
    import dataclasses

    from sweep.study import load_existing

    fault: list[str] = []
    here = dataclasses.replace(plan, address="auto")  # on the cluster: Ray is joined already
    outcomes = fit(here, load_existing(rdb, plan.name), rdb, n_trials, seed, fault, until, emit)
    return outcomes, fault
