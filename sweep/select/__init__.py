"""Choosing networks from a study: the Pareto front and the picks that export and the dashboards show."""

from sweep.select.default_pick import DEFAULT_MAX_INCREASE, DefaultPick, default_pick, removes_something
from sweep.select.pareto import (
    dominates,
    front_ranks,
    hypervolume,
    knee_index,
    pareto_mask,
    pick_max_error,
    pick_max_size,
)
from sweep.select.picks import (
    COLUMN_LABELS,
    TrialRow,
    all_rows,
    format_lam,
    format_number,
    front,
    pick,
    recorded_columns,
    select_rows,
    trial_rows,
)

__all__ = [
    "COLUMN_LABELS",
    "DEFAULT_MAX_INCREASE",
    "DefaultPick",
    "TrialRow",
    "all_rows",
    "default_pick",
    "dominates",
    "format_lam",
    "format_number",
    "front",
    "front_ranks",
    "hypervolume",
    "knee_index",
    "pareto_mask",
    "pick",
    "pick_max_error",
    "pick_max_size",
    "recorded_columns",
    "removes_something",
    "select_rows",
    "trial_rows",
]
