"""Pruning by a channel importance (``method: magnitude``, and the prox's pruning to a FLOPs target):
score each channel, zero the lowest to a ratio, exactly as the prox zeroes a dead channel.

The pruned channels are exact zeros in every producer (conv/linear rows, biases, BatchNorm gamma and
beta), so the trial's fine-tuning holds them there with the debias phase's ``DeadMask`` and everything
downstream (widths, metrics, export, the Pareto front) reads them as removed channels.

The scores are computed over sweep's own ``NeuronGroups`` rather than with Torch-Pruning's importance
classes: those score a Torch-Pruning ``Group`` built by its ``DependencyGraph`` for a pruning call, whose
members include the consumers (input columns of the next layers) and whose channel indices follow its own
root; sweep's groups are the producers only, already mapped channel by channel (residual streams,
depthwise pairs) and on the trial's device, so the score of a channel is taken over exactly the parameters
``zero_`` sets to zero. The criteria are the usual ones:

- ``l1`` / ``l2``: the norm of the channel's producers (``MagnitudeImportance(p)``);
- ``bn_scale``: |gamma| summed over the channel's BatchNorms (network slimming's criterion,
  ``BNScaleImportance``);
- ``taylor``: first-order Taylor, (sum of w * dL/dw over the channel's producers)^2 accumulated over a few
  training batches (Molchanov et al. 2019, ``GroupTaylorImportance``);

with each group's scores divided by their mean for a global threshold (``normalizer="mean"``).
"""

from __future__ import annotations

import torch

from sweep.errors import SweepError
from sweep.sparsity.groups import BN_TYPES, NeuronGroups

NEEDS_GRADIENTS = ("taylor",)


def _bn_weights(group: NeuronGroups) -> set[torch.Tensor]:
    return {m.weight for m in group.modules if isinstance(m, BN_TYPES) and m.weight is not None}


def check_importance(groups: list[NeuronGroups], importance: str) -> None:
    """SweepError naming the first group ``importance`` cannot score (bn_scale needs a BatchNorm)."""
    if importance != "bn_scale":
        return
    for g in groups:
        if not _bn_weights(g):
            raise SweepError(
                f"importance bn_scale needs a BatchNorm on every pruned group; {g.name} has none "
                "(use l1, l2 or taylor, or leave it out of layers)"
            )


def taylor_terms(group: NeuronGroups) -> torch.Tensor:
    """Per channel, sum of w * dL/dw over its producers for the gradients now in ``.grad`` (square it and
    add over batches for the Taylor score)."""
    return group.channel_sums(
        lambda rows: rows.sum(dim=1),
        lambda s: None if s.param.grad is None else s.view(s.param.data * s.param.grad),
    )


def channel_importance(group: NeuronGroups, importance: str) -> torch.Tensor:
    """Per channel of ``group``: ``l1``, ``l2`` or ``bn_scale`` (``taylor`` needs gradients: see
    ``taylor_terms``)."""
    if importance == "l2":
        return group.sq_norms().sqrt()
    if importance == "bn_scale":
        gammas = _bn_weights(group)
        return group.channel_sums(
            lambda rows: rows.abs().sum(dim=1), lambda s: s.view() if s.param in gammas else None
        )
    if importance == "l1":
        return group.l1_norms()
    raise ValueError(f"importance {importance!r} is not computed from the weights alone")


def _lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Bool mask of the ``count`` smallest scores (ties broken by index, so the choice is repeatable)."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if count > 0:
        order = torch.sort(scores, stable=True).indices
        mask[order[:count]] = True
    return mask


def ratio_masks(
    groups: list[NeuronGroups], scores: list[torch.Tensor], ratio: float, scope: str = "local"
) -> list[torch.Tensor]:
    """For each group a bool mask of the channels to prune: ``local``, floor(ratio x width) of each
    group's lowest-scored channels; ``global``, floor(ratio x all channels) lowest over all groups, each
    group's scores divided by their mean first (so that groups of different sizes and scales compare).
    Every group keeps one channel at least. A channel already at zero scores 0, so it goes first."""
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


def magnitude_masks(
    groups: list[NeuronGroups], ratio: float, importance: str = "l1", scope: str = "local"
) -> list[torch.Tensor]:
    """``ratio_masks`` over the channels' ``channel_importance``."""
    return ratio_masks(groups, [channel_importance(g, importance) for g in groups], ratio, scope)


@torch.no_grad()
def prune_masks_(groups: list[NeuronGroups], masks: list[torch.Tensor]) -> None:
    """Zero the masked channels in every producer, in place."""
    for g, mask in zip(groups, masks, strict=True):
        g.zero_(mask)


@torch.no_grad()
def magnitude_prune_(
    groups: list[NeuronGroups], ratio: float, importance: str = "l1", scope: str = "local"
) -> list[torch.Tensor]:
    """Zero the channels ``magnitude_masks`` chooses in every producer, in place; returns the masks."""
    masks = magnitude_masks(groups, ratio, importance, scope)
    prune_masks_(groups, masks)
    return masks
