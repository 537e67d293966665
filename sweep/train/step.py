"""A trial's training step: the loss (with distillation from a teacher where asked) under the
trial's precision, the optimizer step and the gradient scaler (``sweep.device`` says where it runs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sweep.device import Compute


@dataclass
class Teacher:
    """Knowledge distillation (Hinton, Vinyals, Dean 2015): a frozen network whose outputs, softened by
    ``temperature``, the trained one matches for a ``share`` of its loss."""

    model: torch.nn.Module
    share: float
    temperature: float

    def __post_init__(self) -> None:
        self.model.eval().requires_grad_(False)

    def loss(self, logits: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """(1 - share) x cross-entropy on the labels + share x T^2 x KL(teacher || student) at
        temperature T (T^2 keeps the soft term's gradients on the scale of the hard one's)."""
        t = self.temperature
        with torch.no_grad():
            soft_target = torch.nn.functional.log_softmax(self.model(x).float() / t, dim=1)
        soft = torch.nn.functional.kl_div(
            torch.nn.functional.log_softmax(logits.float() / t, dim=1),
            soft_target,
            reduction="batchmean",
            log_target=True,
        )
        hard = torch.nn.functional.cross_entropy(logits, y)
        return (1 - self.share) * hard + self.share * t * t * soft


class TrainStep:
    """forward + loss under autocast, backward, optimizer step (through a gradient scaler for fp16).
    With a ``teacher`` the loss is its distillation loss, else cross-entropy.

    Returns the loss and whether the optimizer stepped: the scaler skips a step whose gradients
    overflowed, and then the prox must not run either (it belongs to the step it follows)."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        compute: Compute,
        teacher: Teacher | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.compute = compute
        self.teacher = teacher
        self.scaler = torch.amp.GradScaler("cuda") if compute.precision == "fp16" else None
        self._scale = self.scaler.get_scale() if self.scaler is not None else 1.0

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, bool]:
        with self.compute.autocast():
            logits = self.model(x)
            if self.teacher is None:
                loss = torch.nn.functional.cross_entropy(logits, y)
            else:
                loss = self.teacher.loss(logits, x, y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
            return loss, True
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        scale = self.scaler.get_scale()  # lowered only when this step's gradients overflowed
        stepped = not scale < self._scale
        self._scale = scale
        return loss, stepped
