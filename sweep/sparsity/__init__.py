"""Neuron groups, sparsity penalties with their proximal operators, and the forward-backward step."""

from sweep.sparsity.groups import NeuronGroups, alive_masks, alive_widths, neuron_groups
from sweep.sparsity.penalties import PENALTIES, Penalty, make_penalty
from sweep.sparsity.prox import DeadMask, ProxStep

__all__ = [
    "PENALTIES",
    "DeadMask",
    "NeuronGroups",
    "Penalty",
    "ProxStep",
    "alive_masks",
    "alive_widths",
    "make_penalty",
    "neuron_groups",
]
