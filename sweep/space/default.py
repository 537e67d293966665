"""The search space of a model that has no search-space file (a model from outside the package).

A generic first search, printed by ``sweep run`` so it can be copied into a file and changed: the two
penalties whose prox zeroes whole channels (``group_lasso``, ``sparse_group_lasso``; ``l1`` zeroes single
weights and removes a channel only when every one of its weights happens to reach zero, ``nuclear`` lowers
rank), lambda over a log range, every layer that can lose channels, a debias phase and a lambda warm-up;
plain SGD with momentum and a cosine schedule. Its budgets follow the shipped ``resnet20.yaml``'s.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sweep.space.types import SearchSpace

SHOWN = "the default search space (sweep/space/default.py)"

TEXT = """\
objectives: [top1_error, neurons]
fixed:                      # plain SGD with momentum, the learning rate annealed by a cosine per phase
  batch_size: 64
  lr: 0.05
  momentum: 0.9
  weight_decay: 5.0e-4
  lr_policy: cosine
search:
  # none: the unconstrained baseline, one trial per study. Both penalties remove whole channels.
  penalty: {choices: [none, group_lasso, sparse_group_lasso]}
  lam: {low: 1.0e-4, high: 3.0e-2, log: true}
  alpha: {low: 0.0, high: 0.5}              # l1 share; sparse_group_lasso only
  layers: {choices: {all: null}}            # every layer that can lose channels
  debias_fraction: {low: 0.2, high: 0.6}    # share of the epochs with the penalty off, dead channels held
  warmup_epochs: {low: 0.0, high: 1.0}      # lambda ramps up from 0 over these epochs
start:
  - {penalty: group_lasso, lam: 0.002, layers: all, debias_fraction: 0.4, warmup_epochs: 0.5}
budgets:
  # a few steps need a larger lambda to remove anything: the prox shrinks by lr x lambda per step
  smoke: {trials: 2, epochs: 1, subset: 500, search: {lam: {low: 1.0e-2, high: 3.0e-1, log: true}}}
  quick: {trials: 12, epochs: 8, subset: 10000}
  full: {trials: 30, epochs: 30}
"""


def document(model: str, dataset: str | None = None) -> str:
    """The default space's YAML for ``model`` (and ``dataset``, when one is given)."""
    head = f"model: {json.dumps(model)}\n"  # a JSON string is a YAML string, whatever the path holds
    if dataset is not None:
        head += f"dataset: {json.dumps(dataset)}\n"
    return head + TEXT


def announce(space: SearchSpace) -> str | None:
    """What ``sweep run`` prints when ``space`` is this default one: the YAML a file would hold."""
    if space.path != SHOWN:
        return None
    text = document(space.model, space.dataset)
    return f"no search space file for this model: {SHOWN}, as a file would hold it:\n" + "".join(
        f"  {line}\n" for line in text.splitlines()
    ).rstrip("\n")
