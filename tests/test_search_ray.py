"""sweep.search._ray: each reach into Ray's private parts still fits the installed Ray."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from sweep.search import _ray


class Trainable:
    pass


def test_preload_option_is_an_argument_ray_init_takes_and_a_setting_ray_knows() -> None:
    """``ray.init`` takes ``_system_config`` from its keyword arguments, and refuses a setting its raylet
    does not define; the sweeps of tests/test_tune.py start Ray with this one."""
    import ray
    import ray._raylet

    options = _ray.preload_option(["ray.tune", "sweep.train.trial"])
    assert options == {"_system_config": {"preload_python_modules": ["ray.tune", "sweep.train.trial"]}}
    assert 'kwargs.pop("_system_config"' in inspect.getsource(ray.init)
    assert b"preload_python_modules" in Path(ray._raylet.__file__).read_bytes()


def test_tune_trial_env_names_tunes_defaults_and_propagated_variables() -> None:
    from ray.tune.execution import class_cache

    found = _ray.tune_trial_env()
    assert found is not None
    defaults, names = found
    assert defaults == class_cache.DEFAULT_ENV_VARS and "PL_DISABLE_FORK" in defaults
    assert names == tuple(class_cache.ENV_VARS_TO_PROPAGATE) and names


@pytest.mark.parametrize("shortcut", [True, False])
def test_actors_without_runtime_env_replaces_tunes_registration_only_inside(shortcut: bool) -> None:
    from ray.tune.execution.class_cache import _ActorClassCache

    tune_get = _ActorClassCache.get
    if shortcut:
        with _ray.actors_without_runtime_env() as replaced:
            cache = _ActorClassCache()
            remote = cache.get(Trainable)
            assert cache.get(Trainable) is remote  # cached as Tune caches it
        assert replaced
        assert remote._default_options.get("runtime_env") is None
    else:
        remote = _ActorClassCache().get(Trainable)
        assert remote._default_options["runtime_env"]["env_vars"]["PL_DISABLE_FORK"] == "1"
    assert _ActorClassCache.get is tune_get
