"""Sparsity penalties: each has a value and a proximal operator over one channel group's parameters
(which may span several layers: a residual stream, a depthwise pair).

``prox_(groups, t)`` applies the proximal operator of ``t * penalty`` in place, where ``t`` is the step
size times lambda. The operators produce exact zeros; that is what lets neurons be removed.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn

from sweep.errors import SweepError
from sweep.registry import Registry
from sweep.sparsity.groups import NeuronGroups


class Penalty(Protocol):
    def value(self, groups: NeuronGroups) -> torch.Tensor: ...

    def prox_(self, groups: NeuronGroups, t: float) -> torch.Tensor | None:
        """Apply the prox in place; return the bool mask of neurons it left at zero, or None when the
        penalty does not act on whole neurons."""
        ...


PENALTIES: Registry[type] = Registry("penalty")


def soft_threshold_(x: torch.Tensor, t: float) -> None:
    """x <- sign(x) * max(|x| - t, 0), in place."""
    x.sub_(x.clamp(-t, t))


def group_shrink_factors(groups: NeuronGroups, t: float, bn_only: bool = False) -> torch.Tensor:
    """max(0, 1 - t*sqrt(|g|)/||w_g||) per channel; 0 where the group is already zero. |g| is the
    channel's size over all of the group's parameter slices (over its BatchNorm slices, with
    ``bn_only``: then w_g is the channel's gammas and betas)."""
    norms = groups.sq_norms(bn_only).sqrt_().clamp_min_(1e-30)  # a fresh tensor: worked on in place
    size = None if bn_only else groups.uniform_size
    if size is None:
        sizes = groups.bn_sizes if bn_only else groups.sizes
        assert sizes is not None
        return (1 - t * sizes.sqrt() / norms).clamp_min_(0)
    # float / tensor is tensor.reciprocal() * float in torch, and 1 - x is -x + 1 exactly: the same
    # values as (1 - thresh / norms), without the four temporaries
    return norms.reciprocal_().mul_(t * math.sqrt(size)).neg_().add_(1).clamp_min_(0)


def layer_matrix(groups: NeuronGroups) -> torch.Tensor:
    """The root layer's weight as out x (in * k * k)."""
    w = groups.layer.weight.data
    return w.view(w.shape[0], -1)


def check_single_layer(groups: NeuronGroups) -> None:
    if not groups.single_layer:
        raise SweepError(
            f"penalty nuclear acts on one layer's weight matrix; group {groups.name!r} is written by "
            f"{sum(isinstance(m, nn.Conv2d | nn.Linear) for m in groups.modules)} layers (a residual "
            "stream or a depthwise pair): use l1, group_lasso or sparse_group_lasso there"
        )


@PENALTIES.register("none")
class NoPenalty:
    def value(self, groups: NeuronGroups) -> torch.Tensor:
        return groups.layer.weight.new_zeros(())

    def prox_(self, groups: NeuronGroups, t: float) -> torch.Tensor | None:
        return None


@PENALTIES.register("l1")
class L1:
    """sum |w| over every parameter of the groups; prox: soft-thresholding."""

    def value(self, groups: NeuronGroups) -> torch.Tensor:
        return groups.abs_sum()

    @torch.no_grad()
    def prox_(self, groups: NeuronGroups, t: float) -> torch.Tensor | None:
        groups.soft_threshold_(t)
        return ~groups.alive()


@PENALTIES.register("group_lasso")
class GroupLasso:
    """sum over groups sqrt(|g|) * ||w_g||_2; prox: group soft-thresholding."""

    def value(self, groups: NeuronGroups) -> torch.Tensor:
        size = groups.uniform_size
        if size is not None:
            return math.sqrt(size) * groups.sq_norms().sqrt().sum()
        return (groups.sizes.sqrt() * groups.sq_norms().sqrt()).sum()

    def channel_rms(self, groups: NeuronGroups) -> torch.Tensor:
        """||w_g|| / sqrt(|g|): the prox removes a channel once t passes it."""
        return groups.channel_rms()

    @torch.no_grad()
    def prox_(self, groups: NeuronGroups, t: float) -> torch.Tensor | None:
        factors = group_shrink_factors(groups, t)
        groups.scale_(factors)
        return factors == 0


@PENALTIES.register("bn_group_lasso")
class BNGroupLasso(GroupLasso):
    """Group lasso on each channel's BatchNorm scale and shift, sum sqrt(|bn_g|) * ||(gamma, beta)_g||_2,
    where every layer writing the channel is batch-normalised; plain group lasso on other groups.

    Behind a BatchNorm a filter's norm does not change the output: the loss never pulls it back, so a
    prox on it shrinks every filter of a layer alike and, as the norms fall, raises the effective step
    size until training breaks (fine-tuning a trained MobileNet, sweep found no lambda between removing
    nothing and chance error). Gamma and beta do carry the channel's size and the loss defends those that
    matter (as in Liu et al. 2017, network slimming). Once both are zero the channel is zero wherever it
    is read, whatever its filters, so the prox zeroes those too and the channel is removed as any other."""

    def value(self, groups: NeuronGroups) -> torch.Tensor:
        if not groups.batch_normalised:
            return super().value(groups)
        return (groups.bn_sizes.sqrt() * groups.sq_norms(bn_only=True).sqrt()).sum()  # type: ignore[union-attr]

    def channel_rms(self, groups: NeuronGroups) -> torch.Tensor:
        return groups.channel_rms(bn_only=groups.batch_normalised)

    @torch.no_grad()
    def prox_(self, groups: NeuronGroups, t: float) -> torch.Tensor | None:
        if not groups.batch_normalised:
            return super().prox_(groups, t)
        factors = group_shrink_factors(groups, t, bn_only=True)
        groups.scale_(factors, bn_only=True)
        dead = factors == 0
        groups.zero_(dead)  # the filters too: the channel is zero wherever it is read
        return dead


@PENALTIES.register("sparse_group_lasso")
class SparseGroupLasso:
    """alpha * l1 + (1 - alpha) * group lasso. Its prox is exactly soft-threshold then group-shrink."""

    def __init__(self, alpha: float = 0.5) -> None:
        self.alpha = alpha

    def value(self, groups: NeuronGroups) -> torch.Tensor:
        return self.alpha * L1().value(groups) + (1 - self.alpha) * GroupLasso().value(groups)

    @torch.no_grad()
    def prox_(self, groups: NeuronGroups, t: float) -> torch.Tensor | None:
        groups.soft_threshold_(t * self.alpha)
        return GroupLasso().prox_(groups, t * (1 - self.alpha))


@PENALTIES.register("nuclear")
class Nuclear:
    """Sum of singular values of the layer's weight matrix; prox: singular-value soft-thresholding.

    It lowers the rank rather than the neuron count; export factorises such a layer into two thin ones."""

    def check(self, groups: NeuronGroups) -> None:
        check_single_layer(groups)

    def value(self, groups: NeuronGroups) -> torch.Tensor:
        check_single_layer(groups)
        return torch.linalg.svdvals(layer_matrix(groups)).sum()

    @torch.no_grad()
    def prox_(self, groups: NeuronGroups, t: float) -> torch.Tensor | None:
        check_single_layer(groups)
        w = layer_matrix(groups)
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        s = (s - t).clamp_min_(0)
        w.copy_((u * s) @ vh)
        return None


def make_penalty(name: str, alpha: float = 0.5) -> Penalty:
    cls = PENALTIES.get(name)
    return cls(alpha) if cls is SparseGroupLasso else cls()
