"""Forward-backward splitting: an ordinary optimizer step on the loss, then the penalty's prox.

Also the debias phase's mask: once the penalty is off, dead neurons are held at exactly zero."""

from __future__ import annotations

import torch

from sweep.sparsity.groups import NeuronGroups
from sweep.sparsity.penalties import Penalty


class ProxStep:
    """Apply ``prox(lr * lam * scale_layer * penalty)`` to each constrained layer after ``optimizer.step()``.

    Groups the prox drives to zero get their momentum zeroed as well; otherwise momentum would bring them
    back at the next step."""

    def __init__(
        self,
        groups: list[NeuronGroups],
        penalty: Penalty,
        lam: float,
        layer_scales: dict[str, float] | None = None,
    ) -> None:
        scales = layer_scales or {}
        self.groups = groups
        self.penalty = penalty
        self.lam = lam
        self.scales = [float(scales.get(g.name, 1.0)) for g in groups]
        check = getattr(penalty, "check", None)
        if check is not None:
            for g, scale in zip(groups, self.scales, strict=True):
                if lam * scale > 0:
                    check(g)

    def value(self) -> torch.Tensor:
        """lam * sum_layer scale * penalty(layer): the term added to the loss, for logging."""
        total = sum(s * self.penalty.value(g) for g, s in zip(self.groups, self.scales, strict=True))
        return self.lam * total  # type: ignore[return-value]

    @torch.no_grad()
    def __call__(self, optimizer: torch.optim.Optimizer, lam_factor: float = 1.0) -> None:
        lr = float(optimizer.param_groups[0]["lr"])
        for g, scale in zip(self.groups, self.scales, strict=True):
            t = lr * self.lam * lam_factor * scale
            if t <= 0:
                continue
            dead = self.penalty.prox_(g, t)
            if dead is not None:
                g.zero_(dead, optimizer, params=False)


class DeadMask:
    """Holds the neurons that are dead when it is made at exactly zero (debias phase)."""

    def __init__(self, groups: list[NeuronGroups]) -> None:
        self.entries = [(g, dead) for g in groups if (dead := ~g.alive()).any()]

    @torch.no_grad()
    def __call__(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        for g, dead in self.entries:
            g.zero_(dead, optimizer)
