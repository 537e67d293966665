"""sweep: find compact CNNs with sparsity penalties that delete neurons and filters during training."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["__version__", "load_compact"]

if TYPE_CHECKING:
    from torch import nn


def load_compact(folder: str) -> nn.Module:
    """Rebuild an exported compact network from ``model.safetensors`` + ``architecture.json`` (no pickle)."""
    from sweep.export import load_compact as _load

    return _load(folder)
