"""A ``sweep run`` request checked before anything is written or started: the search space and budget, the
trial count, and the resources each trial asks of Ray (``SweepPlan``, ``plan_sweep``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sweep.config import TrialConfig
from sweep.errors import SweepError
from sweep.search.cluster.start import local_gpus
from sweep.space import Budget, SearchSpace, load_space
from sweep.study import check_study_name, default_study_name
from sweep.study.create import choose_sampler
from sweep.train import check_init

RAY_UNIT = 1e-4  # Ray counts resources in 1/10000ths (RESOURCE_UNIT_SCALING); less is rounded away
MIN_SHARE = 0.01  # the smallest share of a CPU or GPU a trial may ask for: 100 trials on one at most


@dataclass
class SweepPlan:
    """A validated ``sweep run`` request: nothing here has touched the database or started Ray."""

    space: SearchSpace
    budget: Budget
    overrides: dict[str, Any]
    base: TrialConfig
    name: str
    trials: int
    sampler: str
    scheduler: str
    cpus_per_trial: float
    gpus_per_trial: float
    concurrency: int | None
    address: str | None
    out: str
    max_failures: int = 0  # times Ray runs a failed trial again (--max-failures)
    baseline_only: bool = False  # run only the study's baseline (the first phase of init: baseline)
    ray_session: str | None = None  # the Ray session this driver started itself, if it did
    worker_env: dict[str, str] | None = None  # the environment of a Ray started here (cluster.workers)


def plan_sweep(
    model: str,
    space: str | None,
    study: str | None,
    trials: int | None,
    budget: str,
    overrides: dict[str, Any],
    **options: Any,  # sampler, scheduler, cpus_per_trial, gpus_per_trial, concurrency, address, out
) -> SweepPlan:
    search_space = load_space(model, space, overrides.get("dataset"))
    chosen = search_space.budget(budget)
    search_space = search_space.for_budget(chosen)
    if "latency_ms" in search_space.objectives:  # only then is it worth a few seconds per trial
        overrides = {**overrides, "measure_latency": True}
    base = search_space.trial_config({}, chosen, overrides)
    wanted = trials if trials is not None else chosen.trials
    concurrency = options["concurrency"]
    if wanted < 1:
        raise SweepError(f"--trials must be at least 1, got {wanted}")
    if concurrency is not None and concurrency < 1:
        raise SweepError(f"--concurrency must be at least 1, got {concurrency}")
    if options.get("max_failures", 0) < 0:
        raise SweepError(f"--max-failures must be 0 or more, got {options['max_failures']}")
    check_resources(options["cpus_per_trial"], options["gpus_per_trial"], options["address"])
    if base.precision == "fp16" and options["gpus_per_trial"] == 0:
        raise SweepError(
            "--precision fp16 needs a CUDA GPU per trial, and --gpus-per-trial 0 runs the trials on CPUs; "
            "use bf16 or fp32, or give the trials GPUs"
        )
    from sweep.models import short_name
    from sweep.space import check_sizes

    check_sizes(search_space, base)
    check_init(base.model, base.dataset, base.init)

    shown = short_name(search_space.model)  # a reference's file path is no study name
    name = check_study_name(study or default_study_name(shown, base.dataset or search_space.dataset))
    # --sampler auto becomes gp or tpe here: the header line and the study's settings name the one that runs
    options["sampler"] = choose_sampler(options["sampler"], search_space, wanted)
    return SweepPlan(search_space, chosen, overrides, base, name, wanted, **options)


def check_resources(cpus: float, gpus: float, address: str | None) -> None:
    """What Ray can place: a share of a CPU (and of a GPU, if any) from ``MIN_SHARE`` up, in Ray's steps
    of ``RAY_UNIT``; a GPU share above 1 whole; without a cluster, no more than this machine has."""
    if not cpus > 0 or gpus < 0:
        raise SweepError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, got {cpus:g}, {gpus:g}")
    have_cpus = os.cpu_count() or 1
    for flag, asked, unit in (("--cpus-per-trial", cpus, "CPU"), ("--gpus-per-trial", gpus, "GPU")):
        if asked == 0:
            continue
        steps = asked / RAY_UNIT
        if asked < MIN_SHARE or abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
            most = f" to {have_cpus} (the CPUs of this machine)" if unit == "CPU" and not address else ""
            zero = "0 or " if unit == "GPU" else ""
            raise SweepError(
                f"{flag} {asked:g}: must be {zero}from {MIN_SHARE:g}{most}, in steps of {RAY_UNIT:g}: Ray "
                f"shares a {unit} in steps of {RAY_UNIT:g}, and {MIN_SHARE:g} already puts "
                f"{round(1 / MIN_SHARE)} trials on one {unit}"
            )
    if gpus > 1 and not float(gpus).is_integer():
        raise SweepError(
            f"--gpus-per-trial {gpus:g}: above 1 it must be a whole number (Ray shares one GPU in fractions "
            "of it, such as 0.25 for four trials per GPU)"
        )
    if address:
        return
    for flag, asked, have, unit in (
        ("--cpus-per-trial", cpus, have_cpus, "CPU(s) of this machine"),
        ("--gpus-per-trial", gpus, local_gpus() if gpus > 0 else 0, "CUDA GPU(s) torch sees on this machine"),
    ):
        if asked > have:
            raise SweepError(f"{flag} {asked:g} is more than the {have} {unit}")
