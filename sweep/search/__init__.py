"""``sweep run``: Optuna proposes, Ray Tune places the trials, every result lands in the study."""

from sweep.search.asha import keeps_going, rung_milestones
from sweep.search.driver import make_trainable, plan_sweep, run_command, sampled_space
from sweep.search.searcher import root_cause_line
from sweep.search.stop import STOPPED, Interrupt

__all__ = [
    "STOPPED",
    "Interrupt",
    "keeps_going",
    "make_trainable",
    "plan_sweep",
    "root_cause_line",
    "run_command",
    "rung_milestones",
    "sampled_space",
]
