"""The networks our Table 1 rows must hold, beyond the paper's own: each floor is a shape (fc1 width,
conv filters removed, share of parameters removed) and an error the chosen network must stay under.

For each floor, the trial is chosen among the complete trials of that shape by held-out error (ties:
fewer parameters); whether the floor is met is then read from its test error, never used to choose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sweep.select import TrialRow

TOLERANCE = 1e-9  # errors are k/n * 100 in floating point: 0.87 + 0.1 must admit 0.97


@dataclass(frozen=True)
class Floor:
    key: str  # folder name of its export
    label: str  # the table's "result" cell
    max_fc1: int | None = None
    min_params_removed: float | None = None  # percent
    convs_reduced: bool = False  # every conv layer lost at least one filter
    max_test_error: float | None = None  # percent, absolute
    max_above_baseline: float | None = None  # test points above the study's unconstrained baseline

    def has_shape(self, row: TrialRow) -> bool:
        if self.max_fc1 is not None and row.widths.get("fc1", self.max_fc1 + 1) > self.max_fc1:
            return False
        if self.min_params_removed is not None:
            if row.params is None or not row.params_full:
                return False
            if 100.0 * (1.0 - row.params / row.params_full) < self.min_params_removed:
                return False
        if self.convs_reduced:
            convs = [name for name in row.widths_full if name.startswith("conv")]
            if not convs or any(row.widths.get(n, 0) >= row.widths_full[n] for n in convs):
                return False
        return True

    def error_limit(self, baseline: TrialRow | None) -> float | None:
        """The highest test error that meets the floor (None: unknown, there is no baseline)."""
        if self.max_above_baseline is not None:
            if baseline is None or baseline.test_top1_error is None:
                return None
            return baseline.test_top1_error + self.max_above_baseline
        return self.max_test_error

    def goal(self) -> str:
        shape = []
        if self.max_fc1 is not None:
            shape.append(f"fc1 <= {self.max_fc1}")
        if self.convs_reduced:
            shape.append("filters removed from every conv layer")
        if self.min_params_removed is not None:
            shape.append(f">= {self.min_params_removed:g}% of parameters removed")
        error = (
            f"test error <= baseline + {self.max_above_baseline:g}"
            if self.max_above_baseline is not None
            else f"test error <= {self.max_test_error:g}%"
        )
        return f"{', '.join(shape)}, {error}"


FLOORS: dict[str, tuple[Floor, ...]] = {
    "lenet": (
        Floor("fc1-11", "ours: best with fc1 <= 11 (the paper's width)", max_fc1=11, max_test_error=0.72),
        Floor(
            "convs-95",
            "ours: best with conv filters removed and >= 95% of params",
            min_params_removed=95.0,
            convs_reduced=True,
            max_test_error=1.0,
        ),
    ),
    "cifar10_quick": (
        Floor(
            "fc1-17",
            "ours: best with fc1 <= 17 and >= 50% of params",
            max_fc1=17,
            min_params_removed=50.0,
            max_above_baseline=0.5,
        ),
    ),
}


@dataclass(frozen=True)
class FloorResult:
    floor: Floor
    row: TrialRow | None  # the chosen trial; None: no trial of that shape
    met: bool | None  # None: cannot tell (no test error, or no baseline for a relative floor)

    def sentence(self) -> str:
        goal = self.floor.goal()
        if self.row is None:
            return f"floor ({goal}): no complete trial of that shape, not met"
        verdict = {True: "met", False: "not met", None: "cannot tell"}[self.met]
        return f"floor ({goal}): trial {self.row.number}, test error {self.row.test_top1_error}%: {verdict}"


def choose_floor(floor: Floor, rows: Sequence[TrialRow], baseline: TrialRow | None) -> FloorResult:
    """``rows``: usable trials (complete, fully trained, every layer alive)."""
    shaped = [r for r in rows if r.top1_error is not None and floor.has_shape(r)]
    if not shaped:
        return FloorResult(floor, None, False)
    row = min(shaped, key=lambda r: (r.value("top1_error"), r.params or 0.0, r.number))
    limit = floor.error_limit(baseline)
    met = None if limit is None or row.test_top1_error is None else row.test_top1_error <= limit + TOLERANCE
    return FloorResult(floor, row, met)
