"""A trial's settings (``TrialConfig``) and the allowed range of each."""

from sweep.config.ranges import FIELD_RANGES, Range, check_range
from sweep.config.trial import (
    DEFAULT_OBJECTIVES,
    IMPORTANCES,
    INIT_BASELINE,
    LAM_SCALINGS,
    LATER_DEFAULTS,
    MACHINE_KEYS,
    METHODS,
    OBJECTIVE_NAMES,
    PENALTY_KEYS,
    PENALTY_NAMES,
    SCOPES,
    TrialConfig,
    pruning_label,
)

__all__ = [
    "DEFAULT_OBJECTIVES",
    "FIELD_RANGES",
    "IMPORTANCES",
    "INIT_BASELINE",
    "LAM_SCALINGS",
    "LATER_DEFAULTS",
    "MACHINE_KEYS",
    "METHODS",
    "OBJECTIVE_NAMES",
    "PENALTY_KEYS",
    "PENALTY_NAMES",
    "SCOPES",
    "Range",
    "TrialConfig",
    "check_range",
    "pruning_label",
]
