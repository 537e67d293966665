"""Typed configuration: one trial (``TrialConfig``), and the search spaces that produce trials."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from sweep.errors import SweepError

if TYPE_CHECKING:
    import optuna

PENALTY_NAMES = ("none", "l1", "group_lasso", "sparse_group_lasso", "nuclear")
LR_POLICIES = ("constant", "inv", "multistep", "cosine")


@dataclass
class TrialConfig:
    """Everything one training run needs. Plain values only, so it travels through Ray and JSON."""

    model: str
    dataset: str | None = None  # None: the model's own dataset
    data_dir: str | None = None
    subset: int | None = None
    holdout: int | None = None  # held-out images taken from train for trial selection; None: dataset default
    penalty: str = "group_lasso"
    lam: float = 1e-3
    alpha: float = 0.5  # l1 share of sparse_group_lasso
    layers: list[str] | None = None  # constrained layers; None: every layer that can lose units
    layer_scales: dict[str, float] = field(default_factory=dict)  # per-layer multiplier on lam
    epochs: int = 10
    debias_epochs: int = 0  # last epochs: penalty off, dead neurons held at zero by a mask
    debias_restart: bool = True  # the debias phase starts the learning-rate schedule again
    warmup_epochs: float = 0.0  # lam ramps linearly from 0 over these epochs
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_policy: str = "constant"
    lr_gamma: float = 1e-4  # inv: lr * (1 + gamma * iter) ** -power; multistep: factor per milestone
    lr_power: float = 0.75
    lr_milestones: list[int] = field(default_factory=list)  # multistep: epochs at which lr *= gamma
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    eval_test: bool = True  # also measure top-1 error on the test split at the end

    def validate(self) -> TrialConfig:
        def bad(key: str, allowed: str, got: Any) -> SweepError:
            return SweepError(f"{key} must be {allowed}, got {got!r}")

        if self.penalty not in PENALTY_NAMES:
            raise bad("penalty", f"one of {', '.join(PENALTY_NAMES)}", self.penalty)
        if not self.lam >= 0:
            raise bad("lam", "a number >= 0", self.lam)
        if not 0.0 <= self.alpha <= 1.0:
            raise bad("alpha", "in [0, 1]", self.alpha)
        if self.epochs < 1:
            raise bad("epochs", "at least 1", self.epochs)
        if not 0 <= self.debias_epochs < self.epochs:
            raise bad("debias_epochs", f"in [0, epochs={self.epochs})", self.debias_epochs)
        if self.warmup_epochs < 0:
            raise bad("warmup_epochs", ">= 0", self.warmup_epochs)
        if self.batch_size < 1:
            raise bad("batch_size", "at least 1", self.batch_size)
        if not self.lr > 0:
            raise bad("lr", "> 0", self.lr)
        if self.lr_policy not in LR_POLICIES:
            raise bad("lr_policy", f"one of {', '.join(LR_POLICIES)}", self.lr_policy)
        if self.subset is not None and self.subset < 1:
            raise bad("subset", "at least 1", self.subset)
        for name, scale in self.layer_scales.items():
            if not scale >= 0:
                raise bad(f"layer_scales.{name}", ">= 0", scale)
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
# Search spaces: search_spaces/<model>.yaml, loaded into typed dataclasses and validated.

OBJECTIVE_NAMES = ("top1_error", "neurons", "params", "flops", "latency_ms")
DEFAULT_OBJECTIVES = ("top1_error", "neurons")
SPACE_KEYS = ("model", "dataset", "objectives", "fixed", "search", "budgets")
BUDGET_KEYS = ("trials", "epochs", "subset", "overrides")
# Trial settings a space may not fix: they come from the top of the file, the budget or the command line.
NOT_FIXABLE = ("model", "dataset", "data_dir", "subset", "epochs", "seed", "device")
# Settings that depend on the machine, not on the study: left out of a study's fingerprint.
MACHINE_KEYS = ("data_dir", "device", "num_workers")
# Searchable settings: kind of value and the closed range [min, max] a distribution must lie in
# (None: unbounded). "layer_sets" and "layer_scales" are special forms, see ``_parse_search``.
SEARCH_KEYS: dict[str, tuple[str, float | None, float | None]] = {
    "penalty": ("str", None, None),
    "lam": ("float", 0.0, None),
    "alpha": ("float", 0.0, 1.0),
    "debias_fraction": ("float", 0.0, 1.0),
    "warmup_epochs": ("float", 0.0, None),
    "layers": ("layer_sets", None, None),
    "layer_scales": ("layer_scales", 0.0, None),
    "lr": ("float", 0.0, None),
    "momentum": ("float", 0.0, 1.0),
    "weight_decay": ("float", 0.0, None),
    "lr_gamma": ("float", 0.0, None),
    "lr_power": ("float", 0.0, None),
    "batch_size": ("int", 1.0, None),
}
# Only meaningful when a penalty is on; the unconstrained baseline does not sample them.
PENALTY_KEYS = ("lam", "alpha", "layers", "debias_fraction", "warmup_epochs")
DIST_KEYS = ("low", "high", "log", "step", "choices")
DEFAULT_SPACE_DIRS = (Path.cwd() / "search_spaces", Path(__file__).resolve().parent.parent / "search_spaces")


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
    """How much one sweep spends: trials, epochs per trial, training subset, and fixed settings it changes."""

    name: str
    trials: int
    epochs: int
    subset: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


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

    def budget(self, name: str | Budget) -> Budget:
        if isinstance(name, Budget):
            return name
        if name not in self.budgets:
            raise SweepError(
                f"unknown budget {name!r} in {self.path or self.model}; known: {', '.join(self.budgets)}"
            )
        return self.budgets[name]

    def _penalty_of(self, params: dict[str, Any]) -> str:
        return params.get("penalty", self.fixed.get("penalty", TrialConfig.penalty))

    def suggest(self, trial: optuna.Trial, only: Collection[str] | None = None) -> dict[str, Any]:
        """Define-by-run: ask ``trial`` for every setting that applies to it. Settings that only matter
        with a penalty (lambda, alpha, layers, their scales, debias, warm-up) are not sampled for the
        unconstrained baseline; alpha only for sparse_group_lasso; a layer's scale only if it is
        constrained. ``only`` restricts sampling to those keys (grid search)."""
        params: dict[str, Any] = {}

        def take(key: str) -> None:
            if key in self.search and (only is None or key in only):
                params[key] = self.search[key].suggest(trial, key)

        take("penalty")
        penalty = self._penalty_of(params)
        if penalty != "none":
            take("lam")
            if penalty == "sparse_group_lasso":
                take("alpha")
            take("layers")
            layers = self.search["layers"].resolve(params["layers"]) if "layers" in params else None
            if layers is None:
                layers = self.fixed.get("layers")
            for key in self.search:
                if key.startswith("layer_scales.") and (layers is None or key.split(".", 1)[1] in layers):
                    take(key)
            take("debias_fraction")
            take("warmup_epochs")
        for key in self.search:
            if key not in params and key not in (*PENALTY_KEYS, "penalty") and "." not in key:
                take(key)
        return params

    def baseline(self) -> dict[str, Any]:
        """Parameters of the unconstrained baseline trial: penalty none, the other searched settings
        (learning rate, ...) at their fixed values where those lie in the searched range."""
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
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
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
            values.update(lam=0.0, layers=None, layer_scales={})
        if fraction is not None:
            epochs = int(values.get("epochs", TrialConfig.epochs))
            values["debias_epochs"] = max(0, min(round(fraction * epochs), epochs - 1))
        return TrialConfig.from_dict(values).validate()

    def fingerprint(
        self, budget: str | Budget | None = None, overrides: dict[str, Any] | None = None
    ) -> dict:
        """What defines a study: model, dataset, objectives, distributions and the resolved trial settings
        (fixed + budget + overrides), without machine-specific ones (data_dir, device, workers)."""
        trial = self.trial_config({}, budget, overrides).to_dict()
        for key in MACHINE_KEYS:
            trial.pop(key, None)
        return {
            "model": self.model,
            "dataset": trial["dataset"],
            "objectives": list(self.objectives),
            "search": {key: dist.to_dict() for key, dist in self.search.items()},
            "trial": trial,
        }


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


def space_path(model: str) -> Path:
    """search_spaces/MODEL.yaml in the working directory, else the one shipped beside the package."""
    for folder in DEFAULT_SPACE_DIRS:
        candidate = folder / f"{model}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in DEFAULT_SPACE_DIRS if d.is_dir() for p in d.glob("*.yaml")})
    raise SweepError(
        f"no search space for model {model!r} (looked for search_spaces/{model}.yaml); "
        f"known: {', '.join(known) or 'none'}; or pass --space FILE"
    )


def load_space(model: str, path: str | None = None) -> SearchSpace:
    """Load and validate a search space; every problem is a SweepError naming the file and key path."""
    file = Path(path) if path else space_path(model)
    shown = str(file)
    try:
        text = file.read_text()
    except OSError as err:
        raise SweepError(f"cannot read search space {shown}: {err.strerror or err}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SweepError(f"{shown}{line}: malformed YAML: {problem}") from None
    space = _SpaceParser(shown).parse(data)
    if space.model != model:
        raise SweepError(f"{shown}: model: this space is for {space.model!r}, not {model!r}")
    return space


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _SpaceParser:
    """Turns the YAML document into a SearchSpace, raising on the first problem with its key path."""

    def __init__(self, shown: str) -> None:
        self.shown = shown

    def fail(self, where: str, message: str) -> SweepError:
        return SweepError(f"{self.shown}: {where}: {message}")

    def mapping(self, value: Any, where: str, allowed: Collection[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a mapping, got {type(value).__name__} {value!r}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(where, f"keys must be strings, got {key!r}")
            if allowed is not None and key not in allowed:
                raise self.fail(
                    f"{where}.{key}" if where else key, f"unknown key; allowed: {', '.join(allowed)}"
                )
        return value

    def number(self, value: Any, where: str, integer: bool = False) -> float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(where, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
        if integer and value != int(value):
            raise self.fail(where, f"must be an integer, got {value!r}")
        return int(value) if integer else float(value)

    def parse(self, data: Any) -> SearchSpace:
        from sweep import data as datasets
        from sweep import models

        doc = self.mapping(data, "top level", SPACE_KEYS)
        for key in ("model", "search"):
            if key not in doc:
                raise self.fail(key, "missing; a search space needs model and search")
        model = doc["model"]
        if model not in models.names():
            raise self.fail("model", f"unknown model {model!r}; known: {', '.join(models.names())}")
        dataset = doc.get("dataset", models.default_dataset(model))
        if dataset not in datasets.names():
            raise self.fail("dataset", f"unknown dataset {dataset!r}; known: {', '.join(datasets.names())}")
        self.unit_layers = _unit_layers(model)
        objectives = self.objectives(doc.get("objectives", list(DEFAULT_OBJECTIVES)))
        fixed = self.fixed(doc.get("fixed") or {}, "fixed")
        search = self.search(doc["search"])
        budgets = self.budgets(doc.get("budgets") or {})
        space = SearchSpace(model, dataset, fixed, search, objectives, budgets, self.shown)
        for where, budget in [("fixed", None), *((f"budgets.{name}", name) for name in budgets)]:
            try:
                space.trial_config({}, budget)
            except SweepError as err:
                raise self.fail(where, str(err)) from None
        return space

    def objectives(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail("objectives", f"must be a non-empty list of: {', '.join(OBJECTIVE_NAMES)}")
        for i, name in enumerate(value):
            if name not in OBJECTIVE_NAMES:
                raise self.fail(
                    f"objectives[{i}]", f"unknown objective {name!r}; allowed: {', '.join(OBJECTIVE_NAMES)}"
                )
        if len(set(value)) != len(value):
            raise self.fail("objectives", f"each objective at most once, got {value}")
        return tuple(value)

    def fixed(self, value: Any, where: str) -> dict[str, Any]:
        fields = {f.name for f in dataclasses.fields(TrialConfig)} - set(NOT_FIXABLE)
        values = self.mapping(value, where, sorted(fields))
        hints = typing.get_type_hints(TrialConfig)
        out: dict[str, Any] = {}
        for key, item in values.items():
            out[key] = self.typed(item, hints[key], f"{where}.{key}")
        for layer in out.get("layers") or []:
            self.layer(layer, f"{where}.layers")
        for layer in out.get("layer_scales") or {}:
            self.layer(layer, f"{where}.layer_scales")
        return out

    def typed(self, value: Any, hint: Any, where: str) -> Any:
        """Check ``value`` against a TrialConfig field's type hint (int, float, str, bool, optionals,
        list[...] and dict[str, ...])."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            (inner,) = [a for a in args if a is not type(None)]
            return self.typed(value, inner, where)
        if origin is list:
            if not isinstance(value, list):
                raise self.fail(where, f"must be a list, got {value!r}")
            return [self.typed(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        if origin is dict:
            items = self.mapping(value, where)
            return {k: self.typed(v, args[1], f"{where}.{k}") for k, v in items.items()}
        if hint is bool:
            if not isinstance(value, bool):
                raise self.fail(where, f"must be true or false, got {value!r}")
            return value
        if hint in (int, float):
            return self.number(value, where, integer=hint is int)
        if hint is str:
            if not isinstance(value, str):
                raise self.fail(where, f"must be a string, got {value!r}")
            return value
        raise self.fail(where, f"cannot be set in a search space (type {hint})")

    def layer(self, name: Any, where: str) -> str:
        if name not in self.unit_layers:
            raise self.fail(
                where, f"unknown layer {name!r}; layers that can lose units: {', '.join(self.unit_layers)}"
            )
        return name

    def search(self, value: Any) -> dict[str, Distribution]:
        spec = self.mapping(value, "search", list(SEARCH_KEYS))
        if "penalty" not in spec:
            raise self.fail("search", "missing penalty; the unconstrained baseline 'none' is always searched")
        out: dict[str, Distribution] = {}
        for key, item in spec.items():
            kind, lo, hi = SEARCH_KEYS[key]
            where = f"search.{key}"
            if kind == "layer_scales":
                for layer, scale in self.mapping(item, where).items():
                    self.layer(layer, where)
                    out[f"layer_scales.{layer}"] = self.distribution(
                        scale, f"{where}.{layer}", "float", lo, hi
                    )
            elif kind == "layer_sets":
                out[key] = self.layer_sets(item, where)
            else:
                out[key] = self.distribution(item, where, kind, lo, hi)
        penalty = out["penalty"]
        if penalty.kind != "categorical":
            raise self.fail("search.penalty", f"must be {{choices: [...]}} over {', '.join(PENALTY_NAMES)}")
        for i, name in enumerate(penalty.choices):
            if name not in PENALTY_NAMES:
                raise self.fail(
                    f"search.penalty.choices[{i}]",
                    f"unknown penalty {name!r}; allowed: {', '.join(PENALTY_NAMES)}",
                )
        if "none" not in penalty.choices:
            raise self.fail(
                "search.penalty.choices",
                "must include 'none': the unconstrained baseline is part of every study",
            )
        return out

    def distribution(
        self, value: Any, where: str, kind: str, lo: float | None, hi: float | None
    ) -> Distribution:
        spec = self.mapping(value, where, DIST_KEYS)
        if "choices" in spec:
            if set(spec) != {"choices"}:
                raise self.fail(where, "choices cannot be combined with low/high/log/step")
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise self.fail(f"{where}.choices", f"must be a non-empty list, got {choices!r}")
            if kind == "str":
                for i, c in enumerate(choices):
                    if not isinstance(c, str):
                        raise self.fail(f"{where}.choices[{i}]", f"must be a string, got {c!r}")
            else:
                choices = [
                    self.number(c, f"{where}.choices[{i}]", kind == "int") for i, c in enumerate(choices)
                ]
                self.within([min(choices), max(choices)], where, lo, hi)
            if len(set(choices)) != len(choices):
                raise self.fail(f"{where}.choices", f"each choice at most once, got {choices}")
            return Distribution("categorical", choices=tuple(choices))
        if kind == "str":
            raise self.fail(where, "must be {choices: [...]}")
        for key in ("low", "high"):
            if key not in spec:
                raise self.fail(where, "needs low and high (and optionally log, step), or choices")
        integer = kind == "int"
        low, high = (
            self.number(spec["low"], f"{where}.low", integer),
            self.number(spec["high"], f"{where}.high", integer),
        )
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise self.fail(f"{where}.log", f"must be true or false, got {log!r}")
        step = None if spec.get("step") is None else self.number(spec["step"], f"{where}.step", integer)
        if not low < high:
            raise self.fail(where, f"empty or inverted range: low {low} must be below high {high}")
        if log and low <= 0:
            raise self.fail(f"{where}.low", f"a log range needs low > 0, got {low}")
        if step is not None and (step <= 0 or log):
            raise self.fail(f"{where}.step", "must be > 0, and cannot be combined with log")
        self.within([low, high], where, lo, hi)
        return Distribution(kind, low=low, high=high, log=log, step=step)

    def within(self, bounds: list[float], where: str, lo: float | None, hi: float | None) -> None:
        if (lo is not None and bounds[0] < lo) or (hi is not None and bounds[1] > hi):
            allowed = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            raise self.fail(where, f"range {bounds[0]}..{bounds[1]} must lie in {allowed}")

    def layer_sets(self, value: Any, where: str) -> Distribution:
        spec = self.mapping(value, where, ["choices"])
        choices = spec.get("choices")
        if not isinstance(choices, dict) or not choices:
            raise self.fail(
                f"{where}.choices", "must map set names to a list of layers (or null for all layers)"
            )
        sets: dict[str, Any] = {}
        for name, layers in self.mapping(choices, f"{where}.choices").items():
            if layers is None:
                sets[name] = None
                continue
            if not isinstance(layers, list) or not layers:
                raise self.fail(
                    f"{where}.choices.{name}", f"must be a non-empty list of layers or null, got {layers!r}"
                )
            sets[name] = [self.layer(layer, f"{where}.choices.{name}") for layer in layers]
        return Distribution("categorical", choices=tuple(sets), values=sets)

    def budgets(self, value: Any) -> dict[str, Budget]:
        out: dict[str, Budget] = {}
        for name, item in self.mapping(value, "budgets").items():
            where = f"budgets.{name}"
            spec = self.mapping(item, where, BUDGET_KEYS)
            for key in ("trials", "epochs"):
                if key not in spec:
                    raise self.fail(
                        where,
                        f"missing {key}; a budget gives trials, epochs and optionally subset, overrides",
                    )
            trials = int(self.number(spec["trials"], f"{where}.trials", integer=True))
            epochs = int(self.number(spec["epochs"], f"{where}.epochs", integer=True))
            subset = spec.get("subset")
            if subset is not None:
                subset = int(self.number(subset, f"{where}.subset", integer=True))
            for key, n in (("trials", trials), ("epochs", epochs), ("subset", subset)):
                if n is not None and n < 1:
                    raise self.fail(f"{where}.{key}", f"must be at least 1, got {n}")
            overrides = self.fixed(spec.get("overrides") or {}, f"{where}.overrides")
            out[name] = Budget(name, trials, epochs, subset, overrides)
        return out


def _unit_layers(model: str) -> tuple[str, ...]:
    """Names of a model's layers that can lose units, read off a weightless (meta-device) instance."""
    import torch

    from sweep import models

    with torch.device("meta"):
        return tuple(models.create(model).unit_layers())
