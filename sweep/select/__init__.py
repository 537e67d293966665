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
    DEFAULT_OBJECTIVES,
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
from sweep.study import close_study, default_storage, load_study_readonly, redact, with_lock_retries

__all__ = [
    "COLUMN_LABELS",
    "DEFAULT_MAX_INCREASE",
    "DEFAULT_OBJECTIVES",
    "DefaultPick",
    "TrialRow",
    "all_rows",
    "close_study",
    "default_pick",
    "default_storage",
    "dominates",
    "format_lam",
    "format_number",
    "front",
    "front_ranks",
    "hypervolume",
    "knee_index",
    "load_study_readonly",
    "pareto_mask",
    "pick",
    "pick_max_error",
    "pick_max_size",
    "recorded_columns",
    "redact",
    "removes_something",
    "select_rows",
    "trial_rows",
    "with_lock_retries",
]
