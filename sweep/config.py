"""Typed configuration: one trial (``TrialConfig``), and the search spaces that produce trials."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweep.errors import SweepError, quote

if TYPE_CHECKING:
    import optuna

PENALTY_NAMES = ("none", "l1", "group_lasso", "bn_group_lasso", "sparse_group_lasso", "nuclear")
LR_POLICIES = ("constant", "inv", "multistep", "cosine")
# uniform: every layer's lambda is lam (times its layer_scales entry); rms: also times the layer's typical
# channel RMS in the network the trial starts from, over the network's (sweep.sparsity.prox.rms_scales)
LAM_SCALINGS = ("uniform", "rms")
# auto: bf16 on a CUDA GPU that supports it, else fp32 (sweep.precision resolves it once per trial)
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
INIT_BASELINE = "baseline"  # init: the study's baseline trial's weights (sweep run resolves it)


@dataclass(frozen=True)
class Range:
    """Where a numeric setting may lie: [low, high] (``open_low``: low itself excluded; None: unbounded)."""

    kind: str  # "int" or "float"
    low: float | None = None
    high: float | None = None
    open_low: bool = False

    def contains(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        return above and (self.high is None or value <= self.high)

    def interval(self) -> str:
        low = "-inf" if self.low is None else _bound(self.low)
        high = "inf" if self.high is None else _bound(self.high)
        return f"{'(' if self.open_low else '['}{low}, {high}{')' if self.high is None else ']'}"

    def describe(self) -> str:
        """What a value must be, for messages: "a number >= 0", "in [0, 1]", "an integer in [1, 64]"."""
        kind = "an integer" if self.kind == "int" else "a number"
        if self.high is None and self.low is not None:
            return f"{kind} {'>' if self.open_low else '>='} {_bound(self.low)}"
        return f"{'an integer ' if self.kind == 'int' else ''}in {self.interval()}"


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# The rules for TrialConfig's numeric settings, whether fixed, searched or given on the command line
# (``sweep.space_file`` checks a searched range against the same ones). Upper bounds on counts only stop
# values no run could use (a batch of 1e23 images).
FIELD_RANGES: dict[str, Range] = {
    "subset": Range("int", 2),  # one image at least is held out
    "holdout": Range("int", 1),
    "lam": Range("float", 0.0),
    "alpha": Range("float", 0.0, 1.0),
    "layer_scales": Range("float", 0.0),
    "epochs": Range("int", 1, 100_000),
    "debias_epochs": Range("int", 0, 100_000),
    "warmup_epochs": Range("float", 0.0),
    "batch_size": Range("int", 1, 2**20),
    "random_shift": Range("int", 0, 1024),
    "lr": Range("float", 0.0, open_low=True),
    "momentum": Range("float", 0.0, 1.0),
    "weight_decay": Range("float", 0.0),
    "lr_gamma": Range("float", 0.0),
    "lr_power": Range("float", 0.0),
    "lr_milestones": Range("int", 0, 100_000),
    "seed": Range("int", 0, 2**32 - 1),
    "num_workers": Range("int", 0, 1024),
    "input_size": Range("int", 4, 4096),  # pixels per image side
    "distill": Range("float", 0.0, 1.0),
    "distill_temperature": Range("float", 0.0, open_low=True),
}
# None: all training images, the dataset's default held-out size, the dataset's own image size
OPTIONAL = ("subset", "holdout", "input_size")


def check_range(key: str, value: Any, shown: str | None = None) -> None:
    """SweepError unless ``value`` is a number of the kind and in the range ``FIELD_RANGES[key]`` allows
    (finite; an int for an integer setting); ``shown`` is the name the message uses."""
    rule = FIELD_RANGES[key]
    if rule.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and rule.contains(value)):
        raise SweepError(f"{shown or key} must be {rule.describe()}, got {quote(value)}")


@dataclass
class TrialConfig:
    """Everything one training run needs. Plain values only, so it travels through Ray and JSON."""

    model: str
    dataset: str | None = None  # None: the model's own dataset
    data_dir: str | None = None
    subset: int | None = None
    holdout: int | None = None  # held-out images taken from train for trial selection; None: dataset default
    input_size: int | None = None  # images resized to this side; None: the dataset's own (folder: 32)
    penalty: str = "group_lasso"
    lam: float = 1e-3
    alpha: float = 0.5  # l1 share of sparse_group_lasso
    layers: list[str] | None = None  # constrained layers; None: every layer that can lose units
    layer_scales: dict[str, float] = field(default_factory=dict)  # per-layer multiplier on lam
    lam_scaling: str = "uniform"  # one of LAM_SCALINGS
    epochs: int = 10
    debias_epochs: int = 0  # last epochs: penalty off, dead neurons held at zero by a mask
    debias_restart: bool = True  # the debias phase starts the learning-rate schedule again
    warmup_epochs: float = 0.0  # lam ramps linearly from 0 over these epochs
    batch_size: int = 64
    random_shift: int = 0  # training images translated by up to this many pixels per axis; 0: off
    random_flip: bool = False  # training images mirrored left-right, each with probability 1/2
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_policy: str = "constant"
    lr_gamma: float = 1e-4  # inv: lr * (1 + gamma * iter) ** -power; multistep: factor per milestone
    lr_power: float = 0.75
    lr_milestones: list[int] = field(default_factory=list)  # multistep: epochs at which lr *= gamma
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto, bf16, fp16 or fp32: autocast dtype of forward and loss
    init: str | None = None  # initial weights (sweep.weights); None: the model's own initialisation
    # Share of the loss that matches the outputs of the network ``init`` loaded (the teacher, frozen),
    # softened by ``distill_temperature``; the rest is cross-entropy on the labels. 0: off.
    distill: float = 0.0
    distill_temperature: float = 1.0
    num_workers: int = 0
    eval_test: bool = True  # also measure top-1 error on the test split at the end
    measure_latency: bool = False  # also time the compact network on the CPU at the end (latency_ms)

    def validate(self, input_size: tuple[int, int] | None = None) -> TrialConfig:
        """Check every setting (the rules of ``FIELD_RANGES`` and a few that relate two settings); with
        ``input_size``, the dataset's (H, W), also that ``random_shift`` is at most half the image side
        (of ``self.input_size`` when that is set: the images are resized to it).
        Returns self; SweepError naming the first setting that is wrong, what is allowed and what it got."""

        def bad(key: str, allowed: str, got: Any) -> SweepError:
            return SweepError(f"{key} must be {allowed}, got {quote(got)}")

        def one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
            if value not in allowed:
                raise bad(key, f"one of {', '.join(allowed)}", value)

        def flag(key: str, value: Any) -> None:
            if not isinstance(value, bool):
                raise bad(key, "true or false", value)

        def text(key: str, value: Any, optional: bool = False) -> None:
            if not (isinstance(value, str) and value.strip()) and not (optional and value is None):
                raise bad(key, "a non-empty string" + (" or null" if optional else ""), value)

        one_of("penalty", self.penalty, PENALTY_NAMES)
        one_of("lr_policy", self.lr_policy, LR_POLICIES)
        one_of("lam_scaling", self.lam_scaling, LAM_SCALINGS)
        one_of("precision", self.precision, PRECISIONS)
        text("model", self.model)
        text("dataset", self.dataset, optional=True)
        text("data_dir", self.data_dir, optional=True)
        text("init", self.init, optional=True)
        text("device", self.device)
        for key in ("debias_restart", "random_flip", "eval_test", "measure_latency"):
            flag(key, getattr(self, key))
        for key in FIELD_RANGES:
            value = getattr(self, key)
            if key not in ("layer_scales", "lr_milestones") and not (key in OPTIONAL and value is None):
                check_range(key, value)
        if self.distill > 0 and self.init is None:
            raise bad("distill", "0 without init (the teacher is the network init loads)", self.distill)
        if not self.debias_epochs < self.epochs:
            raise bad("debias_epochs", f"in [0, epochs={self.epochs})", self.debias_epochs)
        if self.layers is not None and (
            not isinstance(self.layers, list)
            or not self.layers
            or not all(isinstance(name, str) and name for name in self.layers)
        ):
            raise bad(
                "layers",
                "null (every layer that can lose units) or a non-empty list of layer names",
                self.layers,
            )
        if not isinstance(self.layer_scales, dict):
            raise bad("layer_scales", "a mapping of layer name to scale", self.layer_scales)
        for name, scale in self.layer_scales.items():
            check_range("layer_scales", scale, f"layer_scales.{name}")
        if not isinstance(self.lr_milestones, list):
            raise bad("lr_milestones", "a list of epochs", self.lr_milestones)
        for i, milestone in enumerate(self.lr_milestones):
            check_range("lr_milestones", milestone, f"lr_milestones[{i}]")
        if isinstance(self.input_size, int):
            input_size = (self.input_size, self.input_size)
        if input_size is not None and self.random_shift > min(input_size) // 2:
            raise bad(
                "random_shift",
                f"an integer in [0, {min(input_size) // 2}] (pixels: at most half the side of the "
                f"{input_size[0]}x{input_size[1]} images)",
                self.random_shift,
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SweepError(
                f"unknown trial setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)


# --------------------------------------------------------------------------------------------------
# Search spaces: what is fixed, what is searched, what is minimised (read from YAML by sweep.space_file).

OBJECTIVE_NAMES = ("top1_error", "neurons", "params", "flops", "latency_ms")
DEFAULT_OBJECTIVES = ("top1_error", "neurons")
# Settings that depend on the machine, not on the study: left out of a study's fingerprint. A precision
# says how a trial computes (auto differs by machine); each trial records the one it ran with.
MACHINE_KEYS = ("data_dir", "device", "num_workers", "precision")
# Settings added after studies were recorded: at their default they are left out of the fingerprint, so
# such a study's fingerprint still matches.
LATER_DEFAULTS: dict[str, Any] = {
    f.name: f.default
    for f in dataclasses.fields(TrialConfig)
    if f.name in ("random_flip", "input_size", "distill", "distill_temperature", "lam_scaling")
}
# Only meaningful when a penalty is on; the unconstrained baseline does not sample them.
PENALTY_KEYS = (
    "lam",
    "alpha",
    "layers",
    "lam_scaling",
    "debias_fraction",
    "warmup_epochs",
    "distill",
    "distill_temperature",
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
        for key in self.search:
            if key not in params and key not in (*PENALTY_KEYS, "penalty") and "." not in key:
                take(key)
        return params

    def baseline(self) -> dict[str, Any]:
        """Settings of the unconstrained baseline trial: penalty none, the other searched settings
        (learning rate, ...) at their fixed values where those lie in the searched range. The study
        enqueues it once, marked as the baseline (``sweep.study.enqueue_missing``)."""
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
            values.update(lam=0.0, layers=None, layer_scales={}, lam_scaling="uniform")
            if values.get("init") == INIT_BASELINE:  # it is what the others start from: trained afresh
                values.update(init=None, distill=0.0)
                if budget is not None and self.budget(budget).baseline_epochs:
                    values.update(epochs=self.budget(budget).baseline_epochs, debias_epochs=0)
        if fraction is not None:
            epochs = int(values.get("epochs", TrialConfig.epochs))
            values["debias_epochs"] = max(0, min(round(fraction * epochs), epochs - 1))
        from sweep import data  # here, not at the top: it imports torch

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
