"""The network every registered model is, and the model registry.

Every model is a ``Net``: any ``nn.Module`` as its ``body`` plus its registry name, input size and class
count. What can lose channels comes from ``sweep.structure``'s dependency analysis of the body: its
coupled channel groups, named after their root layer (``layer2.0.conv1``), traced once per architecture.
``ChainNet`` is the Net whose body is one ``nn.Sequential`` of named layers (the seed's chains, which
``sweep.sparsity.compact`` and export still handle on their own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sweep.errors import SweepError, quote
from sweep.models import external
from sweep.models.net import Net
from sweep.registry import Registry

ModelFactory = Callable[..., Net]
MODELS: Registry[ModelFactory] = Registry("model")


def register_model(
    name: str | None = None, *, dataset: str, input_size: tuple[int, int, int], chain: bool = True
) -> Callable:
    """Register a model entry function. ``dataset`` is the dataset its search space trains on by default,
    ``input_size`` (channels, height, width) what it expects when nothing else is said; ``chain`` whether
    it returns a ``ChainNet`` (which ``sweep.sparsity.compact`` and export handle)."""
    return MODELS.register(name, dataset=dataset, input_size=tuple(input_size), chain=chain)


def names() -> list[str]:
    """The registered models (entry points and references are accepted besides; see ``check``)."""
    return MODELS.names()


def is_external(name: str) -> bool:
    """A model from outside the package: not registered, but an entry point's name or a reference."""
    return name not in MODELS and external.is_external(name)


def check(name: object) -> str:
    """``name`` as trials record it, once it is known to name a model: a registered one, an entry point
    of group ``sweep.models``, or a ``MODULE:FUNCTION`` / ``FILE.py:FUNCTION`` reference (imported here;
    a file's path made absolute). SweepError otherwise, listing what is known."""
    if isinstance(name, str) and name in MODELS:
        return name
    if isinstance(name, str) and is_external(name):
        ref = external.canonical(name)
        external.resolve(ref)
        return ref
    known = [*names(), *(n for n in external.entry_points() if n not in MODELS)]
    own = f"or a function of your own: {external.FORMS}"
    raise SweepError(f"unknown model {quote(name)}; known: {', '.join(known)}; {own}")


def chain_names() -> list[str]:
    """The registered models that are chains."""
    return [e.name for e in MODELS if e.meta["chain"]]


def is_chain(name: str) -> bool:
    if is_external(name):
        return False
    return bool(MODELS.entry(name).meta["chain"])


def no_widths(name: str, widths: dict[str, int]) -> None:
    """Refuse a ``widths`` override for a model that is not a chain (its widths come from pruning)."""
    if widths:
        raise SweepError(
            f"model {name!r} is not a chain: it cannot be built at other widths; prune it with "
            "sweep.structure.prune instead"
        )


def default_dataset(name: str) -> str:
    if is_external(name):
        raise external.no_dataset(name)
    return MODELS.entry(name).meta["dataset"]


def create(
    name: str,
    num_classes: int = 10,
    in_channels: int | None = None,
    input_size: int | tuple[int, int] | None = None,
    widths: dict[str, int] | None = None,
    **kwargs: Any,
) -> Net:
    """Build a registered model. ``input_size`` is the image side (or (H, W)); ``widths`` overrides
    the output width of unit layers by name (how export rebuilds a compact network). A name that is
    not registered may be an entry point or a reference (``sweep.models.external``)."""
    if is_external(name):
        no_widths(name, dict(widths or {}))
        if num_classes < 2:
            raise SweepError(f"num_classes must be at least 2, got {num_classes}")
        size = (input_size, input_size) if isinstance(input_size, int) else input_size
        return external.create(external.canonical(name), num_classes, in_channels, size)
    entry = MODELS.entry(name)
    c, h, w = entry.meta["input_size"]
    if in_channels is not None:
        c = in_channels
    if input_size is not None:
        h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if num_classes < 2:
        raise SweepError(f"num_classes must be at least 2, got {num_classes}")
    try:
        model = entry.obj(num_classes=num_classes, input_size=(c, h, w), widths=dict(widths or {}), **kwargs)
        with torch.no_grad():
            model.eval()(torch.zeros(1, c, h, w))
    except RuntimeError as err:
        raise SweepError(
            f"model {name!r} cannot take input {c}x{h}x{w}: {str(err).splitlines()[0]}"
        ) from None
    return model.train()
