"""The layers a search space names, checked against the network that a dataset's images build.

A model's layers can depend on the images it is built for (a model from outside the package is called
with the dataset's channels, size and classes; a registered one may change with the input size), so a
space is checked twice before anything is written: when it is parsed, against the network of its own
dataset (``unit_layers``), and when ``sweep run`` has resolved the run's dataset and image sides, against
each network the trials will build (``check_on_data``, which ``sweep.models.external.check_sizes`` calls).
Every problem is one SweepError naming the space, the key, the layer and the layers allowed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sweep.errors import SweepError, quote

if TYPE_CHECKING:
    from sweep.config import TrialConfig
    from sweep.models import Net
    from sweep.space.types import Distribution, SearchSpace
import os
from pathlib import Path

if TYPE_CHECKING:
    from sweep.models import Net

SMALL_SIDE = 64  # a registered network for images this small is built on the CPU, a larger one on meta


def unit_layers(model: str, dataset: str | None = None, input_size: int | None = None) -> tuple[str, ...]:
    """Names of a model's layers that can lose units, read off an instance built for ``dataset``'s images
    (channels, classes, and ``input_size`` or the dataset's own side) when a dataset is given, else for
    the registered model's own input. The channel analysis runs here, before anything is written; a
    model that cannot be built for those images is a SweepError naming it and the size."""
    return built(model, dataset, input_size)[2]


def built(
    model: str, dataset: str | None, input_size: int | None = None, data_dir: str | None = None
) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
    """(network name, its input size, its layers that can lose units) of ``model`` built for ``dataset``
    at ``input_size`` (None: the dataset's own; no dataset: the registered model's own input).

    A registered network for images of at most SMALL_SIDE px is built on the CPU (0.04-0.5 s for the
    shipped ones) and remembered; any other on the meta device, weightless, where the first linear layer
    makes torch load its compiler (about 1.6 s, which ``sweep run`` would spend before it can start
    Ray). A model from outside the package is built again each time: its file may have changed."""
    from sweep import models

    if models.is_external(model):
        return _build(model, dataset, input_size, data_dir)
    return _built_registered(model, dataset, input_size)


@functools.lru_cache(maxsize=64)
def _built_registered(
    model: str, dataset: str | None, input_size: int | None
) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
    return _build(model, dataset, input_size, None)


def _build(
    model: str, dataset: str | None, input_size: int | None, data_dir: str | None
) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
    import torch

    from sweep import models
    from sweep.space.checks import sizes

    kwargs = sizes(dataset, input_size, data_dir)
    if not kwargs and input_size is not None:
        kwargs = {"input_size": input_size}
    side = kwargs.get("input_size")
    if side is None and not models.is_external(model):
        side = models.MODELS.entry(model).meta["input_size"][1:]
    small = not models.is_external(model) and side is not None and max(side) <= SMALL_SIDE
    with torch.device("cpu" if small else "meta"):
        net: Net = models.create(model, **kwargs)
        return net.name, tuple(net.input_size), tuple(net.unit_layers())


def named_layers(space: SearchSpace | None, cfg: TrialConfig | None = None) -> Iterator[tuple[str, str]]:
    """(key path, layer) for every layer ``space`` names: in its fixed settings, its searched layer sets
    and layer scales, and each budget's overrides and distributions; then ``cfg``'s (the run's resolved
    settings, which hold the command line's)."""
    if space is not None:
        yield from _fixed_layers(space.fixed, "fixed")
        yield from _searched_layers(space.search, "search")
        for name, budget in space.budgets.items():
            yield from _fixed_layers(budget.overrides, f"budgets.{name}.overrides")
            yield from _searched_layers(budget.search, f"budgets.{name}.search")
    if cfg is not None:
        yield from _fixed_layers(
            {"layers": cfg.layers, "layer_scales": cfg.layer_scales}, "the trial settings"
        )


def _fixed_layers(values: Mapping[str, Any], at: str) -> Iterator[tuple[str, str]]:
    for layer in values.get("layers") or ():
        yield f"{at}.layers", layer
    for layer in values.get("layer_scales") or {}:
        yield f"{at}.layer_scales", layer


def _searched_layers(search: Mapping[str, Distribution], at: str) -> Iterator[tuple[str, str]]:
    for key, dist in search.items():
        if key == "layers":
            for set_name, layers in dist.values.items():
                for layer in layers or ():  # None: every layer, whatever the network
                    yield f"{at}.layers.choices.{set_name}", layer
        elif key.startswith("layer_scales."):
            yield f"{at}.layer_scales", key.split(".", 1)[1]


def check_on_data(space: SearchSpace | None, cfg: TrialConfig) -> None:
    """Refuse, before the study exists, a run whose network cannot be built for its images, or whose
    space names a layer that network does not have: ``cfg.model`` is built for ``cfg.dataset`` (the
    run's, command line included) at every image side a trial may get (``input_sides``: the resolved
    ``input_size``, else each searched one, else the dataset's own), and every layer of
    ``named_layers`` is looked up in it. A model from outside the package is built on the meta device
    (no weights, no data read), with the class count of ``cfg``'s dataset (for ``folder``, of
    ``cfg.data_dir``)."""
    from sweep import models
    from sweep.space.checks import input_sides

    dataset = cfg.dataset
    if dataset is None and not models.is_external(cfg.model):
        dataset = models.default_dataset(cfg.model)
    named = list(named_layers(space, cfg))
    for side in input_sides(space, cfg):
        name, size, allowed = built(cfg.model, dataset, side, cfg.data_dir)
        for where, layer in named:
            if layer not in allowed:
                shape = "x".join(map(str, size))
                source = f"{space.path}: " if space is not None and space.path else ""
                raise SweepError(
                    f"{source}{where} names layer {quote(layer)}, which {name} built for {dataset} "
                    f"({shape}) does not have; allowed: {', '.join(allowed)}"
                )


def sizes(dataset: str | None, input_size: int | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """``create``'s ``num_classes``, ``in_channels`` and ``input_size`` for a dataset known by name
    (what a model from outside the package is built for before any data is read); else {}.

    ``input_size``: the trial's image side (``--input-size``, ``input_size:`` in a space) in place of the
    dataset's own. ``data_dir``: for the ``folder`` dataset, whose class count is known only from its
    files, the folder whose ``train/`` class folders are counted (a folder that cannot be listed keeps
    the placeholder count; reading the data refuses it later, naming what is wrong)."""
    from sweep.data import datasets as data

    if dataset not in data.DATASETS:
        return {}
    info = data.info(dataset)
    out: dict[str, Any] = {
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "input_size": info.input_size if input_size is None else (input_size, input_size),
    }
    data_dir = data_dir or os.environ.get("SWEEP_DATA_DIR")  # where the folder dataset reads by default
    if dataset == "folder" and data_dir:
        from sweep.data import class_names

        classes = class_names(Path(data_dir).expanduser())
        if classes is not None and len(classes) >= 2:
            out["num_classes"] = len(classes)
    return out


def input_sides(space: Any, cfg: Any) -> tuple[int | None, ...]:
    """Every image side a trial of ``cfg`` (under ``space``, a SearchSpace, or None for one trial) may be
    built for: the resolved ``cfg.input_size`` (the command line's or the space's fixed one), else each
    choice of a searched ``input_size`` (both ends of an integer range), else None (the dataset's own)."""
    if cfg.input_size is not None or space is None or "input_size" not in space.search:
        return (cfg.input_size,)
    dist = space.search["input_size"]
    if dist.kind == "categorical":
        return tuple(sorted({int(v) for v in dist.choices}))
    return tuple(sorted({int(dist.low), int(dist.high)}))


def check_sizes(space: Any, cfg: Any) -> None:
    """Refuse, before anything is written, a model that cannot be built for (or cannot take) the images
    its trials get, or a space (``space``, a SearchSpace, or None for one trial) that names a layer the
    network built for them does not have: every side of ``input_sides``, with the class count of
    ``cfg``'s dataset (``sweep.space.checks.check_on_data``). A SweepError names the model and the size
    (``cannot take input 3x16x16``), or the space, the layer and the layers allowed."""
    from sweep.space.checks import check_on_data

    check_on_data(space, cfg)
