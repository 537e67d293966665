"""sweep.search.cluster.workers: the reach into Tune's actor class cache still fits the installed Ray; trial threads."""

from __future__ import annotations

import os

from sweep.search.cluster import workers as ray_workers


class Trainable:
    pass


def _registered_env(inherited: dict[str, str] | None) -> tuple[bool, object]:
    from ray.tune.execution.class_cache import _ActorClassCache

    with ray_workers.trials_in_prestarted_workers(inherited) as shortcut:
        remote = _ActorClassCache().get(Trainable)
    return shortcut, remote._default_options.get("runtime_env")


def test_tune_default_env_is_the_one_set_before_ray_starts() -> None:
    from ray.tune.execution import class_cache

    assert class_cache.DEFAULT_ENV_VARS == ray_workers.TUNE_DEFAULT_ENV


def test_local_start_preloads_training_code_and_sets_tune_env(monkeypatch) -> None:
    monkeypatch.delenv("PL_DISABLE_FORK", raising=False)
    options = ray_workers.local_start_options()
    assert options["_system_config"]["preload_python_modules"] == ["ray.tune", "sweep.train.trial"]
    assert os.environ["PL_DISABLE_FORK"] == "1"


def test_trainable_without_runtime_env_when_workers_inherited_tune_env(monkeypatch) -> None:
    from ray.tune.execution.class_cache import _ActorClassCache

    monkeypatch.setenv("PL_DISABLE_FORK", "1")
    tune_get = _ActorClassCache.get
    shortcut, runtime_env = _registered_env(dict(os.environ))
    assert shortcut and runtime_env is None
    assert _ActorClassCache.get is tune_get  # Tune's own registration is back afterwards


def test_tune_registration_stands_for_a_joined_ray_or_a_changed_env(monkeypatch) -> None:
    monkeypatch.setenv("PL_DISABLE_FORK", "1")
    shortcut, runtime_env = _registered_env(None)  # a Ray this driver joined
    assert not shortcut and runtime_env["env_vars"]["PL_DISABLE_FORK"] == "1"
    inherited = dict(os.environ)
    monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")  # set after Ray started: the workers lack it
    shortcut, runtime_env = _registered_env(inherited)
    assert not shortcut and runtime_env["env_vars"]["RAY_CHDIR_TO_TRIAL_DIR"] == "0"


def test_trial_threads_follow_rays_setting_after_torch_was_imported(monkeypatch) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        ray_workers.match_ray_threads()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
