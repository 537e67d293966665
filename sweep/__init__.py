"""sweep: find compact CNNs with sparsity penalties that delete neurons and filters during training."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sweep._version import __version__

__all__ = ["__version__", "load_compact"]

if TYPE_CHECKING:
    from torch import nn


def load_compact(
    folder: str, *, model: Callable[..., Any] | None = None, trust_code: bool = False
) -> nn.Module:
    """Rebuild an exported compact network from ``model.safetensors`` + ``architecture.json``.

    Nothing is unpickled and nothing the files name is imported: a registered model or an installed
    entry point is rebuilt by name; a network from outside sweep needs ``model`` (the function that
    builds it, as it was given to ``sweep run``) or ``trust_code=True``, which imports the ``pkg.mod:fn`` /
    ``file.py:fn`` that ``architecture.json`` names: say it only for folders whose writers you trust."""
    from sweep.export import load_compact as _load

    return _load(folder, model=model, trust_code=trust_code)
