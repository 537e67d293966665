"""Model registry: ``create(name, ...)`` builds any registered network; ``names()`` lists them.

Adding a model is one decorated function in a file here that returns a ``Net`` (any ``nn.Module`` as its
body) or a ``ChainNet`` (one ``nn.Sequential``)::

    @register_model(dataset="mnist", input_size=(1, 28, 28))
    def tiny(num_classes, input_size, widths):
        ...

A model from outside the package needs no registration: ``create`` (and ``check``, ``is_chain``,
``default_dataset``) also take ``pkg.mod:fn``, ``path/to/nets.py:fn`` or the name of an entry point of
group ``sweep.models``: any function returning an ``nn.Module``, called with ``num_classes``,
``in_channels`` and ``input_size`` (height, width) where its signature accepts them, wrapped in a ``Net``
named by the reference (``sweep.models.external``; ``check`` gives the form trials record, a file's path
made absolute). Such a model has no dataset of its own, and without a search space file it is searched in
``sweep.space.default``'s generic space.

Networks that are not chains (ResNets, MobileNetV2) are registered with ``chain=False``; the plain
``nn.Module``s they wrap are also built by ``STRUCTURE_MODELS`` (name -> factory taking ``num_classes`` and
``in_channels``). Every model's channel groups come from ``sweep.structure``; training, metrics and export
work on them for any model (``Net.pruned`` / ``Net.replay_``), while ``sweep.sparsity.compact``'s slicing and the
nuclear penalty's factorisation still take chains only.
"""

from collections.abc import Callable

from torch import nn

from sweep.models import alexnet, cifar_quick, lenet, vgg  # noqa: F401  (registers the models)
from sweep.models.base import (
    MODELS,
    chain_names,
    check,
    create,
    default_dataset,
    is_chain,
    is_external,
    names,
    register_model,
)
from sweep.models.chain import ChainNet
from sweep.models.external import short_name
from sweep.models.mobilenet import mobilenet_v2
from sweep.models.net import UNIT_TYPES, Net, body_groups, kept_layers
from sweep.models.resnet import resnet18, resnet20, resnet56
from sweep.models.trust import Factory, recorded_model

STRUCTURE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "resnet56": resnet56,
    "mobilenet_v2": mobilenet_v2,
    "resnet18": resnet18,
}

__all__ = [
    "MODELS",
    "STRUCTURE_MODELS",
    "UNIT_TYPES",
    "ChainNet",
    "Factory",
    "Net",
    "body_groups",
    "chain_names",
    "check",
    "create",
    "default_dataset",
    "is_chain",
    "is_external",
    "kept_layers",
    "names",
    "recorded_model",
    "register_model",
    "short_name",
]
