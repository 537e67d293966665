"""sweep.search.searcher.StudySearch, Tune's searcher over the study's ask/tell, driven as Tune drives it
(without Ray running): suggestions, the enqueued baseline first, completion with the trial's attributes,
early stops, failures with their reason, the concurrency limit, a study shared with another driver."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from sweep.search.searcher import EMPTY_LAYERS, RECORD, searcher_class

OBJECTIVES = ["top1_error", "neurons"]


def _study(tmp_path: Path) -> tuple[optuna.storages.RDBStorage, optuna.Study]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(study_name="s", storage=storage, directions=["minimize", "minimize"])
    return storage, study


def _search(storage: Any, seed: int = 0) -> Any:
    def space(trial: optuna.Trial) -> dict[str, Any]:
        lam = trial.suggest_float("lam", 1e-4, 1e-1, log=True)
        trial.set_user_attr("driver", {"pid": 1})
        return {"penalty": "l1", "lam": lam, "trial_number": trial.number}

    search = searcher_class()(
        space=space,
        metric=OBJECTIVES,
        mode=["min", "min"],
        sampler=optuna.samplers.RandomSampler(seed=seed),
        storage=storage,
        study_name="s",
    )
    search.config_attrs = lambda params: {"config": {"lam": params.get("lam")}}
    return search


def _result(error: float, neurons: int, done: bool = True, **extra: Any) -> dict[str, Any]:
    record = {"top1_error": error, "neurons": neurons, "epoch": 2, "epochs": 2, "done": done, **extra}
    return {RECORD: json.dumps(record), "top1_error": error, "time_total_s": 1.25}


def test_suggest_asks_the_study_and_complete_tells_it_with_the_trials_attributes(tmp_path: Path) -> None:
    storage, study = _study(tmp_path)
    study.enqueue_trial({"lam": 0.01})
    search = _search(storage)
    study_id = storage.get_study_id_from_name("s")
    config = search.suggest("ray_a")
    assert config == {"penalty": "l1", "lam": 0.01, "trial_number": 0}  # the enqueued point first
    assert search.suggest("ray_a") == config  # asked again: the same trial
    assert search.number_of("ray_a") == 0 and search.number_of("nobody") is None
    assert search.live_trial_ids() == [storage.get_trial_id_from_study_id_trial_number(study_id, 0)]
    search.checkpoints["ray_a"] = "/out/ckpt/checkpoint.pt"
    search.on_trial_result("ray_a", {"top1_error": 3.0})  # several objectives: nothing to report
    search.on_trial_complete("ray_a", _result(2.5, 40, empty_layers=["fc1"]))
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.values == [2.5, 40.0]
    attrs = trial.user_attrs
    assert attrs["early_stopped"] is False and attrs["epochs"] == 2
    assert attrs["checkpoint"] == "/out/ckpt/checkpoint.pt" and attrs["ray_trial_id"] == "ray_a"
    assert attrs["train_seconds"] == 1.25 and attrs["driver"] == {"pid": 1}
    assert trial.system_attrs["constraints:empty_layers"] == 1.0  # one emptied layer: infeasible
    assert EMPTY_LAYERS == "empty_layers"
    assert search.outcomes["ray_a"]["state"] == "COMPLETE" and search.live_trial_ids() == []
    search.on_trial_complete("ray_a", _result(1.0, 1))  # a second completion changes nothing
    assert study.trials[0].values == [2.5, 40.0]


def test_an_early_stop_a_failure_and_a_cut_off_trial_are_recorded(tmp_path: Path) -> None:
    storage, study = _study(tmp_path)
    search = _search(storage)
    for ray_id in ("early", "raised", "nan", "cut"):
        search.suggest(ray_id)
    search.on_trial_complete("early", _result(9.0, 300, done=False))
    search.on_trial_complete("raised", None, error=True)  # the reason comes with on_trial_error
    search.on_trial_complete("nan", _result(float("nan"), 3))
    assert study.trials[1].state == TrialState.RUNNING
    assert search.fail_pending("raised", "FloatingPointError: loss is nan") == 1
    assert search.fail_unfinished("stopped by Ctrl-C") == [3]
    early, raised, nan, cut = study.trials
    assert early.state == TrialState.COMPLETE and early.user_attrs["early_stopped"] is True
    assert raised.state == TrialState.FAIL
    assert raised.user_attrs["fail_reason"] == "FloatingPointError: loss is nan"
    assert raised.user_attrs["ray_trial_id"] == "raised" and "config" in raised.user_attrs
    assert nan.state == TrialState.FAIL and "not reported as finite" in nan.user_attrs["fail_reason"]
    assert cut.state == TrialState.FAIL and cut.user_attrs["fail_reason"] == "stopped by Ctrl-C"
    assert [o["state"] for o in search.outcomes.values()] == ["COMPLETE", "FAIL", "FAIL", "FAIL"]


def test_a_result_without_any_epoch_fails_the_trial(tmp_path: Path) -> None:
    storage, study = _study(tmp_path)
    search = _search(storage)
    search.suggest("t")
    search.on_trial_complete("t", {"done": True})
    trial = study.trials[0]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "the trial stopped before reporting any epoch"


def test_the_concurrency_limiter_and_a_full_shared_study(tmp_path: Path) -> None:
    from ray.tune.search import ConcurrencyLimiter, Searcher

    storage, study = _study(tmp_path)
    search = _search(storage)
    study_id = storage.get_study_id_from_name("s")
    search.share_study(storage, study_id, until=2)
    limited = ConcurrencyLimiter(search, max_concurrent=1)
    assert not limited.set_search_properties(None, None, {})  # the space is the searcher's own
    assert limited.suggest("one") is not None
    assert limited.suggest("two") is None  # one running already
    limited.on_trial_complete("one", _result(5.0, 10))
    other = _search(storage, seed=1)  # another driver of the same study
    other.suggest("theirs")
    assert limited.suggest("three") == Searcher.FINISHED  # complete + running = 2
    assert [t.number for t in study.trials] == [0, 1]
    assert search.number_of("one") == 0 and other.number_of("theirs") == 1


def test_save_and_restore_keep_nothing_beside_the_study(tmp_path: Path) -> None:
    storage, _ = _study(tmp_path)
    search = _search(storage)
    search.save(str(tmp_path / "searcher.pkl"))
    assert not (tmp_path / "searcher.pkl").exists()
    search.restore(str(tmp_path / "searcher.pkl"))


@pytest.mark.parametrize("flat, nested", [({"a/b": 1, "c": 2}, {"a": {"b": 1}, "c": 2})])
def test_parameter_names_with_a_slash_nest_as_ray_nested_them(flat: dict, nested: dict) -> None:
    from ray.tune.utils.util import unflatten_dict

    from sweep.search.searcher import _unflatten

    assert _unflatten(flat) == nested == unflatten_dict(flat)
