"""One trial's training, with no Ray or Optuna: the loop, its step, checkpoints and initial weights."""

from sweep.train.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from sweep.train.step import Teacher, TrainStep
from sweep.train.trial import (
    EVAL_BATCH,
    EVAL_BATCH_CPU,
    HISTORY_KEYS,
    HOLDOUT_SEED,
    DivergedError,
    command_line_config,
    seed_everything,
    torchvision_version,
    train_trial,
    versions,
)
from sweep.train.weights import absolute_init, check_init, load_initial_weights

__all__ = [
    "EVAL_BATCH",
    "EVAL_BATCH_CPU",
    "HISTORY_KEYS",
    "HOLDOUT_SEED",
    "DivergedError",
    "Teacher",
    "TrainStep",
    "absolute_init",
    "check_init",
    "checkpoint_path",
    "command_line_config",
    "load_checkpoint",
    "load_initial_weights",
    "save_checkpoint",
    "seed_everything",
    "torchvision_version",
    "train_trial",
    "versions",
]
