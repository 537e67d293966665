"""Torch-Pruning, imported once for ``sweep.structure``.

Its op counter imports timm when timm is installed, for the attention layers of vision transformers,
which ``sweep`` never counts with it (``sweep.measure`` counts FLOPs with ``torch.utils.flop_counter``);
timm in turn imports torchvision, about 2.5 s more before each Ray worker's first trial. So the library
is imported with timm hidden, unless timm is loaded already (a ``timm:NAME`` model)."""

from __future__ import annotations

import sys

if "timm" in sys.modules:
    import torch_pruning as tp
else:
    sys.modules["timm"] = None  # type: ignore[assignment]  # `import timm` raises ImportError meanwhile
    try:
        import torch_pruning as tp
    finally:
        del sys.modules["timm"]

__all__ = ["tp"]
