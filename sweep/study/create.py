"""The Optuna study in its RDB storage (opened by ``sweep.study.storage.open_storage``): what it is called,
what it records, what each trial records, how its trials are sampled and summed up.

One study per (search space, budget): it records the space's fingerprint, the sweep settings and the
objective names in its user attributes, and every finished trial carries DESIGN.md's user attributes
(widths, sizes, epochs, early_stopped, checkpoint, config, dataset, seed, versions). A driver that dies
leaves its trials RUNNING; ``reconcile`` (in ``sweep.study.drivers``, with the driver identities and
heartbeats) marks them FAIL with the reason, so a resumed sweep neither counts nor repeats them.
"""

from __future__ import annotations

import datetime
import importlib.util
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep._version import __version__
from sweep.config import pruning_label
from sweep.errors import SweepError, quote
from sweep.study import _optuna
from sweep.study.checks import check_study_matches
from sweep.study.rows import BASELINE_ATTR, StudyCounts, is_baseline, objective_names, trial_params
from sweep.study.storage import redact

if TYPE_CHECKING:
    from sweep.space import SearchSpace

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
# Trial user attributes every finished trial carries (DESIGN.md), besides extras such as history.
TRIAL_ATTRS = (
    "widths",
    "widths_full",
    "params",
    "params_full",
    "flops",
    "flops_full",
    "memory_mb",
    "epochs",
    "early_stopped",
    "checkpoint",
    "config",
    "dataset",
    "seed",
    "versions",
)
GRID_POINTS = 5  # lambda values per penalty for --sampler grid
SAMPLERS = ("auto", "gp", "tpe", "nsga2", "random", "grid")  # --sampler; auto resolves to gp or tpe
# Optuna's guidance: TPE wants 100+ trials; a multi-objective study of a few dozen gets more from a GP
GP_MAX_TRIALS = 100


# ------------------------------------------------------------------------------------------- studies


def default_study_name(model: str, dataset: str) -> str:
    return f"{model}-{dataset}"


def check_study_name(name: str) -> str:
    if not STUDY_NAME.match(name):
        raise SweepError(
            f"study name must be 1-128 letters, digits, '.', '_', '+' or '-' (starting with a letter or "
            f"digit), got {quote(name, 60)}" + (f" ({len(name)} characters)" if len(name) > 128 else "")
        )
    return name


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def load_existing(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """Load a study that must exist; the error lists the studies there are."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = ", ".join(study_names(storage)) or "none"
        raise SweepError(f"no study {quote(name)} in this database; studies there: {known}") from None


@dataclass
class OpenedStudy:
    study: optuna.Study
    created: bool
    differences: list[str] = field(default_factory=list)  # search-space changes accepted by --resume


def create_or_resume(
    storage: optuna.storages.RDBStorage,
    name: str,
    fingerprint: dict[str, Any],
    settings: dict[str, Any],
    resume: bool,
) -> OpenedStudy:
    """Create the study, or open the existing one of that name.

    A new study records its fingerprint, objectives and settings. An existing one must have been made
    by ``sweep run`` from the same fingerprint; otherwise the error lists what differs, unless ``resume``
    (the model, dataset, objectives and directions must still match: ``sweep.study.checks``). ``resume``
    of a study that does not exist is an error, and creates nothing."""
    from sweep.space import fingerprint_digest

    objectives = list(fingerprint["objectives"])
    shown = redact(storage.url)
    if name not in study_names(storage):
        if resume:
            known = ", ".join(study_names(storage)) or "none"
            raise SweepError(f"--resume: no study {name!r} in {shown}; studies there: {known}")
        try:
            study = optuna.create_study(
                storage=storage, study_name=name, directions=["minimize"] * len(objectives)
            )
        except optuna.exceptions.DuplicatedStudyError:  # another driver created it just now
            return create_or_resume(storage, name, fingerprint, settings, resume)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(objectives)
        for key, value in {
            "objectives": objectives,
            "fingerprint": fingerprint,
            "fingerprint_digest": fingerprint_digest(fingerprint),
            "settings": settings,
            "created": _now(),
            "sweep_version": __version__,
        }.items():
            study.set_user_attr(key, value)
        return OpenedStudy(study, created=True)
    study = optuna.load_study(study_name=name, storage=storage)
    differences = check_study_matches(
        name, shown, study.user_attrs, study.metric_names, study.directions, fingerprint, resume
    )
    return OpenedStudy(study, created=False, differences=differences)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------ trial records


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (Optuna stores user attributes as JSON); NaN/inf become None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):  # numpy / torch scalars
        return jsonable(value.item())
    return str(value)


def finished_trial_attrs(
    metrics: dict[str, Any], checkpoint: str | None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The user attributes of a finished trial from its last reported metrics. Training's final report
    (``done: True``) carries them all; a trial stopped early by the scheduler gets them from its last
    epoch, with ``early_stopped: True`` and ``epochs`` = the epochs it trained."""
    attrs = {k: v for k, v in metrics.items() if k != "done"}
    done = bool(metrics.get("done"))
    attrs["early_stopped"] = not done
    if not done or "epochs" not in attrs:
        attrs["epochs"] = metrics.get("epoch")
    attrs["checkpoint"] = checkpoint
    attrs.update(extra or {})
    return jsonable(attrs)


def write_trial_attrs(storage: optuna.storages.BaseStorage, trial_id: int, attrs: dict[str, Any]) -> None:
    """Write user attributes onto a trial that is still RUNNING (finished trials are read-only)."""
    for key, value in attrs.items():
        storage.set_trial_user_attr(trial_id, key, jsonable(value))


# ------------------------------------------------------------------------------------------ sampling


def tpe_startup_trials(trials: int) -> int:
    """Random trials before TPE models: a quarter of a small sweep, 3 to 10 (Optuna's fixed 10 would
    leave a 12-trial sweep almost all random)."""
    return max(3, min(10, trials // 4))


def gp_startup_trials(trials: int) -> int:
    """Complete penalised trials before the GP models: 4, up to 10 (Optuna's default) for 80+ trials.
    They count the space's start points, which are real trials queued first, so a space with 3 of them
    gets 1 random trial on top, not 10; 4 points are the fewest that fit a length scale per parameter
    sensibly. The baseline is not counted: it holds none of the penalty's parameters."""
    return max(4, min(10, trials // 8))


def gp_available() -> bool:
    """GPSampler fits its model with torch and optimises with scipy (neither is imported until then)."""
    return all(importlib.util.find_spec(m) is not None for m in ("scipy", "torch"))


def choose_sampler(name: str, space: SearchSpace, trials: int, gp_ok: bool | None = None) -> str:
    """The sampler ``--sampler NAME`` runs: ``auto`` is ``gp`` for a budget under GP_MAX_TRIALS over a
    mostly numeric space (at least as many float/int settings as categorical ones: penalty and layers
    are categoricals, which GPSampler handles), else ``tpe``; so too where scipy is missing. ``gp_ok``:
    whether GPSampler can run (default: ``gp_available()``)."""
    if name not in SAMPLERS:
        raise SweepError(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")
    gp_ok = gp_available() if gp_ok is None else gp_ok
    if name == "gp" and not gp_ok:
        raise SweepError("--sampler gp needs scipy and torch installed (pip install scipy)")
    if name != "auto":
        return name
    kinds = [d.kind for d in space.search.values()]
    numeric = len(kinds) - kinds.count("categorical")
    return "gp" if gp_ok and trials < GP_MAX_TRIALS and numeric >= kinds.count("categorical") else "tpe"


def _penalised(trial: FrozenTrial) -> bool:
    return not is_baseline(trial)


class BaselineFreeGPSampler(optuna.samplers.GPSampler):
    """Optuna's GPSampler fitted on the penalised trials only. It models the parameters that every
    complete trial holds (the intersection) and samples the rest independently (its RandomSampler):
    the baseline holds no penalty parameter, so counted in, it would leave nothing to model. Of the
    conditional ones (alpha for sparse_group_lasso, a layer's scale where the layer is constrained),
    each is modelled only while every penalised trial so far has it."""

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, optuna.distributions.BaseDistribution]:
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _penalised(t)]
        space = optuna.search_space.intersection_search_space(done)
        return {name: d for name, d in space.items() if not d.single()}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        return super().sample_relative(_optuna.study_view(study, _penalised), trial, search_space)


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    if name == "gp":
        # warn_independent_sampling off: alpha and unconstrained layers' scales are sampled
        # independently by design (conditional); deterministic_objective stays False (SGD is noisy)
        return BaselineFreeGPSampler(
            seed=seed, n_startup_trials=gp_startup_trials(trials), warn_independent_sampling=False
        )
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # group: lambda, alpha, ... exist only for some penalties (a conditional space)
            startup = tpe_startup_trials(trials)
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=startup, multivariate=True, group=True, constant_liar=True
            )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 4)))
    if name in ("random", "grid"):
        return optuna.samplers.RandomSampler(seed=seed)
    raise SweepError(f"sampler must be one of {', '.join(SAMPLERS[1:])}, got {name!r}")


def grid_points(space: SearchSpace) -> list[dict[str, Any]]:
    """--sampler grid: the baseline, then every penalty at GRID_POINTS lambda values (other settings
    stay at their fixed values)."""
    points = [{"penalty": "none"}]
    lam = space.search.get("lam")
    for penalty in space.search["penalty"].choices:
        if penalty == "none":
            continue
        if lam is None:
            points.append({"penalty": penalty})
        else:
            points.extend({"penalty": penalty, "lam": v} for v in lam.grid(GRID_POINTS))
    return points


def enqueue_missing(study: optuna.Study, points: list[dict[str, Any]], limit: int | None = None) -> int:
    """Enqueue each point unless a trial with those parameters is complete, running or waiting, so that
    at most ``limit`` trials wait in the queue (the trials this run will ask for). A point with
    ``penalty: none`` is the baseline: enqueued without the penalty and marked ``sweep_baseline``, and
    only while no baseline is live, so a study holds one however often it is resumed."""
    live = study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    )
    seen = []
    for t in live:
        settings = dict(t.system_attrs.get("fixed_params", t.params))
        if t.user_attrs.get(BASELINE_ATTR):
            settings["penalty"] = "none"
        elif t.state == TrialState.WAITING and settings.get("penalty") == "none":  # enqueued before the mark
            storage = _optuna.study_storage(study)
            study_id = storage.get_study_id_from_name(study.study_name)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            storage.set_trial_user_attr(trial_id, BASELINE_ATTR, True)
        seen.append(settings)
    room = None if limit is None else limit - sum(t.state == TrialState.WAITING for t in live)
    added = 0
    for point in points:
        if room is not None and added >= room:
            break
        if point.get("penalty") == "none":  # the baseline: one per study, whatever else it fixes
            if any(p.get("penalty") == "none" for p in seen):
                continue
            rest = {k: v for k, v in point.items() if k != "penalty"}
            study.enqueue_trial(rest, user_attrs={BASELINE_ATTR: True})
        elif any(all(p.get(k) == v for k, v in point.items()) for p in seen):
            continue
        else:
            study.enqueue_trial(point)
        seen.append(point)
        added += 1
    return added


# ------------------------------------------------------------------------------------------ status


def describe_params(params: dict[str, Any]) -> str:
    penalty = params.get("penalty", "?")
    if penalty == "none":
        return "none (baseline)"
    pruning = pruning_label(params)
    if pruning is not None:
        return pruning
    lam = params.get("lam")
    return f"{penalty} lam {lam:.2e}" if isinstance(lam, float) else str(penalty)


NO_USABLE = "no usable network"  # the summary's line when no trial left a network worth exporting


def summary_lines(study: optuna.Study, shown_url: str) -> list[str]:
    """The closing summary of a sweep: counts, the most accurate and the smallest fully trained trials,
    where the study is and how to look at it."""
    trials = study.get_trials(deepcopy=False)
    lines = [f"study {study.study_name}: {StudyCounts.of(trials).line()}"]
    names = objective_names(study)
    full = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and not t.user_attrs.get("early_stopped")
        and not t.user_attrs.get("empty_layers")
    ]
    if not full:
        lines.append(f"{NO_USABLE}: every trial failed, was stopped early or emptied a layer")

    def point(t: FrozenTrial) -> str:
        shown = [
            f"{v:.2f}% error" if n == "top1_error" else f"{v:,.0f} {n}"
            for n, v in zip(names, t.values, strict=False)
        ]
        return f"trial {t.number} ({describe_params(trial_params(t))}): {', '.join(shown)}"

    for label, objective in (("best error", "top1_error"), ("fewest neurons", "neurons")):
        if full and objective in names:
            i = names.index(objective)
            lines.append(f"{label}: {point(min(full, key=lambda t: (t.values[i], t.values)))}")
    lines.append(f"study {study.study_name} is in {shown_url}")
    lines.append(f"dashboard: python -m sweep dashboard {study.study_name} --storage {shown_url}")
    return lines
