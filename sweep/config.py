"""Typed configuration: one trial (``TrialConfig``), and the search spaces that produce trials."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sweep.errors import SweepError

PENALTY_NAMES = ("none", "l1", "group_lasso", "sparse_group_lasso", "nuclear")
LR_POLICIES = ("constant", "inv", "multistep", "cosine")


@dataclass
class TrialConfig:
    """Everything one training run needs. Plain values only, so it travels through Ray and JSON."""

    model: str
    dataset: str | None = None  # None: the model's own dataset
    data_dir: str | None = None
    subset: int | None = None
    holdout: int | None = None  # held-out images taken from train for trial selection; None: dataset default
    penalty: str = "group_lasso"
    lam: float = 1e-3
    alpha: float = 0.5  # l1 share of sparse_group_lasso
    layers: list[str] | None = None  # constrained layers; None: every layer that can lose units
    layer_scales: dict[str, float] = field(default_factory=dict)  # per-layer multiplier on lam
    epochs: int = 10
    debias_epochs: int = 0  # last epochs: penalty off, dead neurons held at zero by a mask
    warmup_epochs: float = 0.0  # lam ramps linearly from 0 over these epochs
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_policy: str = "constant"
    lr_gamma: float = 1e-4  # inv: lr * (1 + gamma * iter) ** -power; multistep: factor per milestone
    lr_power: float = 0.75
    lr_milestones: list[int] = field(default_factory=list)  # multistep: epochs at which lr *= gamma
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    eval_test: bool = True  # also measure top-1 error on the test split at the end

    def validate(self) -> TrialConfig:
        def bad(key: str, allowed: str, got: Any) -> SweepError:
            return SweepError(f"{key} must be {allowed}, got {got!r}")

        if self.penalty not in PENALTY_NAMES:
            raise bad("penalty", f"one of {', '.join(PENALTY_NAMES)}", self.penalty)
        if not self.lam >= 0:
            raise bad("lam", "a number >= 0", self.lam)
        if not 0.0 <= self.alpha <= 1.0:
            raise bad("alpha", "in [0, 1]", self.alpha)
        if self.epochs < 1:
            raise bad("epochs", "at least 1", self.epochs)
        if not 0 <= self.debias_epochs < self.epochs:
            raise bad("debias_epochs", f"in [0, epochs={self.epochs})", self.debias_epochs)
        if self.warmup_epochs < 0:
            raise bad("warmup_epochs", ">= 0", self.warmup_epochs)
        if self.batch_size < 1:
            raise bad("batch_size", "at least 1", self.batch_size)
        if not self.lr > 0:
            raise bad("lr", "> 0", self.lr)
        if self.lr_policy not in LR_POLICIES:
            raise bad("lr_policy", f"one of {', '.join(LR_POLICIES)}", self.lr_policy)
        if self.subset is not None and self.subset < 1:
            raise bad("subset", "at least 1", self.subset)
        for name, scale in self.layer_scales.items():
            if not scale >= 0:
                raise bad(f"layer_scales.{name}", ">= 0", scale)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SweepError(
                f"unknown trial setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)
