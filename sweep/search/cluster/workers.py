"""Trial workers that are ready before the sweep asks for them.

A Ray that ``sweep run`` starts itself prestarts one Python worker per CPU while it starts (the raylet's
``num_prestart_python_workers``), and with Ray's ``preload_python_modules`` system setting those workers
import Ray Tune and sweep's training code (torch with it) before they take any work: while the driver
still waits for ``ray.init``, opens the study and sets up Tune. Ray gives an idle worker to an actor only
when the actor asks for the runtime environment the worker has. Tune registers every trainable with a
runtime environment of its own (``env_vars``: its ``DEFAULT_ENV_VARS`` plus those of its
``ENV_VARS_TO_PROPAGATE`` that the driver has set), so each trial slot would get a new process that
imports torch again. The workers of a Ray started here inherit the driver's environment as it was when
Ray started; when that already holds every one of those variables with Tune's value,
``trials_in_prestarted_workers`` registers the trainable without the runtime environment: the same
variables, an already warm process. When it does not (a variable set after Ray started, a Ray whose Tune
asks for something else), Tune's own registration stands and only the head start is lost.

The reaches into Ray's private parts (``ray.init``'s ``_system_config``, Tune's
``ray.tune.execution.class_cache``) go through ``sweep.search._ray``; tests/test_search_ray.py and
tests/test_ray_workers.py check that they still fit the installed Ray.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from sweep.search import _ray

# What a trial's worker imports before training: Tune's function trainable (it wraps ours) and sweep.train.trial,
# which brings torch, numpy and the models.
PRELOAD = ("ray.tune", "sweep.train.trial")
# ray.tune.execution.class_cache.DEFAULT_ENV_VARS as of Ray 2.60; set before Ray starts so that the workers
# inherit it. Compared with the installed Tune's own value before the runtime environment is left out.
TUNE_DEFAULT_ENV = {"PL_DISABLE_FORK": "1"}


def local_start_options() -> dict[str, Any]:
    """Extra ``ray.init`` arguments for a Ray started here: its workers import ``PRELOAD`` as they start.
    Also puts Tune's default trial variables into this process's environment, which Ray's processes copy."""
    for name, value in TUNE_DEFAULT_ENV.items():
        os.environ.setdefault(name, value)
    return _ray.preload_option(PRELOAD)


def tune_trial_env() -> dict[str, str] | None:
    """The ``env_vars`` Tune would give each trial actor's runtime environment, from this process now
    (None when the installed Tune no longer says)."""
    tune_env = _ray.tune_trial_env()
    if tune_env is None:
        return None
    defaults, names = tune_env
    return {**defaults, **{name: os.environ[name] for name in names if name in os.environ}}


@contextlib.contextmanager
def trials_in_prestarted_workers(inherited: Mapping[str, str] | None) -> Iterator[bool]:
    """While Tune runs, register trainables without a runtime environment when the workers' environment
    (``inherited``: this process's environment when it started Ray; None for a Ray it joined) already
    holds every variable Tune would set. Yields whether it does."""
    if inherited is None:
        yield False
        return
    wanted = tune_trial_env()
    if wanted is None or any(inherited.get(name) != value for name, value in wanted.items()):
        yield False
        return
    with _ray.actors_without_runtime_env() as shortcut:
        yield shortcut


def match_ray_threads() -> None:
    """In a trial's worker: torch's thread count as Ray sets it for the trial (``OMP_NUM_THREADS``, its CPUs).
    A worker that imported torch before it was given the trial read no such value and would run one thread
    per core of the machine, each trial slot competing with the others for every core."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        import torch

        torch.set_num_threads(int(threads))
