"""Neuron groups, sparsity penalties with their proximal operators, and the forward-backward step."""

from sweep.sparsity.compact import (
    LowRankPair,
    check_equivalence,
    compact,
    compact_network,
    factorised_ranks,
    layer_widths,
    logits_difference,
    low_rank_layers,
    masked,
)
from sweep.sparsity.groups import NeuronGroups, alive_masks, alive_widths, neuron_groups
from sweep.sparsity.magnitude import magnitude_prune_
from sweep.sparsity.penalties import PENALTIES, Nuclear, Penalty, make_penalty
from sweep.sparsity.prox import DeadMask, ProxStep, rms_scales

__all__ = [
    "PENALTIES",
    "DeadMask",
    "LowRankPair",
    "NeuronGroups",
    "Nuclear",
    "Penalty",
    "ProxStep",
    "alive_masks",
    "alive_widths",
    "check_equivalence",
    "compact",
    "compact_network",
    "factorised_ranks",
    "layer_widths",
    "logits_difference",
    "low_rank_layers",
    "magnitude_prune_",
    "make_penalty",
    "masked",
    "neuron_groups",
    "rms_scales",
]
