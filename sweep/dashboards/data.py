"""What every figure needs: the study's rows and labels, penalty colours, hover text, the paper's points."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import optuna

from sweep.config import DEFAULT_OBJECTIVES
from sweep.measure import PAPER_TABLE1, PaperResult
from sweep.select import (
    COLUMN_LABELS,
    DefaultPick,
    TrialRow,
    all_rows,
    default_pick,
    format_lam,
    format_number,
    front,
    recorded_columns,
)
from sweep.study import (
    StudyCounts,
    close_study,
    load_study_readonly,
    objective_names,
    print_warning,
    study_text,
    with_lock_retries,
)

PENALTY_COLORS = {
    "l1": "#1f77b4",
    "group_lasso": "#d62728",
    "sparse_group_lasso": "#2ca02c",
    "nuclear": "#9467bd",
    "none": "#111111",
}
OTHER_COLORS = ("#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
EARLY_STOPPED_COLOR = "#b0b0b0"
SIZE_AXES = ("neurons", "params", "flops", "latency_ms")


# The paper's Table 1 (one copy, in sweep.measure): a row with ``neurons`` is a point on the neurons axis.
PaperPoint = PaperResult


def paper_point(model: str | None, dataset: str | None) -> PaperPoint | None:
    """The paper's Table 1 point for this model on its own dataset, if the paper reports one."""
    point = PAPER_TABLE1.get(model or "")
    usable = point is not None and point.neurons is not None
    return point if usable and dataset in (None, point.dataset) else None


def penalty_color(penalty: str | None, order: Sequence[str] = ()) -> str:
    if penalty in PENALTY_COLORS:
        return PENALTY_COLORS[penalty]
    others = [p for p in order if p not in PENALTY_COLORS]
    index = others.index(penalty) if penalty in others else 0
    return OTHER_COLORS[index % len(OTHER_COLORS)]


def axis_label(column: str) -> str:
    return COLUMN_LABELS.get(column, column)


def widths_html(row: TrialRow, per_line: int = 4) -> str:
    """Per-layer alive/full widths, a few layers per hover line."""
    parts = row.widths_brief().split(", ") if row.widths else []
    lines = [", ".join(parts[i : i + per_line]) for i in range(0, len(parts), per_line)]
    return "<br>".join(lines)


def hover_text(row: TrialRow) -> str:
    """Hover label of one trial: number, penalty, lambda, alpha, error, sizes and per-layer widths."""
    lines = [f"<b>trial {row.number}</b> · {row.penalty_label if row.penalty else 'unknown penalty'}"]
    knobs = f"λ = {format_lam(row.lam)}"
    if row.alpha is not None:
        knobs += f" · α = {row.alpha:.3g}"
    lines.append(knobs)
    error = "-" if row.top1_error is None else f"{row.top1_error:.2f}%"
    if row.test_top1_error is not None:
        error += f" (test {row.test_top1_error:.2f}%)"
    lines.append(f"error {error}")
    lines.append(
        f"neurons {format_number(row.neurons)} · params {format_number(row.params)}"
        f" · FLOPs {format_number(row.flops)}"
    )
    if row.early_stopped:
        lines.append("stopped early: not on the front")
    widths = widths_html(row)
    if widths:
        lines.append(widths)
    return "<br>".join(lines)


@dataclass
class StudyData:
    """One read of a study: every trial as a row, plus the labels the page shows."""

    name: str
    model: str | None
    dataset: str | None
    objectives: list[str]
    rows: list[TrialRow] = field(default_factory=list)  # every trial, any state

    @property
    def counts(self) -> dict[str, int]:
        return StudyCounts.of(self.rows).summary()

    @property
    def finished(self) -> list[TrialRow]:
        """Complete and fully trained: the trials a front is made of."""
        return [r for r in self.rows if r.state == "COMPLETE" and not r.early_stopped]

    @property
    def early_stopped(self) -> list[TrialRow]:
        return [r for r in self.rows if r.early_stopped and r.state in ("COMPLETE", "PRUNED")]

    @property
    def failed(self) -> list[TrialRow]:
        return [r for r in self.rows if r.state == "FAIL"]

    @property
    def size_axes(self) -> list[str]:
        """Size columns some finished trial records; the study's own size objective first."""
        recorded = set(recorded_columns(self.finished))
        ordered = [c for c in self.objectives if c in SIZE_AXES] + list(SIZE_AXES)
        return [c for i, c in enumerate(ordered) if c in recorded and c not in ordered[:i]]

    @property
    def front_axis(self) -> str | None:
        """The size column the page's front is taken over: the study's own size objective if recorded."""
        axes = self.size_axes
        return axes[0] if axes else None

    def default_pick(self) -> DefaultPick:
        """Export's default pick and its band (baseline + --max-increase's default), as export takes it."""
        return default_pick(self.rows)

    def front_rows(self) -> list[TrialRow]:
        """The error/size front of the finished trials, smallest first (empty when there is none)."""
        axis = self.front_axis
        if axis is None:
            return []
        rows = [r for r in self.finished if r.top1_error is not None and r.value(axis) == r.value(axis)]
        return front(rows, x=axis) if rows else []


# Lines already reported for a study that a live dashboard reads again on every request: said once.
_REPORTED: weakref.WeakKeyDictionary[optuna.Study, set[str]] = weakref.WeakKeyDictionary()


def _warn_once(study: optuna.Study) -> Callable[[str], None]:
    said = _REPORTED.setdefault(study, set())

    def warn(line: str) -> None:
        if line not in said:
            said.add(line)
            print_warning(line)

    return warn


def read_study(study: optuna.Study) -> StudyData:
    """Read every trial of an opened study (again: call it on each refresh). Attributes that are not what
    they must be are left out and reported on stderr, once per opened study."""
    warn = _warn_once(study)
    rows = all_rows(study, warn)
    attrs = with_lock_retries(lambda: study.user_attrs)
    problems: list[str] = []
    configured = [r for r in rows if r.model]
    model = study_text(attrs, "model", problems) or (configured[0].model if configured else None)
    dataset = study_text(attrs, "dataset", problems) or next((r.dataset for r in rows if r.dataset), None)
    for line in problems:
        warn(f"study {study.study_name}: {line}")
    return StudyData(study.study_name, model, dataset, objective_names(study, None, DEFAULT_OBJECTIVES), rows)


def load_study_data(study: str, storage: str | None) -> StudyData:
    """Open the study read-only, read it once and let the connection go."""
    opened = load_study_readonly(study, storage)
    try:
        return read_study(opened)
    finally:
        close_study(opened)
