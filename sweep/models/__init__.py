"""Model registry: ``create(name, ...)`` builds any registered network; ``names()`` lists them.

Adding a model is one decorated function in a file here that returns a ``ChainNet``::

    @register_model(dataset="mnist", input_size=(1, 28, 28))
    def tiny(num_classes, input_size, widths):
        ...
"""

from sweep.models import alexnet, cifar_quick, lenet, vgg  # noqa: F401  (registers the models)
from sweep.models.base import MODELS, ChainNet, create, default_dataset, names, register_model

__all__ = ["MODELS", "ChainNet", "create", "default_dataset", "names", "register_model"]
