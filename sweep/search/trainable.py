"""The function Ray runs for each trial of a sweep (``make_trainable``). Ray ships it to the trial's worker
by value: it refers to no module of the driver's (Optuna, SQLAlchemy, ``sweep.study.create``), whose import would
cost every worker that time again (tests/test_worker_imports.py)."""

from __future__ import annotations

import json
import socket
import tempfile
from typing import Any

from sweep.search.searcher import EMPTY_LAYERS, RECORD
from sweep.space import Budget, SearchSpace

TRIAL_NUMBER = "sweep_trial_number"  # added to each Ray trial's config: names its folder


def make_trainable(space: SearchSpace, budget: Budget, overrides: dict[str, Any]):
    """The function Ray runs per trial: builds the TrialConfig from the sampled parameters and calls
    ``train_trial`` with a report that forwards each epoch (and its checkpoint folder) to Ray."""

    def sweep_trial(config: dict[str, Any]) -> None:
        import ray
        import torch
        from ray import tune

        from sweep.search.cluster.workers import match_ray_threads
        from sweep.train import HISTORY_KEYS, train_trial, versions

        match_ray_threads()  # a prestarted worker imported torch before Ray set the trial's threads

        params = {k: v for k, v in config.items() if k != TRIAL_NUMBER}
        cfg = space.trial_config(params, budget, overrides)
        # Training's final report carries these itself; an epoch cut short by the scheduler needs them too.
        supplement = {
            "config": cfg.to_dict(),
            "dataset": cfg.dataset,
            "seed": cfg.seed,
            "versions": versions(),
            "node": {  # where Ray placed the trial: the study's user attribute ``node``
                "id": ray.get_runtime_context().get_node_id(),
                "ip": ray.util.get_node_ip_address(),
                "host": socket.gethostname(),
                "threads": torch.get_num_threads(),
            },
        }
        history: list[dict[str, Any]] = []

        def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
            history.append({k: metrics[k] for k in HISTORY_KEYS if k in metrics})
            record = {**supplement, "history": list(history), **metrics}
            flat = {
                k: v
                for k, v in metrics.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and k != "done"
            }
            flat[EMPTY_LAYERS] = len(metrics.get("empty_layers") or [])
            # Plain json, not sweep.study.create's jsonable: referring to it here would import sweep.study.create (Optuna,
            # SQLAlchemy) into every trial's worker. The driver makes the values JSON-safe when it records.
            flat[RECORD] = json.dumps(record, default=lambda v: v.item() if hasattr(v, "item") else str(v))
            checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
            tune.report(flat, checkpoint=checkpoint)

        with tempfile.TemporaryDirectory(prefix="sweep-trial-") as work:
            train_trial(cfg, report, out_dir=work)

    return sweep_trial
