"""Reading a study back: trial rows (``TrialRow``), its Pareto front, picking one trial, and the ``pareto``
command.

Everything here only reads the study database. A dashboard or ``pareto`` may run while a sweep writes to
the same SQLite file: connections are opened read-only and a read that meets "database is locked" is
retried a few times after a short pause instead of failing or holding the writer up.
"""

from __future__ import annotations

import json as json_lib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.config import DEFAULT_OBJECTIVES, pruning_label
from sweep.errors import SweepError
from sweep.measure import widths_text
from sweep.select import pareto
from sweep.select.default_pick import DefaultPick, default_pick
from sweep.select.text import format_lam, format_number
from sweep.study import (
    StudyCounts,
    check_trial,
    close_study,
    load_study_readonly,
    objective_names,
    print_warning,
    trial_params,
    with_lock_retries,
)

# Numeric columns a row can be compared on (objectives or recorded user attributes).
COLUMNS = ("top1_error", "test_top1_error", "neurons", "params", "flops", "latency_ms", "memory_mb")
COLUMN_LABELS = {
    "top1_error": "top-1 error (%)",
    "test_top1_error": "test top-1 error (%)",
    "neurons": "alive neurons",
    "params": "parameters",
    "flops": "FLOPs",
    "latency_ms": "latency (ms)",
    "memory_mb": "memory (MB)",
}


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


@dataclass
class TrialRow:
    """One trial as the front, the picks and the dashboards see it. Missing numbers are None."""

    number: int
    state: str  # Optuna's state name: COMPLETE, FAIL, PRUNED, RUNNING, WAITING
    penalty: str | None
    lam: float | None
    alpha: float | None  # only for sparse_group_lasso, where it means something
    top1_error: float | None  # percent, held-out split
    test_top1_error: float | None
    neurons: float | None
    params: float | None
    flops: float | None
    latency_ms: float | None
    memory_mb: float | None
    widths: dict[str, int] = field(default_factory=dict)
    widths_full: dict[str, int] = field(default_factory=dict)
    early_stopped: bool = False
    checkpoint: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    fail_reason: str | None = None
    params_full: float | None = None
    flops_full: float | None = None
    epochs: int | None = None
    dataset: str | None = None

    def value(self, column: str) -> float:
        """The column as a float; NaN when this trial did not record it."""
        if column not in COLUMNS:
            raise SweepError(f"column must be one of {', '.join(COLUMNS)}, got {column!r}")
        number = getattr(self, column)
        return math.nan if number is None else float(number)

    @property
    def model(self) -> str | None:
        return self.config.get("model")

    @property
    def is_baseline(self) -> bool:
        return self.penalty == "none"

    @property
    def penalty_label(self) -> str:
        """The penalty, or a magnitude trial's pruning ("magnitude 0.50 local"), for tables."""
        if self.penalty == "magnitude":
            return pruning_label({**self.config, "method": "magnitude"}) or "magnitude"
        return str(self.penalty or "-")

    def full_size(self, column: str) -> float | None:
        """The unpruned network's size in ``column`` (neurons, params or flops), when recorded."""
        if column == "neurons":
            return float(sum(self.widths_full.values())) if self.widths_full else None
        return {"params": self.params_full, "flops": self.flops_full}.get(column)

    def selected(self, include_early_stopped: bool = False, include_failed: bool = False) -> bool:
        """Complete and fully trained; early-stopped (complete or pruned) and failed rows when asked."""
        if self.state == "FAIL":
            return include_failed
        if self.early_stopped:
            return include_early_stopped and self.state in ("COMPLETE", "PRUNED")
        return self.state == "COMPLETE"

    @property
    def has_empty_layer(self) -> bool:
        return any(int(count) == 0 for count in self.widths.values())

    def widths_text(self) -> str:
        """Alive/full width per layer in forward order, e.g. ``conv1 12/20, conv2 30/50, fc1 11/500``."""
        return widths_text(self.widths, self.widths_full)

    def widths_brief(self, most: int = 12, narrowest: int = 4) -> str:
        """``widths_text`` for up to ``most`` layers; past that (a deep network) the totals and the
        ``narrowest`` layers (the largest share of their width lost), so a ResNet-56's 30 groups fit on a
        line."""
        if len(self.widths) <= most:
            return self.widths_text()
        alive, full = sum(self.widths.values()), sum(self.widths_full.values())
        narrowed = sorted(
            (n for n in self.widths if self.widths[n] < self.widths_full.get(n, self.widths[n])),
            key=lambda n: self.widths[n] / max(self.widths_full[n], 1),
        )
        shown = widths_text({n: self.widths[n] for n in narrowed[:narrowest]}, self.widths_full)
        more = f" (+{len(narrowed) - narrowest} more)" if len(narrowed) > narrowest else ""
        return f"{alive:,}/{full:,} alive in {len(self.widths)} layers" + (
            f"; narrowest: {shown}{more}" if narrowed else ""
        )

    def summary(self) -> dict[str, Any]:
        """The row as JSON-ready values (no config or history)."""
        keys = ("number", "state", "penalty", "lam", "alpha", *COLUMNS)
        out: dict[str, Any] = {key: getattr(self, key) for key in keys}
        out.update(
            widths=dict(self.widths),
            widths_full=dict(self.widths_full),
            early_stopped=self.early_stopped,
            checkpoint=self.checkpoint,
        )
        return out


Warn = Callable[[str], None]


def _history(trial: FrozenTrial, recorded: Any) -> list[dict[str, Any]]:
    if isinstance(recorded, list) and recorded:
        return [dict(entry) for entry in recorded if isinstance(entry, dict)]
    return [{"epoch": step, "top1_error": value} for step, value in sorted(trial.intermediate_values.items())]


def row_from_trial(
    trial: FrozenTrial, objectives: Sequence[str] = DEFAULT_OBJECTIVES, problems: list[str] | None = None
) -> TrialRow:
    """Turn one Optuna trial into a TrialRow (objective values first, then user attributes). Every value
    is checked first (``sweep.study.records``): one that is not what it must be counts as not recorded, and
    its line is appended to ``problems``."""
    checked = check_trial(trial, objectives, trial_params(trial))
    if problems is not None:
        problems.extend(checked.problems)
    attrs, values, params = checked.attrs, checked.values, checked.params
    config = attrs.get("config") or {}

    def number(name: str) -> float | None:
        return _float(values[name]) if name in values else _float(attrs.get(name))

    widths = {k: int(v) for k, v in (attrs.get("widths") or {}).items()}
    neurons = number("neurons")
    if neurons is None and widths:
        neurons = float(sum(widths.values()))
    error = number("top1_error")
    if error is None and trial.state == TrialState.PRUNED and trial.intermediate_values:
        error = _float(trial.intermediate_values[max(trial.intermediate_values)])
    penalty = config.get("penalty", params.get("penalty"))
    if config.get("method", params.get("method")) == "magnitude":  # no penalty, and not the baseline
        penalty = "magnitude"
    lam = None if penalty == "magnitude" else _float(config.get("lam", params.get("lam")))
    alpha = _float(config.get("alpha", params.get("alpha"))) if penalty == "sparse_group_lasso" else None
    epochs = attrs.get("epochs")
    return TrialRow(
        number=trial.number,
        state=trial.state.name,
        penalty=penalty,
        lam=0.0 if penalty == "none" else lam,
        alpha=alpha,
        top1_error=error,
        test_top1_error=number("test_top1_error"),
        neurons=neurons,
        params=number("params"),
        flops=number("flops"),
        latency_ms=number("latency_ms"),
        memory_mb=number("memory_mb"),
        widths=widths,
        widths_full={k: int(v) for k, v in (attrs.get("widths_full") or {}).items()},
        early_stopped=bool(attrs.get("early_stopped")) or trial.state == TrialState.PRUNED,
        checkpoint=attrs.get("checkpoint"),
        config=dict(config),
        history=_history(trial, attrs.get("history")),
        fail_reason=attrs.get("fail_reason"),
        params_full=_float(attrs.get("params_full")),
        flops_full=_float(attrs.get("flops_full")),
        epochs=None if epochs is None else int(epochs),
        dataset=attrs.get("dataset", config.get("dataset")),
    )


def all_rows(study: optuna.Study, warn: Warn | None = print_warning) -> list[TrialRow]:
    """Every trial of the study, whatever its state, by trial number. Each attribute that is not what it
    must be is left out of its row and reported through ``warn`` (by default a line on stderr), once."""
    objectives = objective_names(study, warn, DEFAULT_OBJECTIVES)
    trials = with_lock_retries(lambda: study.get_trials(deepcopy=False))
    problems: list[str] = []
    rows = [row_from_trial(t, objectives, problems) for t in sorted(trials, key=lambda t: t.number)]
    for line in problems if warn is not None else ():
        warn(line)
    return rows


def select_rows(
    rows: Sequence[TrialRow], include_early_stopped: bool = False, include_failed: bool = False
) -> list[TrialRow]:
    """Complete, fully trained rows, plus early-stopped and failed ones when asked."""
    return [row for row in rows if row.selected(include_early_stopped, include_failed)]


def trial_rows(
    study: optuna.Study, include_early_stopped: bool = False, include_failed: bool = False
) -> list[TrialRow]:
    """The study's complete, fully trained trials as rows (by number); early-stopped/failed on request."""
    return select_rows(all_rows(study), include_early_stopped, include_failed)


def recorded_columns(rows: Sequence[TrialRow]) -> list[str]:
    """Columns that at least one row holds a number for."""
    return [c for c in COLUMNS if any(getattr(r, c) is not None for r in rows)]


def check_columns(rows: Sequence[TrialRow], columns: Sequence[str]) -> None:
    """SweepError naming a column that is unknown or that no row records, and the ones that are."""
    recorded = recorded_columns(rows)
    for column in columns:
        if column not in COLUMNS or column not in recorded:
            have = ", ".join(recorded) or "none"
            raise SweepError(f"no trial records {column!r}; recorded columns: {have}")


def front(
    rows: Sequence[TrialRow], x: str = "neurons", y: str = "top1_error", z: str | None = None
) -> list[TrialRow]:
    """The non-dominated rows over columns x, y (and z), all minimised, sorted by x then y.

    Only complete, fully trained rows take part: an early-stopped trial never enters the front. Rows
    missing one of the columns are left out; equal rows are all kept.
    """
    columns = [x, y] if z is None else [x, y, z]
    if not rows:
        return []
    check_columns(rows, columns)
    candidates = [r for r in rows if r.selected()]
    points = np.array([[r.value(c) for c in columns] for r in candidates], dtype=float)
    mask = pareto.pareto_mask(points.reshape(len(candidates), len(columns)))
    chosen = [r for r, on in zip(candidates, mask, strict=True) if on]
    return sorted(chosen, key=lambda r: (r.value(x), r.value(y), r.number))


def _describe(row: TrialRow, size: str) -> str:
    return (
        f"trial {row.number}, {row.value('top1_error'):.2f}% error, {format_number(row.value(size))} {size}"
    )


def pick(
    rows: Sequence[TrialRow],
    max_error: float | None = None,
    max_neurons: float | None = None,
    max_params: float | None = None,
    knee: bool = False,
    *,
    size: str = "neurons",
) -> TrialRow:
    """Choose one complete, fully trained trial with every layer alive.

    Limits (``max_error`` in percent, ``max_neurons``, ``max_params``) filter first. Then: ``knee`` takes
    the knee of the (error, ``size``) front of what is left; else with ``max_error`` the smallest network
    by ``size`` (ties: lower error); else the lowest error (ties: smaller). A trial with an empty layer is
    never picked: it cannot be used as a network. SweepError, saying what was asked and the best
    achievable, when nothing qualifies.
    """
    if max_error is None and max_neurons is None and max_params is None and not knee:
        raise SweepError("say what to pick: a maximum error, a maximum size or the knee")
    check_columns(rows, ["top1_error", size])
    usable = [r for r in rows if r.selected() and not r.has_empty_layer and r.top1_error is not None]
    if not usable:
        raise SweepError("no complete, fully trained trial with every layer alive to pick from")
    limits = [
        ("top1_error", max_error, "% error"),
        ("neurons", max_neurons, " neurons"),
        ("params", max_params, " params"),
    ]
    qualifying = [
        r for r in usable if all(limit is None or r.value(col) <= limit for col, limit, _ in limits)
    ]
    if not qualifying:
        asked = " and ".join(
            f"at most {format_number(limit)}{unit}" for _, limit, unit in limits if limit is not None
        )
        best = []
        for col, limit, unit in limits:
            if limit is not None:
                row = min(usable, key=lambda r, c=col: (r.value(c), r.value("top1_error"), r.number))
                best.append(f"the lowest is {format_number(row.value(col))}{unit} ({_describe(row, size)})")
        raise SweepError(f"no usable trial has {asked}; {'; '.join(best)}")
    errors = np.array([r.value("top1_error") for r in qualifying])
    sizes = np.array([r.value(size) for r in qualifying])
    if knee:
        index = pareto.knee_index(np.column_stack([errors, sizes]))
    elif max_error is not None:
        index = pareto.pick_max_error(errors, sizes, max_error)
    else:
        index = pareto.pick_max_size(errors, sizes, math.inf)
    if index is None:  # every qualifying row lacks the size column
        raise SweepError(f"no qualifying trial records {size!r}")
    return qualifying[index]


def front_table(
    rows: Sequence[TrialRow], x: str, chosen: TrialRow | None = None, default: DefaultPick | None = None
) -> str:
    """The front as an aligned text table, one line per trial; with ``default`` an ``export`` column
    marks export's default pick and the baseline it is measured from."""
    header = ["trial", "penalty", "lambda", "error %", "neurons", "params", "FLOPs"]
    if default is not None:
        header.append("export")
    if x == "latency_ms":
        header.append("latency ms")
    header.append("widths (alive/full)")
    lines = [header]
    for row in rows:
        mark = "*" if chosen is not None and row.number == chosen.number else ""
        cells = [
            f"{row.number}{mark}",
            row.penalty_label,
            format_lam(row.lam),
            "-" if row.top1_error is None else f"{row.top1_error:.2f}",
            format_number(row.neurons),
            format_number(row.params),
            format_number(row.flops),
        ]
        if default is not None:
            cells.append(_export_mark(row, default))
        if x == "latency_ms":
            cells.append(format_number(row.latency_ms))
        cells.append(
            (row.widths_brief() or "-") + (" (empty layer: not usable)" if row.has_empty_layer else "")
        )
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True)), line[-1]]).rstrip()
        for line in lines
    )


def _export_mark(row: TrialRow, default: DefaultPick) -> str:
    if default.chosen is not None and row.number == default.chosen.number:
        return "pick"
    if default.baseline is not None and row.number == default.baseline.number:
        return "baseline"
    return ""


def pareto_command(study: str, storage: str | None, x: str, max_error: float | None, json: bool) -> int:
    """``sweep pareto STUDY``: print the error/x front; with --max-error the chosen trial; --json last."""
    opened = load_study_readonly(study, storage)
    try:
        everything = all_rows(opened)
    finally:
        close_study(opened)
    rows = select_rows(everything)
    counts = StudyCounts.of(everything).summary()
    if not rows:
        raise SweepError(
            f"study {study!r} has no complete trials yet ({counts['failed']} failed, "
            f"{counts['early_stopped']} early-stopped, {counts['running']} running)"
        )
    front_rows = front(rows, x=x)
    chosen = pick(rows, max_error=max_error, size=x) if max_error is not None else None
    default = default_pick(everything)
    print(f"Pareto front of study {study!r}: top-1 error (held-out) against {x}")
    print(front_table(front_rows, x, chosen, default))
    print(
        f"{len(front_rows)} of {counts['complete']} complete trials on the front "
        f"(not counted: {counts['early_stopped']} early-stopped, {counts['failed']} failed, "
        f"{counts['running']} running)"
    )
    if chosen is not None:
        print(
            f"chosen, the smallest network by {x} with at most {max_error}% error: {_describe(chosen, x)}, "
            f"penalty {chosen.penalty_label}, lambda {format_lam(chosen.lam)}, widths {chosen.widths_text()}"
        )
    print(f"export's default pick: {default.describe()}")
    if json:
        band = default.summary()
        entries = [
            dict(
                r.summary(),
                chosen=chosen is not None and r.number == chosen.number,
                export_pick=r.number == band["pick"],
                baseline=r.number == band["baseline"],
                export_band=band,
            )
            for r in front_rows
        ]
        print(json_lib.dumps(entries, allow_nan=False))
    return 0
