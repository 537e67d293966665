"""The allowed range of every numeric trial setting, and the check that names a value outside it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweep.errors import SweepError, quote

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Range:
    """Where a numeric setting may lie: [low, high] (``open_low``: low itself excluded; None: unbounded)."""

    kind: str  # "int" or "float"
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def contains(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        below = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return above and below

    def interval(self) -> str:
        low = "-inf" if self.low is None else _bound(self.low)
        high = "inf" if self.high is None else _bound(self.high)
        return f"{'(' if self.open_low else '['}{low}, {high}{')' if self.high is None or self.open_high else ']'}"

    def describe(self) -> str:
        """What a value must be, for messages: "a number >= 0", "in [0, 1]", "an integer in [1, 64]"."""
        kind = "an integer" if self.kind == "int" else "a number"
        if self.high is None and self.low is not None:
            return f"{kind} {'>' if self.open_low else '>='} {_bound(self.low)}"
        return f"{'an integer ' if self.kind == 'int' else ''}in {self.interval()}"


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# The rules for TrialConfig's numeric settings, whether fixed, searched or given on the command line
# (``sweep.space.load`` checks a searched range against the same ones). Upper bounds on counts only stop
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
    "prune_ratio": Range("float", 0.0, 1.0, open_high=True),  # a group keeps one channel at least
    "flops_target": Range("float", 0.0, 1.0, open_low=True, open_high=True),
    "prune_steps": Range("int", 1, 100_000),
}


# None: all training images, the dataset's default held-out size, the dataset's own image size
OPTIONAL = ("subset", "holdout", "input_size", "flops_target")


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
