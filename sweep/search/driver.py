"""The sweep: an Optuna study proposes trials, Ray Tune places them on the machine (or a Ray cluster),
and every finished trial lands in the study database with its objective values and user attributes.

The searcher that writes each finished trial into the study, and the per-trial progress lines, are in
``sweep.search.searcher``; the two phases of ``init: baseline`` in ``sweep.search.baseline``; the trial workers
that a Ray started here has ready (training code imported) before Tune asks for them in ``sweep.search.cluster.workers``;
the checked request in ``sweep.search.plan``, the function each trial runs in ``sweep.search.trainable``, and how
a sweep stops early (a fault, Ctrl-C, SIGTERM) in ``sweep.search.stop``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from sweep.config import INIT_BASELINE, TrialConfig
from sweep.errors import SweepError, first_line
from sweep.files import check_writable_folder
from sweep.search.baseline import fit_from_baseline
from sweep.search.cluster.client import check_data_on_cluster, fit_on_cluster, is_client
from sweep.search.cluster.leftovers import SESSION_KEY, end_leftover_ray, local_session_name
from sweep.search.cluster.start import capacity, check_cluster_gpus, node_cpus, start_ray, stop_ray
from sweep.search.cluster.workers import trials_in_prestarted_workers
from sweep.search.plan import SweepPlan, plan_sweep
from sweep.search.searcher import (
    DATABASE_WRITE_FAILED,
    print_line,
    progress_class,
    root_cause_line,
    searcher_class,
)
from sweep.search.stop import INTERRUPT, print_run_line, stop_on_fault, was_cut
from sweep.search.trainable import TRIAL_NUMBER, make_trainable
from sweep.search.warm import warm_points
from sweep.space import Distribution, SearchSpace
from sweep.space import default as space_default
from sweep.study import (
    NO_USABLE,
    Heartbeat,
    count_run,
    counts_line,
    create_or_resume,
    driver_identity,
    enqueue_missing,
    grid_points,
    is_baseline,
    load_existing,
    make_sampler,
    open_storage,
    reconcile,
    redact,
    resolve_storage,
    study_lock,
    summary_lines,
)
from sweep.train import absolute_init

# ------------------------------------------------------------------------------------- the command


def run_command(
    model: str,
    space: str | None,
    study: str | None,
    storage: str | None,
    trials: int | None,
    budget: str,
    epochs: int | None,
    dataset: str | None,
    data_dir: str | None,
    subset: int | None,
    seed: int,
    sampler: str,
    scheduler: str,
    cpus_per_trial: float,
    gpus_per_trial: float,
    concurrency: int | None,
    address: str | None,
    resume: bool,
    out: str,
    max_failures: int = 0,
    precision: str | None = None,
    init: str | None = None,
    input_size: int | None = None,
    warm_start: str | None = None,
    warm_storage: str | None = None,
) -> int:
    """``sweep run``: search the model's space for the error/size trade-off; trials go to the study.

    ``--trials N`` runs N trials; with ``--resume`` it runs until the study holds N complete ones."""
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data_dir = data_dir or os.environ.get("SWEEP_DATA_DIR") or None
    if data_dir:
        data_dir = str(Path(data_dir).expanduser().resolve())  # Ray workers run in other folders
    overrides = {
        "dataset": dataset,
        "data_dir": data_dir,
        "subset": subset,
        "input_size": input_size,
        "epochs": epochs,
        "seed": seed,
        "precision": precision,
        "init": absolute_init(init),
    }
    plan = plan_sweep(
        model,
        space,
        study,
        trials,
        budget,
        overrides,
        sampler=sampler,
        scheduler=scheduler,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        concurrency=concurrency,
        address=address,
        out=out,
        max_failures=max_failures,
    )
    url = resolve_storage(storage)
    print(f"storage: {redact(url)}", flush=True)
    default_space = space_default.announce(plan.space)  # a model from outside, without a file
    if default_space:
        print(default_space, flush=True)
    rdb = None
    # Before anything slow, read-only, so a refusal writes nothing: the database must be one sweep may
    # write, and a study of this name sweep's own and of this model, dataset and objectives (--resume: it
    # must exist).
    from sweep.study import check_before_run

    check_before_run(url, plan.name, plan.space.fingerprint(plan.budget, plan.overrides), resume)
    if warm_start:
        warm = warm_points(warm_start, resolve_storage(warm_storage or url), plan, url)
        print(f"warm start: {len(warm)} point(s) from the front of study {warm_start} go first", flush=True)
        plan.space = dataclasses.replace(plan.space, start=(*warm, *plan.space.start))
    if "://" not in plan.out:  # a URI is left to Ray
        check_writable_folder(plan.out, "--out")
    with INTERRUPT.handling():  # SIGTERM from here on ends the sweep as Ctrl-C does (sweep.search.stop)
        return _start_and_run(plan, url, rdb, resume, seed, started)


def _start_and_run(
    plan: SweepPlan, url: str, rdb: optuna.storages.RDBStorage | None, resume: bool, seed: int, started: float
) -> int:
    """Everything that can refuse the run does so before the database is written: the data and the trial
    folder are checked, and Ray started (or the cluster joined), first. Ray starts while the data loads."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        # through ray:// the data must be where the Tune driver runs: on the cluster, checked there
        data_checked = None if is_client(plan.address) else pool.submit(_prepare, plan.base)
        inherited: dict[str, str] = {}
        started_ray = start_ray(plan.address, inherited)
        INTERRUPT.take()  # back from ray.init, whose SIGTERM handler exits at once
        plan.ray_session = local_session_name() if started_ray else None
        plan.worker_env = inherited or None
        try:
            if data_checked is None:
                check_data_on_cluster(plan.base, _check_data)
            else:
                data_checked.result()
            if plan.address:
                check_cluster_gpus(plan.gpus_per_trial)
        except BaseException:
            stop_ray(started_ray)
            raise
    try:
        return _run_study(plan, url, rdb, resume, seed, started)
    finally:
        stop_ray(started_ray)


def _run_study(
    plan: SweepPlan, url: str, rdb: optuna.storages.RDBStorage | None, resume: bool, seed: int, started: float
) -> int:
    """Create or resume the study, run what is missing of it, print the summary."""
    rdb = rdb or open_storage(url)
    sampler, scheduler, model = plan.sampler, plan.scheduler, plan.base.model
    fingerprint = plan.space.fingerprint(plan.budget, plan.overrides)
    settings = {
        "space": plan.space.path,
        "budget": plan.budget.name,
        "sampler": sampler,
        "scheduler": scheduler,
    }
    opened = create_or_resume(rdb, plan.name, fingerprint, settings, resume)
    for line in opened.differences:
        print(f"note: the search space changed since the study began (--resume goes on): {line}", flush=True)
    failed_now = reconcile(opened.study, all_hosts=resume)
    ended = end_leftover_ray(opened.study, plan.ray_session)
    if ended:
        print(f"ended {ended} Ray process(es) that a killed sweep of this study left running", flush=True)
    if failed_now:
        print(
            f"marked FAIL: trial(s) {', '.join(map(str, failed_now))}, left running by a stopped sweep",
            flush=True,
        )
    complete = len(opened.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    remaining = plan.trials - complete if resume else plan.trials
    state = "new" if opened.created else "resumed" if resume else "extended"
    print(f"study {plan.name} ({state}): {counts_line(opened.study)}", flush=True)
    outcomes: list[dict[str, Any]] = []
    fault: list[str] = []
    if remaining <= 0:
        print(
            f"nothing to run: the study has {complete} complete trials (asked for {plan.trials})", flush=True
        )
    else:
        b = plan.base
        print(
            f"running {remaining} trial(s) of {model} on {b.dataset}: budget {plan.budget.name} ({b.epochs} "
            f"epoch(s){f', subset {b.subset}' if b.subset else ''}), sampler {sampler}, scheduler {scheduler}, "
            f"objectives {', '.join(plan.space.objectives)}",
            flush=True,
        )
        until = plan.trials if resume else None
        if plan.base.init == INIT_BASELINE:
            outcomes = fit_from_baseline(_fit, plan, opened.study, rdb, remaining, seed, fault, until)
        else:
            outcomes = _fit(plan, opened.study, rdb, remaining, seed, fault, until)
    print_run_line(outcomes, started)
    try:
        summary = summary_lines(load_existing(rdb, plan.name), redact(url))
    except (SweepError, optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError):
        summary = []  # the fault below says why
    for line in summary:
        print(line, flush=True)
    interrupted = INTERRUPT.received  # SIGTERM; Ctrl-C shows as trials cut off by the stop
    if fault and not interrupted:
        raise SweepError(
            f"the sweep stopped: {fault[0]}; every finished trial is kept in the study: fix that, then "
            "continue with --resume"
        )
    for line in fault:  # what went wrong as the signal stopped the run (the baseline cut off, say)
        print(f"note: {line}", flush=True)
    cut = sum(map(was_cut, outcomes))
    short = len(outcomes) < max(remaining, 0)
    if short and resume:  # fewer trials here is no stop when other drivers of the study run the rest
        held = opened.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        short = len(held) < plan.trials
    if interrupted or cut or short:
        by = f" by {interrupted}" if interrupted else ""
        print(f"the sweep was stopped{by} before it finished; continue it with --resume", flush=True)
        return 130
    return 1 if any(line.startswith(NO_USABLE) for line in summary) else 0


def _prepare(cfg: TrialConfig) -> None:
    """What the run needs besides Ray, done while Ray starts: the data checked, Tune's modules imported."""
    _check_data(cfg)
    import ray.tune.schedulers
    import ray.tune.search  # noqa: F401

    import sweep.search.asha  # noqa: F401


def _check_data(cfg: TrialConfig) -> None:
    """Fail before Ray starts when the dataset is missing (loading it also downloads where allowed)."""
    from sweep.data import datasets as data

    if cfg.dataset not in data.available_offline(cfg.data_dir):
        data.load(
            cfg.dataset,
            data_dir=cfg.data_dir,
            subset=cfg.subset,
            holdout=cfg.holdout,
            seed=cfg.seed,
            input_size=cfg.input_size,
        )


def _fit(
    plan: SweepPlan,
    study: optuna.Study,
    rdb: optuna.storages.RDBStorage,
    n_trials: int,
    seed: int,
    fault: list[str],
    until: int | None = None,
    emit: Any = print_line,
) -> list[dict[str, Any]]:
    """Run ``n_trials`` trials through Ray Tune; returns one outcome per finished trial. A fault that
    stops the run (a full disk, a database that cannot be written) is appended to ``fault``. With
    ``until`` (``--resume``), no trial is asked for once the study holds that many complete and running
    trials, whichever driver runs them. Through ray:// all this runs on the cluster (sweep.search.cluster.client)."""
    if INTERRUPT.received:  # a signal ended the run already: no further phase starts
        return []
    if is_client(plan.address):
        return fit_on_cluster(_fit, plan, rdb, n_trials, seed, fault, until)
    only = ("penalty", "lam") if plan.sampler == "grid" else None
    space = sampled_space(plan.space, study)
    if plan.baseline_only:
        points = [space.baseline()]
    else:
        points = grid_points(space) if plan.sampler == "grid" else [space.baseline(), *space.start]
    study_id = rdb.get_study_id_from_name(study.study_name)
    with study_lock(rdb, study_id):  # other drivers of the study wait (sweep.study.drivers)
        enqueue_missing(study, points, limit=n_trials)
        runs = count_run(study)
    # The seed moves on with the study, so a resumed random sampler does not repeat the first run's draws,
    # and drivers started together on one study do not draw the same trials.
    offset = len(study.get_trials(deepcopy=False)) + 7_919 * runs
    sampler = make_sampler(plan.sampler, seed * 1_000_003 + offset, plan.trials)
    driver = {**driver_identity(), **({SESSION_KEY: plan.ray_session} if plan.ray_session else {})}

    def define_by_run(trial: optuna.Trial) -> dict[str, Any]:
        # Returned, not only suggested: the baseline's penalty none is a constant, not an Optuna parameter.
        params = space.suggest(trial, only=only, baseline=is_baseline(trial))
        trial.set_user_attr("driver", driver)
        return {**params, TRIAL_NUMBER: trial.number}

    # Quiet Ray: each trial event gets one line of ours (failures included); the study database, not
    # Ray's per-trial logs, is the record.
    for var, value in (
        ("TUNE_PRINT_ALL_TRIAL_ERRORS", "0"),
        ("RAY_AIR_NEW_OUTPUT", "0"),
        ("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1"),
    ):
        os.environ.setdefault(var, value)
    from ray import tune
    from ray.tune.error import TuneError
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from sweep.search.asha import ParetoASHA

    objectives = list(plan.space.objectives)
    search = searcher_class()(
        space=define_by_run,
        metric=objectives,
        mode=["min"] * len(objectives),
        sampler=sampler,
        storage=rdb,
        study_name=plan.name,
    )
    search.config_attrs = lambda params: _config_attrs(plan, params)
    search.share_study(rdb, study_id, until)
    limit = min(plan.concurrency or capacity(plan.cpus_per_trial, plan.gpus_per_trial), n_trials)
    epochs = plan.base.epochs
    trial_scheduler = (
        ParetoASHA(objectives, max_t=epochs, grace_period=max(1, epochs // 4), reduction_factor=3)
        if plan.scheduler == "asha"
        else FIFOScheduler()
    )
    # The baseline of init: baseline trains alone while every other trial waits for it: it gets a whole node.
    cpus = (
        max(plan.cpus_per_trial, node_cpus(plan.gpus_per_trial))
        if plan.baseline_only
        else plan.cpus_per_trial
    )
    resources = {"cpu": cpus, "gpu": plan.gpus_per_trial}
    # Checkpoints must outlive the run at a stable place: an absolute folder, or a URI (s3://...,
    # or a shared filesystem) that every node of a cluster can write.
    scheme = plan.out.split("://", 1)[0] + "://" if "://" in plan.out else ""
    storage_path = plan.out if scheme else str(Path(plan.out).expanduser().resolve())
    tuner = tune.Tuner(
        tune.with_resources(make_trainable(plan.space, plan.budget, plan.overrides), resources),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(search, max_concurrent=max(1, limit)),
            scheduler=trial_scheduler,
            num_samples=n_trials,
            reuse_actors=True,  # one worker process per slot: torch imported and data read once
            trial_dirname_creator=lambda t: f"trial_{t.config.get(TRIAL_NUMBER, 0):04d}_{t.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=plan.name,
            storage_path=storage_path,
            verbose=0,
            callbacks=[progress_class()(search, n_trials, scheme, emit)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            stop=stop_on_fault(search.outcomes, fault, plan.out),
            # A failed trial (its worker or node lost, or an error it raised) is run again from its
            # start, up to --max-failures times, before it is marked FAIL.
            failure_config=tune.FailureConfig(max_failures=plan.max_failures, fail_fast=False),
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in ("ray.tune", "ray.train"):
            logging.getLogger(logger).setLevel(logging.CRITICAL)
        try:
            with (
                Heartbeat(rdb, search.live_trial_ids) as search.heartbeat,
                trials_in_prestarted_workers(plan.worker_env),
                INTERRUPT.tune_run(),
            ):
                tuner.fit()
        except (EOFError, pickle.UnpicklingError):
            pass  # Ray's own result grid could not read an error.pkl (a full disk): the study holds the record
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError, OSError) as err:
            fault.append(f"{DATABASE_WRITE_FAILED} ({first_line(err)})")
        except TuneError as err:  # a callback's error, as the text of its traceback
            cause = root_cause_line(str(err))
            database = any(kind in str(err) for kind in ("StorageInternalError", "sqlalchemy.exc."))
            fault.append(f"{DATABASE_WRITE_FAILED} ({cause})" if database else f"Ray Tune stopped: {cause}")
        finally:
            try:
                with INTERRUPT.deferred():
                    cut = search.fail_unfinished(INTERRUPT.reason())
            except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as err:
                cut = []
                fault.append(f"{DATABASE_WRITE_FAILED} ({first_line(err)})")
            if cut:
                emit(f"marked FAIL: trial(s) {', '.join(map(str, cut))}, cut off by the stop")
    return list(search.outcomes.values())


def sampled_space(space: SearchSpace, study: optuna.Study) -> SearchSpace:
    """The search space as ``study`` samples it. Optuna keeps a categorical's choices for the life of a
    study, and a study begun before the baseline was a trial of its own recorded ``penalty`` with
    ``none`` among them: such a study keeps those choices (so there ``none`` may come up again)."""
    ours = space.search["penalty"].choices
    recorded = next(
        (
            t.distributions["penalty"]
            for t in study.get_trials(deepcopy=False)
            if "penalty" in t.distributions
        ),
        None,
    )
    if not isinstance(recorded, CategoricalDistribution) or tuple(recorded.choices) == ours:
        return space
    if set(recorded.choices) - {"none"} != set(ours):
        raise SweepError(
            f"study {study.study_name!r} samples penalty from {', '.join(map(str, recorded.choices))}, "
            f"this search space from {', '.join(ours)}; Optuna cannot change them within a study: "
            "choose another --study name"
        )
    penalty = Distribution("categorical", choices=tuple(recorded.choices))
    return dataclasses.replace(space, search={**space.search, "penalty": penalty})


def _config_attrs(plan: SweepPlan, params: dict[str, Any]) -> dict[str, Any]:
    cfg = plan.space.trial_config(params, plan.budget, plan.overrides)
    return {"config": cfg.to_dict(), "dataset": cfg.dataset, "seed": cfg.seed}
