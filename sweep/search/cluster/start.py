"""Starting Ray for a sweep, or joining a cluster, and sizing what fits on it. A cluster address is probed
first: nobody listening there is one line in seconds, where Ray itself would wait minutes."""

from __future__ import annotations

import logging
import os
import socket

from sweep.errors import SweepError

REACH_TIMEOUT_S = 5.0  # for the cluster address to answer a TCP connection
CLIENT_TRIES = 2  # a Ray client server that fails to start a session for a client may start the next


def local_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def start_ray(address: str | None, inherited: dict[str, str] | None = None) -> bool:
    """Start (or join) Ray; False when a session was already running in this process (kept afterwards).
    A Ray started here prestarts its workers with sweep's training code imported (sweep.search.cluster.workers);
    ``inherited``, when given, is filled with the environment its processes started with."""
    import ray

    if address:
        check_reachable(address)
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address and address.startswith("ray://"):
            join_through_client(address, quiet)
        elif address:
            ray.init(address=address, **quiet)
        else:
            from sweep.search.cluster.workers import local_start_options

            options = local_start_options()
            if inherited is not None:
                inherited.update(os.environ)
            ray.init(
                address="local",  # a fresh instance sized to this machine, not one `ray start` left running
                num_cpus=os.cpu_count() or 1,
                num_gpus=local_gpus(),
                include_dashboard=False,
                object_store_memory=256 * 2**20,
                **options,
                **quiet,
            )
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise SweepError(f"cannot start Ray{f' at {address}' if address else ''}: {reason(err)}") from None
    return True


def join_through_client(address: str, options: dict) -> None:
    """Connect through a Ray client server. The server starts a process of its own for each client; when
    that one fails to come up, the session is refused, and one more try gets a fresh process."""
    import ray

    for tries_left in reversed(range(CLIENT_TRIES)):
        try:
            ray.init(address=address, **options)
            return
        except ConnectionAbortedError as err:  # the server's answer to a session it could not start
            if not tries_left:
                raise
            print(
                f"the Ray client server at {address} refused the session ({reason(err)}); trying again",
                flush=True,
            )


def reason(err: Exception) -> str:
    """One line for an error from Ray. A message that ends its first line with a colon carries the
    server's traceback after it, whose last line names the cause."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[-1]}"
    return lines[0]


def check_reachable(address: str) -> None:
    """Fail at once on a HOST:PORT (or ray://HOST:PORT) nobody listens on; Ray itself would wait minutes."""
    host_port = address.removeprefix("ray://")
    if address == "auto" or ":" not in host_port:
        return
    host, _, port = host_port.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SweepError(f"--address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as err:
        raise SweepError(
            f"cannot reach a Ray cluster at {address} ({err.strerror or err}); start one with `ray start --head` "
            "or give the address it printed"
        ) from None


def capacity(cpus_per_trial: float, gpus_per_trial: float) -> int:
    """Trials that fit on the Ray cluster at once."""
    import ray

    total = ray.cluster_resources()
    fits = [int(total.get("CPU", 0) // cpus_per_trial)] if cpus_per_trial > 0 else []
    if gpus_per_trial > 0:
        fits.append(int(total.get("GPU", 0) // gpus_per_trial))
    return max(1, min(fits)) if fits else 1


def node_cpus(gpus_per_trial: float) -> float:
    """The CPUs of the largest live Ray node that can also hold the trial's GPUs."""
    import ray

    held = [
        n.get("Resources", {})
        for n in ray.nodes()
        if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) >= gpus_per_trial
    ]
    return max((r.get("CPU", 0) for r in held), default=0)


def check_cluster_gpus(gpus_per_trial: float) -> None:
    import ray

    most = max((n.get("Resources", {}).get("GPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    if gpus_per_trial > most:
        raise SweepError(
            f"--gpus-per-trial {gpus_per_trial:g} is more than the {most:g} GPU(s) of any Ray node"
        )


def stop_ray(started_here: bool) -> None:
    if started_here:
        import ray

        ray.shutdown()
