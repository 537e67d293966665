"""--sampler auto: gp for a small budget over a mostly numeric space, tpe otherwise; the GP sampler
models the penalised trials only (the baseline holds no penalty parameter). Real Optuna, no mocks."""

from __future__ import annotations

import dataclasses
import math
import warnings

import optuna
import pytest

from sweep.errors import SweepError
from sweep.space import Distribution, load_space
from sweep.study.create import (
    GP_MAX_TRIALS,
    BaselineFreeGPSampler,
    choose_sampler,
    enqueue_missing,
    gp_available,
    gp_startup_trials,
    make_sampler,
)
from sweep.study.rows import is_baseline


@pytest.fixture(scope="module")
def lenet():
    space = load_space("lenet")
    return space, space.for_budget("paper"), space.budget("paper").trials


def test_auto_is_gp_for_lenet_at_its_budget(lenet):
    _, space, trials = lenet
    assert trials < GP_MAX_TRIALS
    assert choose_sampler("auto", space, trials, gp_ok=True) == "gp"
    # as this machine resolves it: GPSampler needs scipy
    assert choose_sampler("auto", space, trials) == ("gp" if gp_available() else "tpe")


def test_auto_is_tpe_for_a_large_budget_or_a_categorical_space(lenet):
    _, space, _ = lenet
    assert choose_sampler("auto", space, GP_MAX_TRIALS, gp_ok=True) == "tpe"
    assert choose_sampler("auto", space, 500, gp_ok=True) == "tpe"
    cats = {f"c{i}": Distribution("categorical", choices=("a", "b", "c")) for i in range(4)}
    mostly_categorical = dataclasses.replace(space, search={**cats, "lam": space.search["lam"]})
    assert choose_sampler("auto", mostly_categorical, 20, gp_ok=True) == "tpe"
    assert choose_sampler("auto", space, 20, gp_ok=False) == "tpe", "no scipy: no gp"


def test_explicit_names_are_kept(lenet):
    _, space, _ = lenet
    for name in ("tpe", "nsga2", "random", "grid"):
        assert choose_sampler(name, space, 12, gp_ok=True) == name
        assert choose_sampler(name, space, 1000, gp_ok=False) == name
    assert choose_sampler("gp", space, 1000, gp_ok=True) == "gp"
    with pytest.raises(SweepError, match="needs scipy"):
        choose_sampler("gp", space, 12, gp_ok=False)
    with pytest.raises(SweepError, match="sampler must be one of"):
        choose_sampler("bayes", space, 12, gp_ok=True)
    kinds = {
        "tpe": optuna.samplers.TPESampler,
        "nsga2": optuna.samplers.NSGAIISampler,
        "random": optuna.samplers.RandomSampler,
        "grid": optuna.samplers.RandomSampler,
        "gp": optuna.samplers.GPSampler,
    }
    for name, cls in kinds.items():
        assert isinstance(make_sampler(name, seed=1, trials=12), cls)


def test_gp_startup_counts_the_start_points():
    assert [gp_startup_trials(n) for n in (2, 12, 60, 80, 99)] == [4, 4, 7, 10, 10]
    assert make_sampler("gp", seed=0, trials=60)._n_startup_trials == 7


def _objectives(cfg, params: dict) -> list[float]:
    """A smooth stand-in for (error, neurons): more lambda, fewer neurons and more error."""
    lam = cfg.lam or 1e-4
    debias = params.get("debias_fraction", 0.5)
    return [0.9 + 20 * lam + 0.1 * (debias - 0.5) ** 2, 570 / (1 + 200 * lam)]


def _run(study: optuna.Study, space, n: int, budget: str) -> None:
    """As ``sweep run`` asks: the baseline and start points queued, then define-by-run on the space's
    own distributions (``SearchSpace.suggest``), one infeasibility constraint per trial."""
    enqueue_missing(study, [space.baseline(), *space.start], limit=n)
    for _ in range(n):
        trial = study.ask()
        params = space.suggest(trial, baseline=is_baseline(trial))
        cfg = space.trial_config(params, budget)
        trial.set_constraint("empty_layers", 0.0)
        study.tell(trial, _objectives(cfg, params))


def test_gp_models_the_penalised_trials_not_the_baseline(lenet):
    """The baseline has no lam, layers, ...: counted in, the intersection would be empty and the GP
    would never model. Conditional parameters (alpha, a layer's scale) drop out once a trial lacks them."""
    _, space, _ = lenet
    study = optuna.create_study(directions=["minimize"] * 2, sampler=optuna.samplers.RandomSampler(seed=3))
    _run(study, space, 4, "paper")  # baseline, then the three start points (two sgl on all, gl on fc)
    assert study.trials[0].params == {}, "the baseline samples nothing"
    gp = make_sampler("gp", seed=0, trials=60)
    modelled = gp.infer_relative_search_space(study, study.trials[-1])
    plain = optuna.search_space.intersection_search_space(study.trials)
    assert plain == {}, "Optuna's own intersection, baseline included, models nothing"
    assert {"penalty", "lam", "layers", "debias_fraction", "warmup_epochs"} <= set(modelled)
    assert "alpha" not in modelled, "sparse_group_lasso only: sampled independently"
    for name, dist in modelled.items():
        assert dist == study.trials[1].distributions[name]


def test_twelve_trials_through_the_resolved_gp_sampler(lenet):
    """A real two-objective study: 12 trials on lenet's smoke space, the GP modelling from the 5th
    penalised trial on (needs scipy, which GPSampler imports when it first fits)."""
    pytest.importorskip("scipy")
    space = load_space("lenet").for_budget("smoke")
    name = choose_sampler("auto", space, 12)
    assert name == "gp"
    sampler = make_sampler(name, seed=0, trials=12)
    assert isinstance(sampler, BaselineFreeGPSampler)
    study = optuna.create_study(directions=["minimize"] * 2, sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        _run(study, space, 12, "smoke")
    trials = study.trials
    assert len(trials) == 12 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert [is_baseline(t) for t in trials] == [True] + [False] * 11
    for t in trials[1:]:
        assert all(math.isfinite(v) for v in t.values)
        assert t.distributions["lam"] == study.trials[1].distributions["lam"]
    modelled = [t for t in trials if any(k.startswith("gp:relative_params") for k in t.system_attrs)]
    assert modelled, "the GP proposed some of the trials"


def test_study_view_leaves_out_refused_trials_and_forwards_the_rest():
    """``_optuna.study_view``: what GPSampler reads (``_get_trials``, ``_storage``, ``directions``)."""
    from sweep.study import _optuna

    study = optuna.create_study(directions=["minimize"] * 2)
    for i in range(3):
        study.add_trial(optuna.trial.create_trial(values=[i, -i], user_attrs={"keep": i != 1}))
    view = _optuna.study_view(study, lambda t: t.user_attrs["keep"])
    assert [t.number for t in view._get_trials(deepcopy=False)] == [0, 2]
    assert view._storage is _optuna.study_storage(study) and view.directions == study.directions
    assert len(study.get_trials(deepcopy=False)) == 3, "the study itself is unchanged"


def test_run_defaults_to_tpe_and_the_plan_holds_auto_resolved(tmp_path):
    """``sweep run``'s default is tpe (the GP lost to random search on one seed of three); ``plan_sweep``
    resolves auto, so the header line ("sampler gp") and the study's settings name the one that runs."""
    from sweep.cli import build_parser
    from sweep.search.plan import plan_sweep

    assert build_parser().parse_args(["run", "lenet"]).sampler == "tpe"
    options = dict(
        scheduler="fifo",
        cpus_per_trial=1.0,
        gpus_per_trial=0.0,
        concurrency=None,
        address=None,
        out=str(tmp_path),
    )
    plan = plan_sweep("lenet", None, None, None, "paper", {}, sampler="auto", **options)
    assert plan.sampler == ("gp" if gp_available() else "tpe")
    assert plan_sweep("lenet", None, None, 500, "paper", {}, sampler="auto", **options).sampler == "tpe"
    assert plan_sweep("lenet", None, None, None, "paper", {}, sampler="nsga2", **options).sampler == "nsga2"
