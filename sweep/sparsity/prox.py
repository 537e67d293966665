"""Forward-backward splitting: an ordinary optimizer step on the loss, then the penalty's prox.

Also the debias phase's mask: once the penalty is off, dead neurons are held at exactly zero."""

from __future__ import annotations

import math

import torch

from sweep.sparsity.groups import NeuronGroups
from sweep.sparsity.penalties import Penalty


def rms_scales(groups: list[NeuronGroups], penalty: Penalty) -> list[float]:
    """Each group's median channel RMS over its live channels (the part of the channel the penalty
    acts on: ||w_g|| / sqrt(|g|) for group lasso), divided by the geometric mean of those medians over
    the groups.

    A group-lasso prox removes a channel once the pull summed over the steps, sum(lr) * lam * scale,
    passes the channel's RMS. A trained network's layers differ in RMS several times over (a
    MobileNet's last 1x1 conv is at a fifth of its first layers'), so one lambda empties the smallest
    layer before any other loses a channel; scaled by these, one lambda pulls every layer by the same
    share of its typical channel."""
    channel_rms = getattr(penalty, "channel_rms", None)  # else the whole group's, as group lasso's
    medians: list[float] = []
    for g in groups:
        rms = channel_rms(g) if channel_rms is not None else g.channel_rms()
        live = rms[rms > 0]
        medians.append(float(live.median()) if live.numel() else 0.0)
    positive = [m for m in medians if m > 0]
    if not positive:
        return [1.0] * len(groups)
    mean = math.exp(sum(math.log(m) for m in positive) / len(positive))
    return [m / mean for m in medians]


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
        lam_scaling: str = "uniform",
    ) -> None:
        scales = layer_scales or {}
        self.groups = groups
        self.penalty = penalty
        self.lam = lam
        self.scales = [float(scales.get(g.name, 1.0)) for g in groups]
        if lam_scaling in ("rms", "rms_flops"):
            self.scales = [s * r for s, r in zip(self.scales, rms_scales(groups, penalty), strict=True)]
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
