"""The reaches into Ray's private parts that ``sweep run`` still needs, all of them here, each with why.

Everything else in ``sweep.search`` talks to Ray through its public API (``ray.init``, ``tune.Tuner``,
``tune.Callback``, ``ray.tune.search.Searcher``, ``ConcurrencyLimiter``, ...). These three are what a Ray
started by ``sweep run`` needs so that trial workers start with the training code already imported
(``sweep.search.cluster.workers`` says why that matters). tests/test_search_ray.py exercises each one
against the installed Ray, so an upgrade that moves them fails there and not in the middle of a sweep.
When one no longer fits, the caller falls back to Ray's ordinary behaviour: only the head start is lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any


def preload_option(modules: Sequence[str]) -> dict[str, Any]:
    """``ray.init`` keyword arguments that make every Python worker of a Ray started here import
    ``modules`` as it starts. Private: ``_system_config`` is ``ray.init``'s underscored argument and
    ``preload_python_modules`` one of Ray's internal settings; Ray has no public way to warm its workers."""
    return {"_system_config": {"preload_python_modules": list(modules)}}


def tune_trial_env() -> tuple[dict[str, str], tuple[str, ...]] | None:
    """What Tune puts into the runtime environment of each trial actor: its default variables and the
    names of the driver's variables it copies. Private: ``ray.tune.execution.class_cache`` (its
    ``DEFAULT_ENV_VARS``, ``ENV_VARS_TO_PROPAGATE``) is Tune's internal module; no public API reports
    them. None when the installed Tune no longer has them."""
    try:
        from ray.tune.execution import class_cache
    except ImportError:
        return None
    defaults = getattr(class_cache, "DEFAULT_ENV_VARS", None)
    names = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", None)
    if not isinstance(defaults, dict) or names is None:
        return None
    return dict(defaults), tuple(names)


@contextlib.contextmanager
def actors_without_runtime_env() -> Iterator[bool]:
    """While the ``with`` block runs, Tune registers each trainable as a plain ``ray.remote`` actor class,
    without the runtime environment it would give it, so Ray may hand the trial an idle (prestarted,
    preloaded) worker. Private: Tune's ``_ActorClassCache.get`` (in ``ray.tune.execution.class_cache``)
    and the cache dict it keeps (``_cache``) are replaced for the block and restored after it. Yields
    False, and changes nothing, when the installed Tune has no such cache."""
    import ray

    try:
        from ray.tune.execution import class_cache
    except ImportError:
        yield False
        return
    cache_type = getattr(class_cache, "_ActorClassCache", None)
    tune_get = getattr(cache_type, "get", None)
    if cache_type is None or tune_get is None:
        yield False
        return

    def get(self: Any, trainable_cls: type) -> Any:
        cache = self._cache
        if trainable_cls not in cache:
            cache[trainable_cls] = ray.remote(trainable_cls)
        return cache[trainable_cls]

    cache_type.get = get
    try:
        yield True
    finally:
        cache_type.get = tune_get
