"""A small real Optuna study in a SQLite file, shaped like the trials a LeNet/MNIST sweep records.

Complete, fully trained trials (held-out error %, alive neurons):
    0  none (baseline)        0.87   570   on the front
    1  group_lasso 1e-2       1.11    83   on the front
    2  group_lasso 3e-3       1.00   103   on the front
    3  l1 1e-3                0.95   300   on the front
    4  sparse_group_lasso     1.20    90   dominated by 1
    5  group_lasso 1e-1      88.65    70   on the front, fc1 empty
    6  FAIL (NaN loss)
    7  group_lasso 2e-2       0.50    60   early-stopped: would dominate all, must not enter the front
    8  nuclear 1e-3           1.05   570   dominated by 0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

STUDY = "lenet-mnist"
FULL = {"conv1": 20, "conv2": 50, "fc1": 500}
FRONT_NUMBERS = [5, 1, 2, 3, 0]  # sorted by neurons
COMPLETE_NUMBERS = [0, 1, 2, 3, 4, 5, 8]
DISTRIBUTIONS = {
    "penalty": CategoricalDistribution(["none", "l1", "group_lasso", "sparse_group_lasso", "nuclear"]),
    "lam": FloatDistribution(1e-6, 1.0, log=True),
    "alpha": FloatDistribution(0.0, 1.0),
}

# number: (penalty, lam, alpha, error, widths of conv1, conv2, fc1, early_stopped)
TRIALS: dict[int, tuple[str, float, float, float, tuple[int, int, int], bool]] = {
    0: ("none", 0.0, 0.5, 0.87, (20, 50, 500), False),
    1: ("group_lasso", 1e-2, 0.5, 1.11, (20, 50, 13), False),
    2: ("group_lasso", 3e-3, 0.5, 1.00, (20, 50, 33), False),
    3: ("l1", 1e-3, 0.5, 0.95, (20, 50, 230), False),
    4: ("sparse_group_lasso", 5e-3, 0.3, 1.20, (20, 50, 20), False),
    5: ("group_lasso", 1e-1, 0.5, 88.65, (20, 50, 0), False),
    7: ("group_lasso", 2e-2, 0.5, 0.50, (10, 40, 10), True),
    8: ("nuclear", 1e-3, 0.5, 1.05, (20, 50, 500), False),
}


def lenet_params(c1: int, c2: int, f1: int) -> int:
    return (25 * c1 + c1) + (25 * c1 * c2 + c2) + (16 * c2 * f1 + f1) + (f1 * 10 + 10)


def lenet_flops(c1: int, c2: int, f1: int) -> int:
    return 2 * (576 * 25 * c1 + 64 * 25 * c1 * c2 + 16 * c2 * f1 + f1 * 10)


def _attrs(number: int) -> dict[str, Any]:
    penalty, lam, alpha, error, (c1, c2, f1), early = TRIALS[number]
    epochs = 4 if early else 11
    history = [
        {
            "epoch": e,
            "loss": 2.0 / e,
            "top1_error": error + 5.0 / e,
            "neurons": 570 - (570 - c1 - c2 - f1) * e // epochs,
        }
        for e in range(1, epochs + 1)
    ]
    attrs: dict[str, Any] = {
        "widths": {"conv1": c1, "conv2": c2, "fc1": f1},
        "widths_full": dict(FULL),
        "params": lenet_params(c1, c2, f1),
        "params_full": lenet_params(20, 50, 500),
        "flops": lenet_flops(c1, c2, f1),
        "flops_full": lenet_flops(20, 50, 500),
        "memory_mb": lenet_params(c1, c2, f1) * 4 / 2**20,
        "epochs": epochs,
        "early_stopped": early,
        "checkpoint": f"runs/{STUDY}/trial{number}/model.pt",
        "config": {
            "model": "lenet",
            "dataset": "mnist",
            "penalty": penalty,
            "lam": lam,
            "alpha": alpha,
            "layers": None,
            "layer_scales": {},
            "epochs": 11,
            "debias_epochs": 5,
        },
        "dataset": "mnist",
        "seed": 0,
        "versions": {"torch": "2.x", "optuna": optuna.__version__},
        "test_top1_error": error + 0.05,
    }
    if number != 3:  # trial 3 keeps only Optuna's intermediate values
        attrs["history"] = history
    return attrs


def make_study(path: Path, name: str = STUDY, with_trials: bool = True) -> str:
    """Create the study in the SQLite file ``path``; returns its storage URL."""
    storage = f"sqlite:///{path}"
    study = optuna.create_study(storage=storage, study_name=name, directions=["minimize", "minimize"])
    study.set_user_attr("objectives", ["top1_error", "neurons"])
    if not with_trials:
        return storage
    for number in range(9):
        if number == 6:
            study.add_trial(
                optuna.trial.create_trial(
                    state=TrialState.FAIL,
                    params={"penalty": "l1", "lam": 0.5},
                    distributions={k: DISTRIBUTIONS[k] for k in ("penalty", "lam")},
                    user_attrs={"fail_reason": "NaN loss at epoch 2"},
                )
            )
            continue
        penalty, lam, alpha, error, widths, _ = TRIALS[number]
        params: dict[str, Any] = {"penalty": penalty, "lam": max(lam, 1e-6)}
        if penalty == "sparse_group_lasso":
            params["alpha"] = alpha
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: DISTRIBUTIONS[k] for k in params},
                values=[error, float(sum(widths))],
                user_attrs=_attrs(number),
                intermediate_values={e: error + 5.0 / e for e in range(1, 12)},
            )
        )
    return storage


def deep_study(path: Path) -> str:
    """A study of resnet56 (its 30 real channel groups) with five trials narrowing them differently."""
    import numpy as np

    from sweep import models

    full = models.create("resnet56").widths()
    storage = f"sqlite:///{path}"
    study = optuna.create_study(storage=storage, study_name="deep", directions=["minimize", "minimize"])
    study.set_user_attr("objectives", ["top1_error", "neurons"])
    rng = np.random.default_rng(0)
    for i in range(5):
        widths = {name: max(1, int(width * rng.uniform(0.1 + 0.2 * i, 1.0))) for name, width in full.items()}
        config = {"model": "resnet56", "dataset": "cifar10", "penalty": "group_lasso", "lam": 0.01 * (5 - i)}
        study.add_trial(
            optuna.trial.create_trial(
                params={"penalty": "group_lasso", "lam": 0.01 * (5 - i)},
                distributions={
                    "penalty": optuna.distributions.CategoricalDistribution(["group_lasso"]),
                    "lam": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
                },
                values=[8.0 - i * 0.5, float(sum(widths.values()))],
                user_attrs={"widths": widths, "widths_full": full, "config": config, "early_stopped": False},
            )
        )
    return storage
