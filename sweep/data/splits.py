"""The splits a dataset loads into: uint8 tensors in memory, batched and normalised one batch at a time
on whatever device they live on (``TensorSplit``), or image files streamed through DataLoader workers
(``FolderSplit``)."""

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
        self, batch_size: int, shuffle: bool = False, seed: int = 0, shift: int = 0, flip: bool = False
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """(float32 normalised NCHW images, int64 labels); the order under shuffle depends on seed only.
        ``shift`` > 0 translates every image by a random offset of up to that many pixels per axis;
        ``flip`` mirrors each image left-right with probability 1/2."""
        ...

    def num_batches(self, batch_size: int) -> int: ...


@dataclass
class Splits:
    info: DatasetInfo
    train: Split  # training images minus the held-out ones
    holdout: Split  # held out from train, used to choose trials (never the test split)
    test: Split  # the official test split
    source: str  # where the data was read from

    def to(self, device: torch.device) -> Splits:
        """The splits as a trial on ``device`` reads them: in-memory images moved there once (uint8;
        train and held-out share one copy), folders streamed into pinned memory for a CUDA device."""
        moved: dict[int, Tensor] = {}

        def put(split: Split) -> Split:
            to = getattr(split, "to", None)  # a split type without ``to`` is read as it is
            return split if to is None else to(device, moved)

        return Splits(self.info, put(self.train), put(self.holdout), put(self.test), self.source)


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
    """uint8 NCHW images in memory (optionally a subset of them by ``index``), normalised per batch.

    The images may live on any device (``to``): batching, shifts, flips and normalisation then run there.
    The random draws (order, offsets, flips) come from a CPU generator seeded by ``seed``, all of an
    epoch's at its start and moved over in one copy, so every device yields the same batches and a
    step needs no transfer from the host."""

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
        self.mean, self.std = mean, std
        channels = images.shape[1]
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1)
        # (x / 255 - mean) / std == x * scale - shift
        self._scale = (1.0 / (255.0 * std_t)).to(images.device)
        self._shift = (mean_t / std_t).to(images.device)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device, moved: dict[int, Tensor] | None = None) -> TensorSplit:
        """This split with its images, labels and index on ``device``; ``moved`` (id of a tensor -> its
        copy) lets splits that hold the same tensor share one copy."""
        memo: dict[int, Tensor] = {} if moved is None else moved

        def put(t: Tensor) -> Tensor:
            if id(t) not in memo:
                memo[id(t)] = t.to(device)
            return memo[id(t)]

        index = None if self.index is None else put(self.index)
        return TensorSplit(put(self.images), put(self.labels), self.mean, self.std, index)

    def __len__(self) -> int:
        return len(self.index) if self.index is not None else len(self.labels)

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int = 0, shift: int = 0, flip: bool = False
    ) -> Iterator[tuple[Tensor, Tensor]]:
        _check_batch_size(batch_size)
        n, device = len(self), self.device
        order = self.index
        generator = torch.Generator().manual_seed(seed)
        if shuffle:
            perm = torch.randperm(n, generator=generator).to(device)
            order = perm if order is None else order[perm]
        offsets, flips = epoch_draws(n, batch_size, shift, flip, generator)
        offsets = None if offsets is None else offsets.to(device)
        flips = None if flips is None else flips.to(device)
        for start in range(0, n, batch_size):
            end = start + batch_size
            if order is None:
                images, labels = self.images[start:end], self.labels[start:end]
            else:
                rows = order[start:end]  # index_select: the same rows as images[rows], far faster on CPU
                images, labels = self.images.index_select(0, rows), self.labels.index_select(0, rows)
            if offsets is not None:
                images = shift_images(images, shift, offsets[:, start:end])
            if flips is not None:
                images = torch.where(flips[start:end, None, None, None], images.flip(3), images)
            yield images.to(torch.float32).mul_(self._scale).sub_(self._shift), labels


def epoch_draws(
    n: int, batch_size: int, shift: int, flip: bool, generator: torch.Generator
) -> tuple[Tensor | None, Tensor | None]:
    """An epoch's random offsets (2, n) and flips (n,), drawn batch after batch from ``generator`` in
    the order a per-batch draw would take them (a batch's offsets, then its flips)."""
    offsets: list[Tensor] = []
    flips: list[Tensor] = []
    if shift <= 0 and not flip:
        return None, None
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        if shift > 0:
            offsets.append(torch.randint(0, 2 * shift + 1, (2, b), generator=generator))
        if flip:
            flips.append(torch.randint(0, 2, (b,), generator=generator).bool())
    return (
        torch.cat(offsets, dim=1) if offsets else None,
        torch.cat(flips) if flips else None,
    )


def random_shift(images: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Each image translated by its own offset in [-shift, shift] per axis, the border filled with 0."""
    offsets = torch.randint(0, 2 * shift + 1, (2, images.shape[0]), generator=generator)
    return shift_images(images, shift, offsets.to(images.device))


def shift_images(images: Tensor, shift: int, offsets: Tensor) -> Tensor:
    """``images`` translated by ``offsets`` (2, b): rows dy, columns dx in [0, 2 * shift] of the
    zero-padded image (shift means no move), on the images' device."""
    b, c, h, w = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (shift, shift, shift, shift))
    dy, dx = offsets.unbind()
    rows = (dy[:, None] + torch.arange(h, device=device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=device))[:, None, None, :]
    batch = torch.arange(b, device=device)[:, None, None, None]
    return padded[batch, torch.arange(c, device=device)[None, :, None, None], rows, cols]


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
        self.pin_memory: bool | None = None  # None: pinned whenever a CUDA GPU is visible

    def __len__(self) -> int:
        return len(self.samples)

    def to(self, device: torch.device, moved: dict[int, Tensor] | None = None) -> FolderSplit:
        """The files stay where they are; batches come in pinned memory when ``device`` is a GPU, so the
        trial's ``.to(device, non_blocking=True)`` overlaps the copy with compute."""
        split = FolderSplit(self.samples, self.transform, self.num_workers)
        split.pin_memory = torch.device(device).type == "cuda"
        return split

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int = 0, shift: int = 0, flip: bool = False
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """``shift`` and ``flip`` are ignored: image folders augment through their transform (random
        resized crops and flips)."""
        _check_batch_size(batch_size)
        loader = torch.utils.data.DataLoader(
            _ImageList(self.samples, self.transform),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(seed),  # also seeds the workers' augmentation
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available() if self.pin_memory is None else self.pin_memory,
        )
        yield from loader


def imagenet_probe(folder: Path) -> list[str] | None:
    missing = [f"{sub}/" for sub in ("train", "val") if not (folder / sub).is_dir()]
    return None if len(missing) == 2 else missing


def _holdout_size(name: str, available: int, holdout: int | None, default: int) -> int:
    if holdout is None:
        return max(1, min(default, available // 6))
    if not 1 <= holdout <= available - 1:
        raise SweepError(
            f"holdout must be between 1 and {available - 1} for {name} ({available} training images, "
            f"one at least left to train on), got {holdout}"
        )
    return holdout


def _check_subset(name: str, subset: int | None, available: int, source: Path) -> None:
    if subset is not None and not 2 <= subset <= available:
        raise SweepError(
            f"subset must be between 2 and {available} for {name} (its training images in {source}; "
            f"at least one is held out), got {subset}"
        )


def _cut_holdout(pool: Tensor, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """(train indices, held-out indices) from pool, by a permutation fixed by seed; both sorted."""
    perm = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))]
    return perm[size:].sort().values, perm[:size].sort().values
