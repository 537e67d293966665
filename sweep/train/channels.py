"""What a trial does to its channels besides the prox: prune by an importance at the start
(``method: magnitude``) or at the end of the sparse phase, to a ratio or down to a FLOPs target, and
rewind the survivors to the weights the trial started from.

``flops_target`` aims a trial at a budget instead of a lambda: the ratio of channels pruned (the same in
every group, or one global threshold) is bisected until the network that would remain has removed at
least that share of the full network's FLOPs, as ``size_at`` counts them (the export's own count). With
the prox, the sparse phase ends as soon as its network meets the target (checked every 5 steps), else at its scheduled
end, where the channels the penalty already zeroed score 0 and go first, so the target tops up what the
sparse phase removed, as Torch-Pruning's group-regularisation pruners prune after their penalty.

``lam_scaling: flops`` weighs the penalty's pull on each group by the FLOPs that removing one of its
channels saves (over the groups' geometric mean), so that a study minimising FLOPs prunes where they are:
a group-lasso pull otherwise grows with sqrt(group size), the wrong way round for a ResNet, whose late
stages have the largest groups and the cheapest channels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sweep.config import TrialConfig
from sweep.data.splits import Splits
from sweep.device import Compute
from sweep.errors import SweepError
from sweep.measure import NetworkSize, size_at
from sweep.models import Net
from sweep.sparsity import DeadMask, NeuronGroups, alive_masks, neuron_groups
from sweep.sparsity.magnitude import (
    NEEDS_GRADIENTS,
    channel_importance,
    check_importance,
    prune_masks_,
    ratio_masks,
    taylor_terms,
)

TAYLOR_BATCHES = 16  # training batches whose gradients the Taylor score sums
TARGET_CHECK_EVERY = 5  # iterations between the prox's checks of its FLOPs target (~0.1 s each)


def flops_scales(model: Net, groups: list[NeuronGroups]) -> dict[str, float]:
    """Per group, the FLOPs removing one of its channels saves, over the geometric mean of those."""
    full = size_at(model).flops
    saved = {}
    for g in groups:
        keep = torch.ones(g.width, dtype=torch.bool)
        keep[0] = False
        saved[g.name] = max(full - size_at(model, {g.name: keep}).flops, 1)
    mean = math.exp(sum(math.log(v) for v in saved.values()) / max(len(saved), 1))
    return {name: v / mean for name, v in saved.items()}


def scaled_layer_scales(cfg: TrialConfig, model: Net, groups: list[NeuronGroups]) -> dict[str, float]:
    """``cfg.layer_scales`` times the FLOPs scales when ``lam_scaling`` asks for them."""
    if "flops" not in cfg.lam_scaling:
        return dict(cfg.layer_scales)
    by_flops = flops_scales(model, groups)
    return {g.name: cfg.layer_scales.get(g.name, 1.0) * by_flops[g.name] for g in groups}


def taylor_scores(
    model: Net, groups: list[NeuronGroups], splits: Splits, cfg: TrialConfig, compute: Compute
) -> list[torch.Tensor]:
    """Per group, (sum of w * dL/dw over each channel's producers)^2 summed over ``TAYLOR_BATCHES``
    training batches (in eval mode: the BatchNorm statistics stay as they are)."""
    was_training = model.training
    model.eval()
    scores = [torch.zeros(g.width, dtype=g.sizes.dtype, device=g.sizes.device) for g in groups]
    batches = splits.train.batches(cfg.batch_size, shuffle=True, seed=cfg.seed * 1000 - 1)
    for index, (x, y) in enumerate(batches):
        if index == TAYLOR_BATCHES:
            break
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(compute.inputs(x)).float(), y.to(compute.device)).backward()
        for g, acc in zip(groups, scores, strict=True):
            acc += taylor_terms(g).square()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return scores


class ChannelPlan:
    """One trial's pruning by importance: ``at_epoch`` (magnitude) and ``at_debias`` (prox)."""

    def __init__(
        self,
        cfg: TrialConfig,
        model: Net,
        groups: list[NeuronGroups],
        splits: Splits,
        compute: Compute,
        full: NetworkSize,
    ) -> None:
        self.cfg, self.model, self.groups, self.splits, self.compute = cfg, model, groups, splits, compute
        self.full = full
        self.ratio: float | None = None  # the ratio pruned to, once pruned
        pruning = cfg.method == "magnitude" or cfg.flops_target is not None
        if pruning:
            check_importance(groups, cfg.importance)
        # the weights rewinding returns to (after init, before any step), kept on the host
        self.start = (
            {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            if cfg.rewind
            else None
        )

    def scores(self) -> list[torch.Tensor]:
        if self.cfg.importance in NEEDS_GRADIENTS:
            return taylor_scores(self.model, self.groups, self.splits, self.cfg, self.compute)
        return [channel_importance(g, self.cfg.importance) for g in self.groups]

    def prune(self, ratio: float | None, share: float = 1.0) -> None:
        """Zero channels by importance: to ``ratio``, or with None to the config's ``flops_target``;
        ``share`` of the way there (a step of iterative pruning). Channels already zero score 0, so a
        later step keeps what an earlier one pruned and adds to it."""
        scores = self.scores()
        if ratio is None:
            ratio = self.target_ratio(scores, share)
        else:
            ratio *= share
        prune_masks_(self.groups, ratio_masks(self.groups, scores, ratio, self.cfg.scope))
        self.ratio = ratio

    def target_ratio(self, scores: list[torch.Tensor], share: float = 1.0) -> float:
        """The smallest ratio whose pruning removes at least ``share`` x ``flops_target`` of the full
        FLOPs."""
        assert self.cfg.flops_target is not None
        budget = (1 - share * self.cfg.flops_target) * self.full.flops
        alive = alive_masks(self.model)

        def flops_at(ratio: float) -> int:
            keep = dict(alive)
            for g, pruned in zip(
                self.groups, ratio_masks(self.groups, scores, ratio, self.cfg.scope), strict=True
            ):
                keep[g.name] = alive[g.name] & ~pruned.to(alive[g.name].device)
            return size_at(self.model, keep).flops

        if flops_at(0.0) <= budget:
            return 0.0
        low, high = 0.0, 1.0 - 1e-9
        least = flops_at(high)
        if least > budget:
            raise SweepError(
                f"flops_target {self.cfg.flops_target:g} cannot be reached by pruning "
                f"{', '.join(g.name for g in self.groups)}: at most "
                f"{1 - least / self.full.flops:.1%} of the FLOPs can go (prune more layers, or aim lower)"
            )
        # ratios closer than half a channel of all the groups' choose the same channels
        steps = math.ceil(math.log2(2 * sum(g.width for g in self.groups))) + 1
        for _ in range(steps):
            middle = (low + high) / 2
            if flops_at(middle) <= budget:
                high = middle
            else:
                low = middle
        return high

    def target_met(self, iteration: int) -> bool:
        """Every ``TARGET_CHECK_EVERY`` iterations of the sparse phase: whether the network the prox has
        left meets the FLOPs target (False without one)."""
        target = self.cfg.flops_target
        if target is None or iteration % TARGET_CHECK_EVERY:
            return False
        return size_at(self.model, alive_masks(self.model)).flops <= (1 - target) * self.full.flops

    def at_epoch(self, epoch: int, optimizer: torch.optim.Optimizer) -> DeadMask | None:
        """Magnitude, at the start of each of the first ``prune_steps`` epochs: prune the weights to
        that step's share of the target; the new mask holds every pruned channel at zero (and clears the
        momentum of those just pruned). None where no step falls."""
        steps = self.cfg.prune_steps
        if self.cfg.method != "magnitude" or epoch >= steps:
            return None
        ratio = None if self.cfg.flops_target is not None else self.cfg.prune_ratio
        self.prune(ratio, (epoch + 1) / steps)
        mask = DeadMask(neuron_groups(self.model))
        mask(optimizer)
        return mask

    def at_debias(self, optimizer: torch.optim.Optimizer) -> DeadMask:
        """End of the prox's sparse phase: top up to the FLOPs target, fix the dead channels and, with
        ``rewind``, start the survivors again from the trial's starting weights (momentum cleared)."""
        if self.cfg.flops_target is not None:
            self.prune(None)
        mask = DeadMask(neuron_groups(self.model))
        if self.start is not None:
            self.model.load_state_dict(self.start)
            optimizer.state.clear()
            mask(optimizer)
        return mask


def method_text(cfg: TrialConfig) -> str:
    target = f"to {cfg.flops_target:.0%} of the FLOPs removed" if cfg.flops_target is not None else ""
    if cfg.method == "magnitude":
        amount = target or f"{cfg.prune_ratio:.2f}"
        steps = f" in {cfg.prune_steps} steps, one an epoch" if cfg.prune_steps > 1 else ""
        return f"pruning by {cfg.importance} {amount} {cfg.scope}{steps}, then fine-tuning"
    scaled = {
        "rms": " scaled by layer RMS",
        "flops": " scaled by FLOPs",
        "rms_flops": " scaled by RMS and FLOPs",
    }
    return (
        f"penalty {cfg.penalty}, lambda {cfg.lam:g}{scaled.get(cfg.lam_scaling, '')}"
        + (f", pruned by {cfg.importance} {target} after the sparse phase" if target else "")
        + (", survivors rewound" if cfg.rewind else "")
    )
