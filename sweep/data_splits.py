"""The splits a dataset loads into: uint8 tensors in memory, batched and normalised one batch at a time
(``TensorSplit``), or image files streamed through DataLoader workers (``FolderSplit``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from sweep.errors import SweepError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_channels: int
    input_size: tuple[int, int]  # (H, W) the model sees
    mean: tuple[float, ...]  # per-channel normalisation used
    std: tuple[float, ...]
    classes: tuple[str, ...]


class Split(Protocol):
    def __len__(self) -> int: ...

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int = 0, shift: int = 0
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """(float32 normalised NCHW images, int64 labels); the order under shuffle depends on seed only.
        ``shift`` > 0 translates every image by a random offset of up to that many pixels per axis."""
        ...

    def num_batches(self, batch_size: int) -> int: ...


@dataclass
class Splits:
    info: DatasetInfo
    train: Split  # training images minus the held-out ones
    holdout: Split  # held out from train, used to choose trials (never the test split)
    test: Split  # the official test split
    source: str  # where the data was read from


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise SweepError(f"batch_size must be at least 1, got {batch_size}")


class _Batched:
    def __len__(self) -> int:
        raise NotImplementedError

    def num_batches(self, batch_size: int) -> int:
        _check_batch_size(batch_size)
        return math.ceil(len(self) / batch_size)


class TensorSplit(_Batched):
    """uint8 NCHW images in memory (optionally a subset of them by ``index``), normalised per batch."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        index: Tensor | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 NCHW, got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.labels = labels
        self.index = index
        channels = images.shape[1]
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1)
        # (x / 255 - mean) / std == x * scale - shift
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = mean_t / std_t

    def __len__(self) -> int:
        return len(self.index) if self.index is not None else len(self.labels)

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int = 0, shift: int = 0
    ) -> Iterator[tuple[Tensor, Tensor]]:
        _check_batch_size(batch_size)
        n = len(self)
        order = self.index
        generator = torch.Generator().manual_seed(seed)
        if shuffle:
            perm = torch.randperm(n, generator=generator)
            order = perm if order is None else order[perm]
        for start in range(0, n, batch_size):
            if order is None:
                images = self.images[start : start + batch_size]
                labels = self.labels[start : start + batch_size]
            else:
                rows = order[start : start + batch_size]
                images, labels = self.images[rows], self.labels[rows]
            if shift > 0:
                images = random_shift(images, shift, generator)
            yield images.to(torch.float32).mul_(self._scale).sub_(self._shift), labels


def random_shift(images: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Each image translated by its own offset in [-shift, shift] per axis, the border filled with 0."""
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (shift, shift, shift, shift))
    dy, dx = (torch.randint(0, 2 * shift + 1, (2, b), generator=generator)).unbind()
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


class _ImageList(torch.utils.data.Dataset):
    """(path, label) pairs read with PIL and transformed; picklable for DataLoader worker processes."""

    def __init__(self, samples: list[tuple[str, int]], transform: Callable[[Any], Tensor]) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[i]
        return self.transform(default_loader(path)), label


class FolderSplit(_Batched):
    """Image files streamed through a DataLoader with ``num_workers`` worker processes."""

    def __init__(
        self, samples: list[tuple[str, int]], transform: Callable[[Any], Tensor], num_workers: int = 0
    ) -> None:
        self.samples = samples
        self.transform = transform
        self.num_workers = num_workers

    def __len__(self) -> int:
        return len(self.samples)

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int = 0, shift: int = 0
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """``shift`` is ignored: image folders augment through their transform (random resized crops)."""
        _check_batch_size(batch_size)
        loader = torch.utils.data.DataLoader(
            _ImageList(self.samples, self.transform),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(seed),  # also seeds the workers' augmentation
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
        )
        yield from loader


def imagenet_probe(folder: Path) -> list[str] | None:
    missing = [f"{sub}/" for sub in ("train", "val") if not (folder / sub).is_dir()]
    return None if len(missing) == 2 else missing
