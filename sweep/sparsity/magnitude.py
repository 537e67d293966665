"""One-shot magnitude pruning (``method: magnitude``): rank each channel by the norm of everything that
produces it, zero the smallest to a pruning ratio, exactly as the prox zeroes a dead channel.

The pruned channels are exact zeros in every producer (conv/linear rows, biases, BatchNorm gamma and
beta), so the trial's fine-tuning holds them there with the debias phase's ``DeadMask`` and everything
downstream (widths, metrics, export, the Pareto front) reads them as removed channels.

The norms are computed over sweep's own ``NeuronGroups`` rather than with Torch-Pruning's
``MagnitudeImportance``: that class scores a Torch-Pruning ``Group`` built by its ``DependencyGraph`` for a
pruning call, whose members include the consumers (input columns of the next layers) and whose channel
indices follow its own root; sweep's groups are the producers only, already mapped channel by channel
(residual streams, depthwise pairs) and on the trial's device, so the score of a channel is the norm of
exactly the parameters ``zero_`` sets to zero. Its L1 / L2 over a group's producers, with the group mean
as normaliser for a global threshold, is the same criterion as ``MagnitudeImportance(p, normalizer="mean")``
restricted to those parameters.
"""

from __future__ import annotations

import torch

from sweep.sparsity.groups import NeuronGroups


def channel_importance(group: NeuronGroups, importance: str) -> torch.Tensor:
    """Per channel of ``group``: the L1 norm (``l1``) or the L2 norm (``l2``) of its producers' rows."""
    return group.sq_norms().sqrt() if importance == "l2" else group.l1_norms()


def _lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Bool mask of the ``count`` smallest scores (ties broken by index, so the choice is repeatable)."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if count > 0:
        order = torch.sort(scores, stable=True).indices
        mask[order[:count]] = True
    return mask


def magnitude_masks(
    groups: list[NeuronGroups], ratio: float, importance: str = "l1", scope: str = "local"
) -> list[torch.Tensor]:
    """For each group a bool mask of the channels to prune: ``local``, floor(ratio x width) of each
    group's lowest-scored channels; ``global``, floor(ratio x all channels) lowest over all groups, each
    group's scores divided by their mean first (so that groups of different sizes and scales compare).
    Every group keeps one channel at least."""
    scores = [channel_importance(g, importance) for g in groups]
    if scope == "local":
        return [
            _lowest(s, min(int(ratio * g.width), g.width - 1)) for g, s in zip(groups, scores, strict=True)
        ]
    normalised = [s / s.mean().clamp_min(torch.finfo(s.dtype).tiny) for s in scores]
    flat = torch.cat(normalised)
    chosen = _lowest(flat, int(ratio * flat.numel())).split([g.width for g in groups])
    masks = []
    for s, mask in zip(normalised, chosen, strict=True):
        if bool(mask.all()):  # the group's best channel stays
            mask = mask.clone()
            mask[int(torch.argmax(s))] = False
        masks.append(mask)
    return masks


@torch.no_grad()
def magnitude_prune_(
    groups: list[NeuronGroups], ratio: float, importance: str = "l1", scope: str = "local"
) -> list[torch.Tensor]:
    """Zero the channels ``magnitude_masks`` chooses in every producer, in place; returns the masks."""
    masks = magnitude_masks(groups, ratio, importance, scope)
    for g, mask in zip(groups, masks, strict=True):
        g.zero_(mask)
    return masks
