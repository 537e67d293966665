"""A model's search space (``search_spaces/<model>.yaml`` here, else the one shipped in
``sweep/space/shipped/``): finding the file, and parsing and validating it into a ``SearchSpace``.

Every problem is one SweepError naming the file and the key path, with what is allowed."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import types
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any

from sweep.config import (
    DEFAULT_OBJECTIVES,
    FIELD_RANGES,
    IMPORTANCES,
    LAM_SCALINGS,
    METHODS,
    OBJECTIVE_NAMES,
    PENALTY_NAMES,
    SCOPES,
    Range,
    TrialConfig,
)
from sweep.errors import QUOTE_LIMIT, SweepError, quote
from sweep.space.checks import unit_layers
from sweep.space.safe_yaml import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, load_text, read_document
from sweep.space.types import Budget, Distribution, SearchSpace

# re-exported: the limits a hostile file meets, and the layer names a model's network has
__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "load_space", "space_path", "unit_layers"]

PENALTIES = tuple(name for name in PENALTY_NAMES if name != "none")  # those a trial samples

SPACE_KEYS = ("model", "dataset", "data_dir", "objectives", "fixed", "search", "start", "budgets")
BUDGET_KEYS = ("trials", "epochs", "subset", "overrides", "search", "start", "baseline_epochs")
# Trial settings a space may not fix: they come from the top of the file, the budget or the command line.
NOT_FIXABLE = ("model", "dataset", "data_dir", "subset", "epochs", "seed", "device")
# Searchable settings and the kind of value each takes ("layers" and "layer_scales" are special forms,
# see ``_SpaceParser.search``); a distribution must lie inside the setting's ``RANGES`` entry, the rule a
# fixed value of it meets too (``TrialConfig.validate``).
SEARCH_KEYS: dict[str, str] = {
    "penalty": "str",
    "lam": "float",
    "alpha": "float",
    "debias_fraction": "float",
    "warmup_epochs": "float",
    "distill": "float",
    "distill_temperature": "float",
    "layers": "layer_sets",
    "layer_scales": "layer_scales",
    "lam_scaling": "str",
    "lr": "float",
    "momentum": "float",
    "weight_decay": "float",
    "lr_gamma": "float",
    "lr_power": "float",
    "batch_size": "int",
    "input_size": "int",
    "method": "str",  # magnitude pruning's settings (sweep.sparsity.magnitude)
    "prune_ratio": "float",
    "importance": "str",
    "scope": "str",
    "flops_target": "float",
    "rewind": "flag",
    "prune_steps": "int",
}
RANGES: dict[str, Range] = {**FIELD_RANGES, "debias_fraction": Range("float", 0.0, 1.0)}
DIST_KEYS = ("low", "high", "log", "step", "choices")
SHIPPED_SPACES = Path(__file__).resolve().parent / "shipped"  # package data: found from any folder
DEFAULT_SPACE_DIRS = (Path.cwd() / "search_spaces", SHIPPED_SPACES)


def space_path(model: str) -> Path:
    """search_spaces/MODEL.yaml in the working directory, else the one shipped inside the package."""
    for folder in DEFAULT_SPACE_DIRS:
        candidate = folder / f"{model}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in DEFAULT_SPACE_DIRS if d.is_dir() for p in d.glob("*.yaml")})
    raise SweepError(
        f"no search space for model {quote(model)} (looked for search_spaces/{model}.yaml here and among the shipped spaces); "
        f"known: {', '.join(known) or 'none'}; or pass --space FILE"
    )


def load_space(model: str, path: str | None = None, dataset: str | None = None) -> SearchSpace:
    """Load and validate a search space; every problem is a SweepError naming the file and key path.
    ``dataset`` (--dataset): for a model from outside the package, which has none; without a file such a
    model gets ``sweep.space.default``'s space."""
    from sweep import models
    from sweep.models import external

    has_file = ":" not in model and any((d / f"{model}.yaml").is_file() for d in DEFAULT_SPACE_DIRS)
    if not path and models.is_external(model) and not has_file:
        from sweep.space import default as space_default

        model = models.check(model)  # a bad reference is its own line, not one about our text
        data = load_text(space_default.document(model), space_default.SHOWN)
        return _SpaceParser(space_default.SHOWN, dataset).parse(data)
    file = Path(path) if path else space_path(model)
    shown = str(file)
    data = read_document(file)
    space = _SpaceParser(shown, dataset).parse(data)
    if models.is_external(model):
        model = external.canonical(model)
    if space.model != model:
        raise SweepError(f"{shown}: model: this space is for {quote(space.model)}, not {quote(model)}")
    return space


class _SpaceParser:
    """Turns the YAML document into a SearchSpace, raising on the first problem with its key path."""

    def __init__(self, shown: str, dataset: str | None = None) -> None:
        self.shown = shown
        self.dataset = dataset  # for a space that names none, when its model has none of its own

    def fail(self, where: str, message: str) -> SweepError:
        if len(where) > 2 * QUOTE_LIMIT:  # key paths name the file's own keys, which may be long
            where = where[: 2 * QUOTE_LIMIT] + "..."
        return SweepError(f"{self.shown}: {where}: {message}")

    def mapping(self, value: Any, where: str, allowed: Collection[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a mapping, got {type(value).__name__} {quote(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(where, f"keys must be strings, got {quote(key)}")
            if allowed is not None and key not in allowed:
                raise self.fail(
                    f"{where}.{key}" if where else key, f"unknown key; allowed: {', '.join(allowed)}"
                )
        return value

    def number(self, value: Any, where: str, integer: bool = False) -> float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        kind = "an integer" if integer else "a number"
        if isinstance(value, int) and not isinstance(value, bool):
            if not integer and abs(value) > sys.float_info.max:
                raise self.fail(
                    where, f"must be a number no larger than {sys.float_info.max:g}, got {quote(value)}"
                )
            return value if integer else float(value)
        if not isinstance(value, float) or not math.isfinite(value):
            raise self.fail(where, f"must be {kind}, got {quote(value)}")
        if integer and value != int(value):
            raise self.fail(where, f"must be an integer, got {quote(value)}")
        return int(value) if integer else value

    def parse(self, data: Any) -> SearchSpace:
        from sweep import models
        from sweep.data import datasets

        doc = self.mapping(data, "top level", SPACE_KEYS)
        for key in ("model", "search"):
            if key not in doc:
                raise self.fail(key, "missing; a search space needs model and search")
        try:
            model = models.check(doc["model"])
        except SweepError as err:
            raise self.fail("model", str(err)) from None
        outside = models.is_external(model)  # an entry point or a reference: no dataset of its own
        if "dataset" in doc:
            dataset = doc["dataset"]
        else:
            dataset = self.dataset if outside and self.dataset else models.default_dataset(model)
        if dataset not in datasets.names():
            raise self.fail(
                "dataset", f"unknown dataset {quote(dataset)}; known: {', '.join(datasets.names())}"
            )
        self.unit_layers = self.network_layers(model, dataset, doc.get("fixed"))
        objectives = self.objectives(doc.get("objectives", list(DEFAULT_OBJECTIVES)))
        fixed = self.fixed(doc.get("fixed") or {}, "fixed")
        if "data_dir" in doc:
            fixed["data_dir"] = self.data_dir(doc["data_dir"])
        search = self.search(doc["search"])
        budgets = self.budgets(doc.get("budgets") or {}, search)
        start = self.start(doc.get("start") or [], search)
        space = SearchSpace(model, dataset, fixed, search, objectives, budgets, self.shown, start)
        for where, budget in [("fixed", None), *((f"budgets.{name}", name) for name in budgets)]:
            try:
                space.trial_config({}, budget)
            except SweepError as err:
                raise self.fail(where, str(err)) from None
        return space

    def network_layers(self, model: str, dataset: str, fixed: Any) -> tuple[str, ...]:
        """The layers that can lose units in the network ``model`` builds for ``dataset``'s images (at the
        side ``fixed.input_size`` gives, when it is a plain number): what this space's layer names are
        checked against here; ``sweep run`` checks them again against the network of its own dataset
        and image sides (``sweep.space.checks.check_on_data``)."""
        from sweep import models

        side = fixed.get("input_size") if isinstance(fixed, dict) else None
        if not isinstance(side, int) or isinstance(side, bool) or not RANGES["input_size"].contains(side):
            side = None
        if models.is_external(model):
            return unit_layers(model, dataset, side)
        try:
            return unit_layers(model, dataset, side)
        except SweepError as err:
            raise self.fail("dataset", f"{dataset}: {err}") from None

    def start(
        self,
        value: Any,
        search: dict[str, Distribution],
        at: str = "start",
        given_at: dict[str, str] | None = None,
    ) -> tuple[dict[str, Any], ...]:
        """Points every new study tries first (Optuna's enqueue_trial): each names searched settings
        (``layer_scales`` as a mapping, like in ``search``) at values inside their distributions
        (``given_at``: where a setting's distribution is given when not in ``search``, for messages)."""
        if not isinstance(value, list):
            raise self.fail(at, "must be a list of points, each a mapping of searched settings")
        points = []
        for i, item in enumerate(value):
            where = f"{at}[{i}]"
            point: dict[str, Any] = {}
            for key, raw in self.mapping(item, where).items():
                nested = self.mapping(raw, f"{where}.{key}") if key == "layer_scales" else {None: raw}
                for layer, v in nested.items():
                    flat = key if layer is None else f"{key}.{layer}"
                    dist = search.get(flat)
                    if dist is None:
                        raise self.fail(f"{where}.{flat}", f"not searched; searched: {', '.join(search)}")
                    if dist.kind in ("float", "int"):  # YAML 1.1 reads 1e-4 as a string
                        v = self.number(v, f"{where}.{flat}", dist.kind == "int")
                    if key == "penalty" and v == "none":
                        raise self.fail(f"{where}.{flat}", "must be a penalty other than none")
                    if not dist.contains(v):
                        allowed = "one of the choices" if dist.kind == "categorical" else "inside its range"
                        raise self.fail(
                            f"{where}.{flat}",
                            f"{quote(v)} must be {allowed} in {(given_at or {}).get(flat, 'search')}.{key}",
                        )
                    point[flat] = v
            if "penalty" not in point:
                raise self.fail(where, "must name its penalty")
            points.append(point)
        return tuple(points)

    def data_dir(self, value: Any) -> str:
        """The top-level ``data_dir``: a folder (``~`` expanded; a relative one is taken from the file's
        own folder), made absolute because trials run in other folders. Its contents are checked when
        the data is read."""
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            raise self.fail("data_dir", f"must be a folder path, got {quote(value)}")
        path = Path(value).expanduser()
        if not path.is_absolute():
            here = Path(self.shown).parent
            path = (here if here.is_dir() else Path.cwd()) / path
        return str(path.resolve())

    def objectives(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail("objectives", f"must be a non-empty list of: {', '.join(OBJECTIVE_NAMES)}")
        for i, name in enumerate(value):
            if name not in OBJECTIVE_NAMES:
                raise self.fail(
                    f"objectives[{i}]",
                    f"unknown objective {quote(name)}; allowed: {', '.join(OBJECTIVE_NAMES)}",
                )
        if len(set(value)) != len(value):
            raise self.fail("objectives", f"each objective at most once, got {quote(value)}")
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
                raise self.fail(where, f"must be a list, got {quote(value)}")
            return [self.typed(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        if origin is dict:
            items = self.mapping(value, where)
            return {k: self.typed(v, args[1], f"{where}.{k}") for k, v in items.items()}
        if hint is bool:
            if not isinstance(value, bool):
                raise self.fail(where, f"must be true or false, got {quote(value)}")
            return value
        if hint in (int, float):
            return self.number(value, where, integer=hint is int)
        if hint is str:
            if not isinstance(value, str):
                raise self.fail(where, f"must be a string, got {quote(value)}")
            return value
        raise self.fail(where, f"cannot be set in a search space (type {hint})")

    def layer(self, name: Any, where: str) -> str:
        if name not in self.unit_layers:
            raise self.fail(
                where,
                f"unknown layer {quote(name)}; layers that can lose units: {', '.join(self.unit_layers)}",
            )
        return name

    def search(self, value: Any, at: str = "search") -> dict[str, Distribution]:
        spec = self.mapping(value, at, list(SEARCH_KEYS))
        if "penalty" not in spec:
            raise self.fail("search", f"missing penalty; give {{choices: [...]}} over {', '.join(PENALTIES)}")
        out: dict[str, Distribution] = {}
        for key, item in spec.items():
            kind, rule = SEARCH_KEYS[key], RANGES.get(key)
            where = f"{at}.{key}"
            if kind == "layer_scales":
                for layer, scale in self.mapping(item, where).items():
                    self.layer(layer, where)
                    out[f"layer_scales.{layer}"] = self.distribution(scale, f"{where}.{layer}", "float", rule)
            elif kind == "layer_sets":
                out[key] = self.layer_sets(item, where)
            else:
                out[key] = self.distribution(item, where, kind, rule)
        names = {"lam_scaling": LAM_SCALINGS, "method": METHODS, "importance": IMPORTANCES, "scope": SCOPES}
        for key, allowed in names.items():
            for i, name in enumerate(out[key].choices if key in out else ()):
                if name not in allowed:
                    label = "lambda scaling" if key == "lam_scaling" else key
                    raise self.fail(
                        f"{at}.{key}.choices[{i}]",
                        f"unknown {label} {quote(name)}; allowed: {', '.join(allowed)}",
                    )
        penalty = out["penalty"]
        if penalty.kind != "categorical":
            raise self.fail("search.penalty", f"must be {{choices: [...]}} over {', '.join(PENALTY_NAMES)}")
        for i, name in enumerate(penalty.choices):
            if name not in PENALTY_NAMES:
                raise self.fail(
                    f"search.penalty.choices[{i}]",
                    f"unknown penalty {quote(name)}; allowed: {', '.join(PENALTY_NAMES)}",
                )
        # 'none' may be listed, but is never sampled: the baseline is one trial of its own per study.
        sampled = tuple(name for name in penalty.choices if name != "none")
        if not sampled:
            raise self.fail(
                "search.penalty.choices",
                f"needs a penalty besides none (the unconstrained baseline runs once in every study); "
                f"allowed: {', '.join(PENALTIES)}",
            )
        out["penalty"] = Distribution("categorical", choices=sampled)
        return out

    def distribution(self, value: Any, where: str, kind: str, rule: Range | None) -> Distribution:
        spec = self.mapping(value, where, DIST_KEYS)
        if "choices" in spec:
            if set(spec) != {"choices"}:
                raise self.fail(where, "choices cannot be combined with low/high/log/step")
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise self.fail(f"{where}.choices", f"must be a non-empty list, got {quote(choices)}")
            if kind in ("str", "flag"):
                wanted = bool if kind == "flag" else str
                for i, c in enumerate(choices):
                    if not isinstance(c, wanted):
                        what = "true or false" if kind == "flag" else "a string"
                        raise self.fail(f"{where}.choices[{i}]", f"must be {what}, got {quote(c)}")
            else:
                choices = [
                    self.number(c, f"{where}.choices[{i}]", kind == "int") for i, c in enumerate(choices)
                ]
                self.within([min(choices), max(choices)], where, rule)
            if len(set(choices)) != len(choices):
                raise self.fail(f"{where}.choices", f"each choice at most once, got {quote(choices)}")
            return Distribution("categorical", choices=tuple(choices))
        if kind in ("str", "flag"):
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
            raise self.fail(f"{where}.log", f"must be true or false, got {quote(log)}")
        step = None if spec.get("step") is None else self.number(spec["step"], f"{where}.step", integer)
        if not low < high:
            raise self.fail(where, f"empty or inverted range: low {low} must be below high {high}")
        if log and low <= 0:
            raise self.fail(f"{where}.low", f"a log range needs low > 0, got {low}")
        if step is not None and (step <= 0 or log):
            raise self.fail(f"{where}.step", "must be > 0, and cannot be combined with log")
        if step is not None and step > high - low:  # Optuna would silently sample only low
            raise self.fail(
                f"{where}.step",
                f"{step:g} is larger than the range {low:g}..{high:g}, which would leave the one value "
                f"{low:g}; give a step of at most {high - low:g}, or fix the setting",
            )
        self.within([low, high], where, rule)
        return Distribution(kind, low=low, high=high, log=log, step=step)

    def within(self, bounds: list[float], where: str, rule: Range | None) -> None:
        if rule is not None and not (rule.contains(bounds[0]) and rule.contains(bounds[1])):
            raise self.fail(where, f"range {bounds[0]}..{bounds[1]} must lie in {rule.interval()}")

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
                    f"{where}.choices.{name}",
                    f"must be a non-empty list of layers or null, got {quote(layers)}",
                )
            sets[name] = [self.layer(layer, f"{where}.choices.{name}") for layer in layers]
        return Distribution("categorical", choices=tuple(sets), values=sets)

    def budgets(self, value: Any, search: dict[str, Distribution]) -> dict[str, Budget]:
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
            baseline_epochs = spec.get("baseline_epochs")
            if baseline_epochs is not None:
                baseline_epochs = int(self.number(baseline_epochs, f"{where}.baseline_epochs", integer=True))
            for key, n in (
                ("trials", trials),
                ("epochs", epochs),
                ("subset", subset),
                ("baseline_epochs", baseline_epochs),
            ):
                if n is not None and n < 1:
                    raise self.fail(f"{where}.{key}", f"must be at least 1, got {n}")
            overrides = self.fixed(spec.get("overrides") or {}, f"{where}.overrides")
            own = self.budget_search(spec, where, search)
            start = None
            if "start" in spec:  # validated against the distributions this budget samples
                given_at = {key: f"{where}.search" for key in own}
                start = self.start(spec["start"] or [], {**search, **own}, f"{where}.start", given_at)
            out[name] = Budget(name, trials, epochs, subset, overrides, own, start, baseline_epochs)
        return out

    def budget_search(
        self, spec: dict, where: str, search: dict[str, Distribution]
    ) -> dict[str, Distribution]:
        """A budget's ``search``: new distributions for settings the space searches, or searched only under
        this budget (a fine-tuning lr below the fixed one the baseline trains at); not penalty, whose
        choices Optuna keeps for the life of a study."""
        raw = self.mapping(spec.get("search") or {}, f"{where}.search")
        if "penalty" in raw:
            raise self.fail(
                f"{where}.search.penalty", "a budget cannot change the penalties; give them in search"
            )
        out = self.search({"penalty": {"choices": list(search["penalty"].choices)}, **raw}, f"{where}.search")
        del out["penalty"]
        return out
