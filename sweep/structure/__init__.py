"""Coupled channel groups of any network, pruning a copy from keep-masks, and a replayable removal record.

The only part of sweep that imports Torch-Pruning (pinned in pyproject.toml)::

    structure = channel_groups(model, example_input)     # groups named after their root layer
    compact, record = prune(model, example_input, keep)  # keep: group name -> bool per channel
    rebuilt = replay(fresh_dense_model, example_input, Removal.from_dict(record.to_dict()))
    rebuilt.load_state_dict(compact.state_dict())

``structure.kept`` names the layers whose channels pass a channel shuffle and are kept whole; a group's
``blocks`` say which of its channels share a grouped conv's group (``prune`` removes as many from each).
"""

from sweep.structure.graph import ChannelGroup, ParamSlice, Structure, channel_groups
from sweep.structure.prune import Removal, prune, replay

__all__ = ["ChannelGroup", "ParamSlice", "Removal", "Structure", "channel_groups", "prune", "replay"]
