"""One trial's training, with no Ray or Optuna: the loop, its step, checkpoints and initial weights."""

from sweep.measure import EVAL_BATCH, EVAL_BATCH_CPU
from sweep.train.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from sweep.train.finetune import FINETUNE_LR_SCALE, finetune_network
from sweep.train.step import Teacher, TrainStep
from sweep.train.trial import (
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
    "FINETUNE_LR_SCALE",
    "HISTORY_KEYS",
    "HOLDOUT_SEED",
    "DivergedError",
    "Teacher",
    "TrainStep",
    "absolute_init",
    "check_init",
    "checkpoint_path",
    "command_line_config",
    "finetune_network",
    "load_checkpoint",
    "load_initial_weights",
    "save_checkpoint",
    "seed_everything",
    "torchvision_version",
    "train_trial",
    "versions",
]
