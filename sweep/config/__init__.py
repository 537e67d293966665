"""A trial's settings (``TrialConfig``) and the allowed range of each."""

from sweep.config.ranges import FIELD_RANGES, Range, check_range
from sweep.config.trial import (
    DEFAULT_OBJECTIVES,
    INIT_BASELINE,
    LAM_SCALINGS,
    LATER_DEFAULTS,
    MACHINE_KEYS,
    OBJECTIVE_NAMES,
    PENALTY_KEYS,
    PENALTY_NAMES,
    TrialConfig,
)

__all__ = [
    "DEFAULT_OBJECTIVES",
    "FIELD_RANGES",
    "INIT_BASELINE",
    "LAM_SCALINGS",
    "LATER_DEFAULTS",
    "MACHINE_KEYS",
    "OBJECTIVE_NAMES",
    "PENALTY_KEYS",
    "PENALTY_NAMES",
    "Range",
    "TrialConfig",
    "check_range",
]
