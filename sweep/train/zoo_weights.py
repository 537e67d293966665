"""A model zoo's pretrained weights as a trial's start: ``--init torchvision:<Weights>.<NAME>``
(``torchvision:ResNet18_Weights.IMAGENET1K_V1``) or ``--init timm:<NAME>[.<TAG>]``
(``timm:resnet18.a1_in1k``, timm being the optional extra).

Downloaded when online into the zoo's own cache (torch hub's, Hugging Face's), read from that cache
when ``SWEEP_OFFLINE=1``; read as tensors only (``weights_only=True`` or safetensors), never as code.
Weights trained for another number of classes keep everything but the classifier, which starts fresh,
as fine-tuning to a new dataset does (``sweep.train.weights.fresh_classifier``); timm adapts the first
layer's weights to other input channels itself (``in_chans``).
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from sweep.data.datasets import offline
from sweep.errors import SweepError, first_line
from sweep.models.external import TIMM, TIMM_PIN, TORCHVISION


@dataclass(frozen=True)
class ZooWeights:
    state: dict[str, torch.Tensor]  # keyed as the zoo's model keys them
    classes: int | None  # the class count the weights were trained for, where they keep their classifier


def is_zoo(init: str) -> bool:
    return init.startswith((TORCHVISION, TIMM))


def zoo_state(init: str, in_channels: int) -> ZooWeights:
    """The weights ``init`` names (``torchvision:...`` or ``timm:...``), for a model of ``in_channels``
    input channels."""
    if init.startswith(TORCHVISION):
        return _torchvision(init[len(TORCHVISION) :])
    return _timm(init[len(TIMM) :], in_channels)


def _torchvision(name: str) -> ZooWeights:
    import torchvision

    try:
        weights = torchvision.models.get_weight(name)
    except (ValueError, KeyError, AttributeError):
        raise SweepError(
            f"init {TORCHVISION}{name}: torchvision has no such weights (the form is <Weights>.<NAME>, as "
            "ResNet18_Weights.IMAGENET1K_V1)"
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if offline() and not cached.is_file():
        raise SweepError(
            f"init {TORCHVISION}{name}: downloads are off (SWEEP_OFFLINE=1) and torch hub's cache has no "
            f"{cached.name}; download it where you are online, or give a weights file's path"
        )
    try:
        state = torch.hub.load_state_dict_from_url(weights.url, progress=False, weights_only=True)
    except Exception as err:  # the download, or a cached file that is not plain tensors
        raise SweepError(
            f"init {TORCHVISION}{name}: the weights cannot be read ({first_line(err)})"
        ) from None
    categories = weights.meta.get("categories") or []
    return ZooWeights(state, len(categories) or None)


def _timm(name: str, in_channels: int) -> ZooWeights:
    try:
        import timm
    except ImportError:
        raise SweepError(
            f"init {TIMM}{name}: timm is not installed; install the extra: pip install 'sweep[timm]' ({TIMM_PIN})"
        ) from None
    known = timm.list_pretrained()
    if name not in known and not any(k.startswith(name + ".") for k in known):
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f"; close: {', '.join(close)}" if close else "; see timm.list_pretrained()"
        raise SweepError(f"init {TIMM}{name}: timm has no pretrained weights of that name{hint}")
    try:
        with _hub_offline(offline()), torch.device("cpu"):  # real tensors, even under a meta-device check
            model = timm.create_model(name, pretrained=True, in_chans=in_channels)  # its own classifier
    except Exception as err:  # the download, the cache, or timm's loading
        reason = "not in Hugging Face's cache and downloads are off (SWEEP_OFFLINE=1)" if offline() else ""
        raise SweepError(
            f"init {TIMM}{name}: the weights cannot be read ({reason or first_line(err)})"
        ) from None
    return ZooWeights(dict(model.state_dict()), int(getattr(model, "num_classes", 0)) or None)


@contextlib.contextmanager
def _hub_offline(on: bool) -> Iterator[None]:
    """Hugging Face's hub reads only its cache, without the retries of a download that cannot happen."""
    if not on:
        yield
        return
    import huggingface_hub.constants as hub

    kept_env, kept = os.environ.get("HF_HUB_OFFLINE"), hub.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], hub.HF_HUB_OFFLINE = "1", True  # the constant is read once, at import
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = kept
        if kept_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = kept_env
