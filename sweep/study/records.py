"""Every attribute read back from a study is checked on the way in: type and range.

A study database is data: hand-edited, written by another program or by an older sweep, any attribute
may hold anything JSON can. A value that is not what DESIGN.md's contract says is dropped (the row
treats it as not recorded) and reported in one line, ``trial N: attribute X is not ... (got ...)``;
the commands go on with the rest. None always stands for "not recorded" and passes.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial

from sweep.errors import quote

Check = Callable[[Any], bool]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _at_least_0(value: Any) -> bool:
    return _number(value) and value >= 0


def _percent(value: Any) -> bool:
    return _number(value) and 0 <= value <= 100


def _count(value: Any) -> bool:
    return _at_least_0(value) and float(value).is_integer()


def _whole(value: Any) -> bool:
    return _number(value) and float(value).is_integer()


def _widths(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and _count(v) for k, v in value.items())


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _mapping(value: Any) -> bool:
    return isinstance(value, dict)


def _records(value: Any) -> bool:
    return isinstance(value, list)


AT_LEAST_0 = (_at_least_0, "a finite number >= 0")
PERCENT = (_percent, "a percentage from 0 to 100")
WIDTHS = (_widths, "a mapping of layer names to alive counts (whole numbers >= 0)")
# User attributes of a trial that sweep reads back (DESIGN.md), each with its check and what it must be.
TRIAL_CHECKS: dict[str, tuple[Check, str]] = {
    "widths": WIDTHS,
    "widths_full": WIDTHS,
    "neurons": AT_LEAST_0,
    "params": AT_LEAST_0,
    "params_full": AT_LEAST_0,
    "flops": AT_LEAST_0,
    "flops_full": AT_LEAST_0,
    "memory_mb": AT_LEAST_0,
    "latency_ms": AT_LEAST_0,
    "top1_error": PERCENT,
    "test_top1_error": PERCENT,
    "epochs": (_count, "a whole number of epochs >= 0"),
    "early_stopped": (_flag, "true or false"),
    "checkpoint": (_text, "a path or URI (text)"),
    "config": (_mapping, "a mapping of trial settings"),
    "dataset": (_text, "a dataset name (text)"),
    "seed": (_whole, "a whole number"),
    "versions": (_mapping, "a mapping of package versions"),
    "fail_reason": (_text, "text"),
    "empty_layers": (_names, "a list of layer names"),
    "history": (_records, "a list of per-epoch records"),
    "sweep_baseline": (_flag, "true or false"),
}
# Settings of a trial's recorded ``config`` that the commands read, and its searched parameters.
CONFIG_CHECKS: dict[str, tuple[Check, str]] = {
    "model": (_text, "a model name (text)"),
    "dataset": (_text, "a dataset name (text)"),
    "penalty": (_text, "a penalty name (text)"),
    "lam": AT_LEAST_0,
    "alpha": AT_LEAST_0,
    "epochs": (_count, "a whole number of epochs >= 0"),
}
PARAM_CHECKS: dict[str, tuple[Check, str]] = {
    "penalty": (_text, "a penalty name (text)"),
    "lam": AT_LEAST_0,
    "alpha": AT_LEAST_0,
}
# Objective values: the error is a percentage, every size a number >= 0.
VALUE_CHECKS: dict[str, tuple[Check, str]] = {
    "top1_error": PERCENT,
    "test_top1_error": PERCENT,
    "neurons": AT_LEAST_0,
    "params": AT_LEAST_0,
    "flops": AT_LEAST_0,
    "latency_ms": AT_LEAST_0,
    "memory_mb": AT_LEAST_0,
}


def print_warning(line: str) -> None:
    """One warning line on stderr (the commands go on)."""
    print(f"sweep: warning: {line}", file=sys.stderr, flush=True)


def _checked(
    where: str, what: str, given: dict[str, Any], checks: dict[str, tuple[Check, str]], problems: list[str]
) -> dict[str, Any]:
    """``given`` without the entries that fail their check; one problem line for each of those."""
    out = {}
    for key, value in given.items():
        check = checks.get(key)
        if value is not None and check is not None and not check[0](value):
            problems.append(f"{where}: {what}{key} is not {check[1]} (got {quote(value, 60)})")
            continue
        out[key] = value
    return out


@dataclass
class CheckedTrial:
    """A trial's user attributes, parameters and objective values with every bad entry left out."""

    attrs: dict[str, Any]
    params: dict[str, Any]
    values: dict[str, float]
    problems: list[str] = field(default_factory=list)


def check_trial(
    trial: FrozenTrial, objectives: Sequence[str], params: dict[str, Any] | None = None
) -> CheckedTrial:
    """Check ``trial``'s user attributes (and the ``config`` inside them), its parameters (``params``, by
    default ``trial.params``) and its objective values named ``objectives``."""
    problems: list[str] = []
    where = f"trial {trial.number}"
    attrs = _checked(where, "attribute ", dict(trial.user_attrs), TRIAL_CHECKS, problems)
    if isinstance(attrs.get("config"), dict):
        attrs["config"] = _checked(where, "attribute config.", attrs["config"], CONFIG_CHECKS, problems)
    history = attrs.get("history")
    if isinstance(history, list) and not all(isinstance(entry, dict) for entry in history):
        bad = next(entry for entry in history if not isinstance(entry, dict))
        problems.append(
            f"{where}: attribute history is not a list of per-epoch records: an entry is {quote(bad, 60)}"
        )
        attrs["history"] = [entry for entry in history if isinstance(entry, dict)]
    checked_params = _checked(
        where, "parameter ", dict(trial.params if params is None else params), PARAM_CHECKS, problems
    )
    given = dict(zip(objectives, trial.values or [], strict=False))
    values = _checked(where, "objective ", given, VALUE_CHECKS, problems)
    return CheckedTrial(attrs, checked_params, values, problems)


def check_objectives(
    user_attrs: dict[str, Any], metric_names: Sequence[str] | None, directions: int, default: Sequence[str]
) -> tuple[list[str], list[str]]:
    """A study's objective names in value order, and a problem line when its ``objectives`` attribute is
    not a list of ``directions`` names. Falls back to Optuna's metric names, then to ``default``."""
    problems: list[str] = []
    names = user_attrs.get("objectives")
    if names is not None and not (_names(names) and len(names) == directions):
        problems.append(
            f"study attribute objectives is not a list of {directions} objective names (got {quote(names, 60)})"
        )
        names = None
    if not names and metric_names and len(metric_names) == directions:
        names = list(metric_names)
    return (list(names) if names else list(default)), problems


def study_text(user_attrs: dict[str, Any], key: str, problems: list[str]) -> str | None:
    """A study-level text attribute (``model``, ``dataset``), None (with a problem line) when it is not text."""
    value = user_attrs.get(key)
    if value is None or isinstance(value, str):
        return value
    problems.append(f"study attribute {key} is not text (got {quote(value, 60)})")
    return None
