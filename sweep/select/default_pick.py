"""Export's default pick, computed once for ``sweep export``, ``sweep pareto`` and the dashboard.

The study's baseline (penalty none, the lowest held-out error of them) plus ``DEFAULT_MAX_INCREASE``
points (export's ``--max-increase``) makes a band; the pick is the smallest network (by neurons, ties:
lower error) that removes something and lies in it. When none does, there is no pick and ``reason`` says
why in one line: export refuses then instead of writing the unpruned network."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sweep.select.text import format_number

TrialRow = Any  # sweep.select.picks.TrialRow (not imported: picks imports this module)

DEFAULT_MAX_INCREASE = 1.0  # points of held-out top-1 error over the study's baseline that export accepts
SIZE_COLUMNS = ("neurons", "params", "flops")


def removes_something(row: TrialRow) -> bool:
    """The trial's network is smaller than the unpruned one in some recorded size; when no full size is
    recorded, any trial but a baseline counts."""
    known = False
    for column in SIZE_COLUMNS:
        full, size = row.full_size(column), getattr(row, column)
        if full is not None and size is not None:
            known = True
            if size < full:
                return True
    return not known and not row.is_baseline


@dataclass(frozen=True)
class DefaultPick:
    """Export's default pick: the baseline it measures from, the band's top and the pick (or why none)."""

    increase: float
    baseline: TrialRow | None = None
    chosen: TrialRow | None = None
    reason: str = ""  # one line, when chosen is None

    @property
    def limit(self) -> float | None:
        """The band's top: the baseline's held-out error plus ``increase`` (None without a baseline)."""
        if self.baseline is None or self.baseline.top1_error is None:
            return None
        return self.baseline.top1_error + self.increase

    def describe(self) -> str:
        """One line: the pick and its band, or why there is none."""
        if self.chosen is None:
            return self.reason
        b, c = self.baseline, self.chosen
        assert b is not None and b.top1_error is not None and c.top1_error is not None
        return (
            f"the smallest network within {self.increase:g} point(s) of the baseline (trial {b.number}, "
            f"{b.top1_error:.2f}% held-out error): trial {c.number}, {c.top1_error:.2f}%, "
            f"{format_number(c.neurons)} neurons"
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready: pick and baseline trial numbers, the band, the reason when there is no pick."""
        return {
            "pick": None if self.chosen is None else self.chosen.number,
            "baseline": None if self.baseline is None else self.baseline.number,
            "baseline_error": None if self.baseline is None else self.baseline.top1_error,
            "max_increase": self.increase,
            "band_top": self.limit,
            "reason": self.reason or None,
        }


def default_pick(
    rows: Sequence[TrialRow], max_increase: float | None = None, allow_early_stopped: bool = False
) -> DefaultPick:
    """Export's default pick among ``rows`` (any states: the complete, fully trained ones are used)."""
    increase = DEFAULT_MAX_INCREASE if max_increase is None else max_increase
    candidates = [r for r in rows if r.selected(allow_early_stopped)]
    baselines = [r for r in candidates if r.is_baseline and r.top1_error is not None]
    if not baselines:
        return DefaultPick(
            increase,
            reason="no complete baseline trial (penalty none) to measure --max-increase against",
        )
    baseline = min(baselines, key=lambda r: (r.top1_error, r.number))
    limit = float(baseline.top1_error) + increase  # type: ignore[arg-type]
    compact = [
        r for r in candidates if removes_something(r) and not r.has_empty_layer and r.top1_error is not None
    ]
    inside = [r for r in compact if r.top1_error is not None and r.top1_error <= limit]
    if inside:
        # the smallest (ties: lower error), as ``pick(max_error=limit)`` takes it, by neurons when recorded
        size = next((c for c in SIZE_COLUMNS if any(getattr(r, c) is not None for r in inside)), None)

        def key(r: TrialRow) -> tuple[float, float, int]:
            value = getattr(r, size) if size else None
            return (math.inf if value is None else float(value), float(r.top1_error), r.number)

        return DefaultPick(increase, baseline, min(inside, key=key))
    nearest = min(compact, key=lambda r: (r.top1_error, r.number), default=None)
    closest = (
        f"; the closest is trial {nearest.number} at {nearest.top1_error:.2f}%"
        if nearest is not None and nearest.top1_error is not None
        else "; no complete trial removes anything"
    )
    return DefaultPick(
        increase,
        baseline,
        reason=(
            f"no trial that removes anything lies within {increase:g} point(s) of the baseline (trial "
            f"{baseline.number}, {baseline.top1_error:.2f}% held-out error, so at most {limit:.2f}%)"
            f"{closest}"
        ),
    )
