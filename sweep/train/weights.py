"""Initial weights for a trial (``init:`` in a search space, ``--init``): where a network starts from.

``init`` is one of: a ``.safetensors`` file; a PyTorch file holding a state dict (read with
``weights_only=True``, so it never runs code); a ``sweep`` trial checkpoint (``checkpoint.pt`` or its
folder); an exported ``sweep`` model folder (``model.safetensors`` beside ``architecture.json``) of the
same dense network; or a zoo's pretrained weights, ``torchvision:<Weights>.<NAME>`` or
``timm:<NAME>[.<TAG>]`` (``sweep.train.zoo_weights``: downloaded when online, the classifier fresh where
the class counts differ). ``baseline`` is not a file: ``sweep run`` trains the study's unconstrained trial
first and gives every penalised trial its checkpoint (``sweep.search.driver``).

Keys may be the bare network's (``conv1.weight``), the ``Net``'s (``body.conv1.weight``) or a
``DataParallel``'s (``module.conv1.weight``). Every parameter and buffer must be there with its shape;
the first that is missing, extra or of another shape is named.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sweep.config import INIT_BASELINE
from sweep.errors import SweepError, first_line
from sweep.models.external import TIMM, TORCHVISION
from sweep.train.zoo_weights import is_zoo, zoo_state

ALLOWED = (
    "a .safetensors file, a PyTorch state-dict file, a sweep checkpoint, an exported sweep folder, "
    f"{TORCHVISION}<Weights>.<NAME>, {TIMM}<NAME>[.<TAG>] or {INIT_BASELINE} (sweep run only)"
)
# counts that BatchNorm keeps but that do not change what the network computes
OPTIONAL_SUFFIXES = (".num_batches_tracked",)


def absolute_init(init: str | None) -> str | None:
    """A weights file as an absolute path (Ray workers and checkpoints outlive the working directory);
    ``baseline`` and zoo names as given."""
    if init is None or init == INIT_BASELINE or is_zoo(init):
        return init
    return str(Path(init).expanduser().resolve())


def read_state(init: str) -> dict[str, torch.Tensor]:
    """The tensors ``init`` names, keyed as they were saved."""
    if init == INIT_BASELINE:
        raise SweepError(
            "init: baseline is resolved by sweep run (it trains the study's baseline first); for one "
            f"trial, give a file: {ALLOWED}"
        )
    path = Path(init).expanduser()
    if path.is_dir():
        for name in ("model.safetensors", "checkpoint.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise SweepError(f"init {init}: the folder holds neither model.safetensors nor checkpoint.pt")
    if not path.is_file():
        raise SweepError(f"init {init}: no such file; init must be {ALLOWED}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise SweepError(f"init {path} is not a readable safetensors file ({first_line(err)})") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load's readers raise many kinds on a file that is not theirs
        raise SweepError(
            f"init {path} cannot be read as weights ({type(err).__name__}: {first_line(err)}); a pickled module "
            "is not loaded: save "
            "its state_dict() instead"
        ) from None
    return _state_of(loaded, path)


def _state_of(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside what torch.load returned: itself, or under "model" / "state_dict"."""
    for candidate in (loaded, *(loaded.get(k) for k in ("model", "state_dict") if isinstance(loaded, dict))):
        if (
            isinstance(candidate, dict)
            and candidate
            and all(isinstance(v, torch.Tensor) for v in candidate.values())
        ):
            return candidate
    raise SweepError(f"init {path} holds no state dict (a mapping of names to tensors)")


def fitted_state(model: nn.Module, init: str, prefix: str = "body.") -> dict[str, torch.Tensor]:
    """The tensors ``init`` names, keyed as ``model`` (a ``Net``: its own keys start with ``prefix``) keys
    them; SweepError naming the first key that is missing, extra or of another shape. ``model`` may live
    on the meta device (a check before any data is read). A zoo's classifier for another class count is
    left out (``fresh_classifier``)."""
    own = model.state_dict()
    fresh: set[str] = set()
    if is_zoo(init):
        zoo = zoo_state(init, int(getattr(model, "input_size", (3,))[0]))
        given = _rekey(zoo.state, prefix)
        fresh = fresh_classifier(given, own, zoo.classes, getattr(model, "num_classes", None))
        given = {k: v for k, v in given.items() if k not in fresh}
    else:
        given = _rekey(read_state(init), prefix)
    for key, tensor in own.items():
        if key not in given:
            if key.endswith(OPTIONAL_SUFFIXES) or key in fresh:
                continue
            raise SweepError(f"init {init} does not fit the model: it has no {_shown(key, prefix)}")
        if tuple(given[key].shape) != tuple(tensor.shape):
            raise SweepError(
                f"init {init} does not fit the model: {_shown(key, prefix)} is {_shape(given[key])} there, "
                f"{_shape(tensor)} in the model"
            )
    extra = [k for k in given if k not in own]
    if extra:
        raise SweepError(f"init {init} does not fit the model: the model has no {_shown(extra[0], prefix)}")
    return given


def fresh_classifier(
    given: dict[str, torch.Tensor], own: dict[str, torch.Tensor], classes: int | None, num_classes: int | None
) -> set[str]:
    """The keys of a classifier trained for ``classes`` classes where the model has ``num_classes``: their
    rows are the class counts and the rest of their shapes agree."""
    if not classes or not num_classes or classes == num_classes:
        return set()
    return {
        key
        for key, tensor in given.items()
        if key in own
        and tensor.dim() >= 1
        and tensor.shape[0] == classes
        and own[key].shape[0] == num_classes
        and tensor.shape[1:] == own[key].shape[1:]
    }


def load_initial_weights(model: nn.Module, init: str) -> None:
    """Copy the weights ``init`` names into ``model`` (see ``fitted_state``); a zoo's classifier for
    another class count keeps its fresh init, and a line says so."""
    given = fitted_state(model, init)
    fresh = []
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key in given:
                tensor.copy_(given[key].to(tensor.dtype))
            elif not key.endswith(OPTIONAL_SUFFIXES):
                fresh.append(key)
    if fresh:
        print(
            f"init {init}: {', '.join(_shown(k, 'body.') for k in fresh)} start fresh (another class count)"
        )


def check_init(model: str, dataset: str | None, init: str | None, sweep: bool = True) -> None:
    """Refuse weights that do not fit ``model`` built for ``dataset``'s images, before anything runs.
    In a sweep, ``baseline`` is trained by the sweep itself, so there is nothing to check yet."""
    if init is None or (sweep and init == INIT_BASELINE):
        return
    from sweep import models
    from sweep.data import datasets as data

    size: dict[str, object] = {}
    if dataset in data.DATASETS:
        info = data.info(dataset)
        size = {
            "num_classes": info.num_classes,
            "in_channels": info.in_channels,
            "input_size": info.input_size,
        }
    with torch.device("meta"):
        fitted_state(models.create(model, **size), init)


def _rekey(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    if state and all(k.startswith(prefix) for k in state):
        return dict(state)
    return {prefix + k: v for k, v in state.items()}


def _shown(key: str, prefix: str) -> str:
    return repr(key[len(prefix) :] if key.startswith(prefix) else key)


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "a scalar"
