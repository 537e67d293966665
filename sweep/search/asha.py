"""``--scheduler asha`` for several objectives: asynchronous successive halving that ranks the trials at a
rung by Pareto front (non-dominated sorting) over the study's objectives, not by one metric.

Ray's ASHAScheduler compares held-out error alone. A trial whose penalty removes neurons trails in error
during its sparse phase and wins it back in the debias phase, so error-only ASHA stops the very trials that
end up small (on lenet it let 1 of 16 trials finish). Here a trial goes on at a rung while fewer than
1/reduction_factor of the trials recorded there (itself counted) lie on better fronts than it: with one
objective that is ASHA's own quantile cutoff. A trial whose network has lost a whole layer stops at its
next rung: it is no network (the study records it as infeasible)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweep.search.searcher import EMPTY_LAYERS  # reported each epoch: how many layers have no neuron left
from sweep.select import front_ranks


def rung_milestones(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """Epochs at which trials are compared: grace_period x reduction_factor^k, below max_t."""
    out: list[int] = []
    t = float(grace_period)
    while round(t) < max_t:
        if not out or round(t) > out[-1]:
            out.append(round(t))
        t *= reduction_factor
    return out


def keeps_going(points: Sequence[Sequence[float]], reduction_factor: float) -> bool:
    """Whether the last of ``points`` (the rung's recorded results, the new one last) is within the best
    1/reduction_factor of them by front rank (points on the same front share the better place)."""
    ranks = front_ranks(points)
    better = int((ranks[:-1] < ranks[-1]).sum())
    return better < len(points) / reduction_factor


class ParetoASHA(FIFOScheduler):
    """Asynchronous successive halving over ``objectives`` (all minimised)."""

    def __init__(
        self,
        objectives: Sequence[str],
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 3,
        time_attr: str = "training_iteration",
    ) -> None:
        super().__init__()
        if reduction_factor <= 1 or grace_period < 1:
            raise ValueError("reduction_factor must be > 1 and grace_period >= 1")
        self.objectives = tuple(objectives)
        self.reduction_factor = reduction_factor
        self.time_attr = time_attr
        self.rungs: dict[int, dict[str, tuple[float, ...]]] = {
            t: {} for t in rung_milestones(max_t, grace_period, reduction_factor)
        }
        self.stopped = 0

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        recorded = self.rungs.get(result.get(self.time_attr))  # type: ignore[arg-type]
        if recorded is None or trial.trial_id in recorded or any(o not in result for o in self.objectives):
            return TrialScheduler.CONTINUE
        if result.get(EMPTY_LAYERS):
            self.stopped += 1
            return TrialScheduler.STOP
        recorded[trial.trial_id] = tuple(float(result[o]) for o in self.objectives)
        if keeps_going(list(recorded.values()), self.reduction_factor):
            return TrialScheduler.CONTINUE
        self.stopped += 1
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        return (
            f"Pareto ASHA over {', '.join(self.objectives)}: {self.stopped} stopped, rungs {list(self.rungs)}"
        )
