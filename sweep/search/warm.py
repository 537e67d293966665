"""``sweep run --warm-start STUDY``: an earlier study's Pareto front is tried first by a new study.

The earlier study (of the same model and dataset, in ``--warm-storage`` or the run's own database) is
only read. Each trial on its front becomes a start point: the settings it sampled that the new space
still searches, at values inside the new distributions (the rest the sampler draws afresh), enqueued
after the baseline and before the space's own start points, so a new budget or a changed range begins
where the last search ended instead of from random draws."""

from __future__ import annotations

from typing import Any

from optuna.trial import TrialState

from sweep.errors import SweepError
from sweep.search.plan import SweepPlan
from sweep.select import all_rows, front
from sweep.study import is_baseline, load_study_readonly


def warm_points(source: str, storage: str, plan: SweepPlan, plan_storage: str) -> list[dict[str, Any]]:
    """Start points from the front of study ``source`` in ``storage``, for the study ``plan`` runs."""
    space = plan.space
    ours = space.fingerprint(plan.budget, plan.overrides)
    if source == plan.name and storage == plan_storage:
        raise SweepError(f"--warm-start {source} names the study this run writes; --resume goes on with it")
    try:
        study = load_study_readonly(source, storage)
    except SweepError as err:
        raise SweepError(f"--warm-start: {err}") from None
    recorded = study.user_attrs.get("fingerprint") or {}
    was, now = (recorded.get("model"), recorded.get("dataset")), (ours["model"], ours["dataset"])
    if was != now:
        raise SweepError(
            f"--warm-start {source}: a study of {was[0] or 'an unknown model'} on {was[1] or 'unknown data'}; "
            f"this run is {now[0]} on {now[1]}, and only a study of the same model and data can start it"
        )
    objectives = list(recorded.get("objectives") or study.user_attrs.get("objectives") or [])
    size = next((o for o in objectives if o != "top1_error"), "neurons")
    others = [o for o in objectives if o not in ("top1_error", size)]
    rows = [r for r in all_rows(study, warn=None) if r.penalty != "none"]
    on_front = {r.number for r in front(rows, x=size, y="top1_error", z=others[0] if others else None)}
    points: list[dict[str, Any]] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.number not in on_front or is_baseline(trial):
            continue
        point = {k: v for k, v in trial.params.items() if k in space.search and space.search[k].contains(v)}
        if point and point.get("penalty") != "none":
            points.append(point)
    # a point that another one holds whole says nothing more (and a study would not enqueue it twice)
    points.sort(key=len, reverse=True)
    kept: list[dict[str, Any]] = []
    for point in points:
        if not any(point.items() <= other.items() for other in kept):
            kept.append(point)
    return kept
