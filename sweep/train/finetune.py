"""A short fine-tune of a network that was made smaller (export's ``--finetune``), on the trial's own step:
``TrainStep`` in float32, plain SGD at a share of the trial's learning rate, no penalty (the dead units are
gone, so there is nothing left to prune)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sweep.config import TrialConfig
from sweep.device import Compute
from sweep.train.step import TrainStep

FINETUNE_LR_SCALE = 0.1  # of the trial's base learning rate
FINETUNE_SEED_OFFSET = 500  # its shuffles are not any epoch's of the trial (seed * 1000 + epoch)


def finetune_network(
    model: nn.Module, splits: Any, cfg: TrialConfig, epochs: int, device: torch.device
) -> dict[str, float]:
    """Train ``model`` for ``epochs`` more epochs on ``splits.train`` with the trial's batch size,
    momentum and weight decay at ``FINETUNE_LR_SCALE`` of its learning rate; the model ends on the CPU,
    in eval mode. Returns what the card records of it (``epochs``, ``lr``)."""
    lr = FINETUNE_LR_SCALE * cfg.lr
    model.to(device).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    step = TrainStep(model, optimizer, Compute(device, "fp32"))
    for epoch in range(epochs):
        seed = cfg.seed * 1000 + FINETUNE_SEED_OFFSET + epoch
        for x, y in splits.train.batches(cfg.batch_size, shuffle=True, seed=seed):
            step(step.compute.inputs(x), y.to(device, non_blocking=True))
    model.to("cpu").eval()
    return {"epochs": epochs, "lr": lr}
