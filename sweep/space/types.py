"""A parsed search space: its distributions, budgets and fixed values, and the fingerprint that says
whether two spaces search the same thing."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweep.errors import SweepError

if TYPE_CHECKING:
    import optuna
from sweep.config import (
    DEFAULT_OBJECTIVES,
    INIT_BASELINE,
    LATER_DEFAULTS,
    MACHINE_KEYS,
    PENALTY_KEYS,
    TrialConfig,
)


@dataclass(frozen=True)
class Distribution:
    """One searched setting. ``choices`` is what Optuna sees; for named sets (``layers``) ``values``
    maps each choice name to the value the trial gets."""

    kind: str  # "float", "int" or "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return trial.suggest_int(
                name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def resolve(self, suggested: Any) -> Any:
        """The trial setting for a value Optuna suggested (a named set becomes its layer list)."""
        return self.values[suggested] if self.values else suggested

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        assert self.low is not None and self.high is not None
        return isinstance(value, int | float) and self.low <= value <= self.high

    def grid(self, points: int) -> list[Any]:
        """``points`` values spread over the range (all choices for a categorical)."""
        if self.kind == "categorical":
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if points < 2:
            return [self.low]
        if self.log:
            ratio = (self.high / self.low) ** (1.0 / (points - 1))
            values = [self.low * ratio**i for i in range(points)]
        else:
            values = [self.low + (self.high - self.low) * i / (points - 1) for i in range(points)]
        values[-1] = self.high
        return sorted({round(v) for v in values}) if self.kind == "int" else values

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"choices": dict(self.values) if self.values else list(self.choices)}
        out: dict[str, Any] = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Budget:
    """How much one sweep spends: trials, epochs per trial, training subset, the fixed settings it changes
    and the distributions it replaces (a 2-epoch budget needs a larger lambda than an 11-epoch one to
    remove the same neurons: the prox shrinks weights by lr x lambda per step)."""

    name: str
    trials: int
    epochs: int
    subset: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Distribution] = field(default_factory=dict)
    start: tuple[dict[str, Any], ...] | None = None  # its own start points, in place of the space's
    # with ``init: baseline``: the epochs of the baseline trial that every other trial fine-tunes from
    baseline_epochs: int | None = None


@dataclass(frozen=True)
class SearchSpace:
    """A model's search space: what is fixed, what is searched, what is minimised, and named budgets."""

    model: str
    dataset: str
    fixed: dict[str, Any]
    search: dict[str, Distribution]  # flat key paths: "penalty", "lam", "layer_scales.conv1", ...
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    budgets: dict[str, Budget] = field(default_factory=dict)
    path: str = ""
    start: tuple[dict[str, Any], ...] = ()  # points a new study tries first (enqueued after the baseline)

    def budget(self, name: str | Budget) -> Budget:
        if isinstance(name, Budget):
            return name
        if name not in self.budgets:
            raise SweepError(
                f"unknown budget {name!r} in {self.path or self.model}; known: {', '.join(self.budgets)}"
            )
        return self.budgets[name]

    def for_budget(self, name: str | Budget) -> SearchSpace:
        """The space a sweep under budget ``name`` samples: the budget's distributions replace the
        space's, and so do its start points where it gives them; else the space's start points outside
        its distributions are left out (they were chosen for other budgets)."""
        budget = self.budget(name)
        if not budget.search and budget.start is None:
            return self
        search = {**self.search, **budget.search}
        start = budget.start
        if start is None:
            start = tuple(p for p in self.start if all(search[k].contains(v) for k, v in p.items()))
        return dataclasses.replace(self, search=search, start=start)

    def _penalty_of(self, params: dict[str, Any]) -> str:
        return params.get("penalty", self.fixed.get("penalty", TrialConfig.penalty))

    def suggest(
        self, trial: optuna.Trial, only: Collection[str] | None = None, baseline: bool = False
    ) -> dict[str, Any]:
        """Define-by-run: ask ``trial`` for every setting that applies to it, and return the settings
        (``trial_config`` takes them). ``baseline``: the trial is the study's unconstrained baseline, so
        it samples no penalty and gets ``penalty: none``; the searched ``penalty`` holds only the real
        penalties, so no other trial repeats it. Settings that only matter with a penalty (lambda,
        alpha, layers, their scales, debias, warm-up, distillation) are not sampled for the baseline;
        alpha only for sparse_group_lasso; a layer's scale only if it is constrained. ``only``
        restricts sampling to those keys (grid search)."""
        params: dict[str, Any] = {}

        def take(key: str) -> None:
            if key in self.search and (only is None or key in only):
                params[key] = self.search[key].suggest(trial, key)

        if baseline:
            params["penalty"] = "none"
        else:
            take("penalty")
        penalty = self._penalty_of(params)
        if penalty != "none":
            take("lam")
            if penalty == "sparse_group_lasso":
                take("alpha")
            take("layers")
            take("lam_scaling")
            layers = self.search["layers"].resolve(params["layers"]) if "layers" in params else None
            if layers is None:
                layers = self.fixed.get("layers")
            for key in self.search:
                if key.startswith("layer_scales.") and (layers is None or key.split(".", 1)[1] in layers):
                    take(key)
            take("debias_fraction")
            take("warmup_epochs")
            take("distill")
            take("distill_temperature")
            take("method")  # pruning by importance: its settings where its method uses them
            method = params.get("method", self.fixed.get("method", TrialConfig.method))
            for key in ("importance", "scope", "flops_target"):
                take(key)
            take("prune_ratio" if method == "magnitude" else "rewind")
            if method == "magnitude":
                take("prune_steps")
        for key in self.search:
            if key not in params and key not in (*PENALTY_KEYS, "penalty") and "." not in key:
                take(key)
        return params

    def baseline(self) -> dict[str, Any]:
        """Settings of the unconstrained baseline trial: penalty none, the other searched settings
        (learning rate, ...) at their fixed values where those lie in the searched range. The study
        enqueues it once, marked as the baseline (``sweep.study.create.enqueue_missing``)."""
        params: dict[str, Any] = {"penalty": "none"}
        base = self.trial_config({}).to_dict()
        for key, dist in self.search.items():
            if key in PENALTY_KEYS or key == "penalty" or key.startswith("layer_scales."):
                continue
            if dist.contains(base.get(key)):
                params[key] = base[key]
        return params

    def trial_config(
        self,
        params: dict[str, Any],
        budget: str | Budget | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> TrialConfig:
        """The TrialConfig of one trial: the space's fixed settings, then the budget's (epochs, subset,
        overrides), then ``overrides`` (command-line settings; None values are ignored), then the
        sampled ``params``. ``debias_fraction`` becomes ``debias_epochs = round(fraction * epochs)``
        (at most epochs - 1)."""
        values: dict[str, Any] = {"model": self.model, "dataset": self.dataset, **self.fixed}
        if budget is not None:
            b = self.budget(budget)
            values.update(b.overrides)
            values.update(epochs=b.epochs, subset=b.subset)
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        if "data_dir" in values and _is_env_data_dir(given.get("data_dir")):
            del given["data_dir"]  # $SWEEP_DATA_DIR is sweep run's default, not a choice: the file's wins
        values.update(given)
        scales = dict(values.get("layer_scales") or {})
        fraction: float | None = None
        for key, raw in params.items():
            dist = self.search.get(key)
            if dist is None:
                raise SweepError(
                    f"parameter {key!r} is not in the search space; known: {', '.join(self.search)}"
                )
            value = dist.resolve(raw)
            if key.startswith("layer_scales."):
                scales[key.split(".", 1)[1]] = float(value)
            elif key == "debias_fraction":
                fraction = float(value)
            elif key == "layers":
                values["layers"] = None if value is None else list(value)
            else:
                values[key] = value
        values["layer_scales"] = scales
        if values.get("penalty") == "none":  # the baseline: no penalty, so lambda is 0, not a default
            values.update(lam=0.0, layers=None, layer_scales={}, lam_scaling="uniform", method="prox")
            if values.get("init") == INIT_BASELINE:  # it is what the others start from: trained afresh
                values.update(init=None, distill=0.0)
                if budget is not None and self.budget(budget).baseline_epochs:
                    values.update(epochs=self.budget(budget).baseline_epochs, debias_epochs=0)
        if fraction is not None:
            epochs = int(values.get("epochs", TrialConfig.epochs))
            values["debias_epochs"] = max(0, min(round(fraction * epochs), epochs - 1))
        from sweep.data import datasets as data  # here, not at the top: it imports torch

        dataset = values.get("dataset")
        size = data.info(dataset).input_size if dataset in data.DATASETS else None
        return TrialConfig.from_dict(values).validate(size)

    def fingerprint(
        self, budget: str | Budget | None = None, overrides: dict[str, Any] | None = None
    ) -> dict:
        """What defines a study: model, dataset, objectives, distributions and the resolved trial settings
        (fixed + budget + overrides), without machine-specific ones (data_dir, device, workers). The
        penalties are listed as the study holds them: the baseline's ``none``, then the sampled ones
        (so a file that lists ``none`` and one that does not make the same study)."""
        trial = self.trial_config({}, budget, overrides).to_dict()
        for key in MACHINE_KEYS:
            trial.pop(key, None)
        for key, default in LATER_DEFAULTS.items():
            if key in trial and trial[key] == default:
                trial.pop(key)
        search = {key: dist.to_dict() for key, dist in self.search.items()}
        if "penalty" in self.search:
            sampled = [c for c in self.search["penalty"].choices if c != "none"]
            search["penalty"] = {"choices": ["none", *sampled]}
        return {
            "model": self.model,
            "dataset": trial["dataset"],
            "objectives": list(self.objectives),
            "search": search,
            "trial": trial,
        }


def _is_env_data_dir(path: Any) -> bool:
    """Whether ``path`` is the folder $SWEEP_DATA_DIR names."""
    env = os.environ.get("SWEEP_DATA_DIR")
    if not (env and isinstance(path, str) and path):
        return False
    return os.path.realpath(os.path.expanduser(path)) == os.path.realpath(os.path.expanduser(env))


def fingerprint_digest(fingerprint: dict) -> str:
    """A short stable hash of a fingerprint."""
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key.path: old -> new`` for every leaf that differs between two fingerprints."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        where = f"{prefix}{key}"
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(fingerprint_differences(a, b, where + "."))
        elif a != b:
            out.append(f"{where}: {json.dumps(a, default=str)} -> {json.dumps(b, default=str)}")
    return out
