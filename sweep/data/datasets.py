"""Dataset registry: mnist, fashion-mnist and cifar10 held in memory, imagenet streamed from an ImageFolder,
and ``folder``, your own ImageFolder (``sweep.data.folder``). The split types live in ``sweep.data.splits``
and the file readers in ``sweep.data.files``.

``load(name)`` finds the files (``data_dir``, then ``$SWEEP_DATA_DIR``, then standard places), reads
them, and returns three splits: train, a held-out part of the training images (used to choose trials),
and the official test split. Small datasets live in memory as uint8 NCHW tensors and are converted to
normalised float32 one batch at a time, so memory stays small and an epoch costs almost nothing extra.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sweep.data import folder as data_folder
from sweep.data.files import (
    CIFAR_BATCHES,
    CIFAR_CLASSES,
    FASHION_CLASSES,
    IDX_FILES,
    Arrays,
    _stamp,
    cifar_probe,
    idx_probe,
    read_cifar,
    read_idx_folder,
)
from sweep.data.splits import (
    DatasetInfo,
    FolderSplit,
    Split,
    Splits,
    TensorSplit,
    _check_subset,
    _cut_holdout,
    _holdout_size,
    imagenet_probe,
)
from sweep.errors import SweepError
from sweep.registry import Registry

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetSpec",
    "FolderSplit",
    "Split",
    "Splits",
    "TensorSplit",
    "available_offline",
    "info",
    "load",
    "names",
    "search_paths",
]

DOWNLOAD_TIMEOUT_S = 10.0
SYSTEM_DATASETS = Path("/usr/share/datasets")  # where Debian's dataset-* packages install
ROOT_ITSELF = "."  # in DatasetSpec.folders: the root folder itself (only for roots the user named)


# ----------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DatasetSpec:
    info: DatasetInfo
    folders: tuple[str, ...]  # where under a root it may lie, in order; ROOT_ITSELF for the root itself
    probe: Callable[[Path], list[str] | None]  # None: none of its files here; else the missing ones
    expected: str  # what a folder of it holds, for messages
    how_to_get: str
    default_holdout: int
    read: Callable[[Path], Arrays] | None = None  # in-memory datasets
    download: Callable[[Path], object] | None = None  # torchvision's downloader, given a root
    # a dataset read from the folder the user names, never looked for: (data_dir, subset, holdout, seed,
    # num_workers, input_size) -> Splits
    loader: Callable[..., Splits] | None = None


DATASETS: Registry[DatasetSpec] = Registry("dataset")

_IDX_EXPECTED = "the four IDX files " + ", ".join(f"{s}.gz" for s in IDX_FILES)


def _torchvision_download(cls_name: str) -> Callable[[Path], object]:
    def download(root: Path) -> object:
        import torchvision.datasets

        return getattr(torchvision.datasets, cls_name)(str(root), train=False, download=True)

    return download


def _register(name: str, spec: DatasetSpec) -> None:
    DATASETS.register(name)(spec)


_register(
    "mnist",
    DatasetSpec(
        info=DatasetInfo("mnist", 10, 1, (28, 28), (0.1307,), (0.3081,), tuple(str(d) for d in range(10))),
        folders=("mnist", "MNIST/raw", ROOT_ITSELF),
        probe=idx_probe,
        expected=_IDX_EXPECTED,
        how_to_get=(
            f"point --data-dir or SWEEP_DATA_DIR at a folder holding {_IDX_EXPECTED} (or at its parent, "
            "with them in mnist/), or run once with network access and SWEEP_OFFLINE unset to download it"
        ),
        default_holdout=5000,
        read=functools.partial(read_idx_folder, size=(28, 28), num_classes=10),
        download=_torchvision_download("MNIST"),
    ),
)
_register(
    "fashion-mnist",
    DatasetSpec(
        info=DatasetInfo("fashion-mnist", 10, 1, (28, 28), (0.2860,), (0.3530,), FASHION_CLASSES),
        folders=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", ROOT_ITSELF),
        probe=idx_probe,
        expected=_IDX_EXPECTED,
        how_to_get=(
            "apt-get install dataset-fashion-mnist (puts the files in /usr/share/datasets/fashion-mnist), or "
            f"point --data-dir or SWEEP_DATA_DIR at a folder holding {_IDX_EXPECTED} (or at its parent, with "
            "them in fashion-mnist/), or run once with network access and SWEEP_OFFLINE unset to download it"
        ),
        default_holdout=5000,
        read=functools.partial(read_idx_folder, size=(28, 28), num_classes=10),
        download=_torchvision_download("FashionMNIST"),
    ),
)
_register(
    "cifar10",
    DatasetSpec(
        info=DatasetInfo(
            "cifar10", 10, 3, (32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR_CLASSES
        ),
        folders=("cifar10", "cifar-10-batches-py", ROOT_ITSELF),
        probe=cifar_probe,
        expected="cifar10.npz or torchvision's python batches " + ", ".join(CIFAR_BATCHES),
        how_to_get=(
            "point --data-dir or SWEEP_DATA_DIR at a folder holding cifar10/cifar10.npz or torchvision's "
            "cifar-10-batches-py/, or run once with network access and SWEEP_OFFLINE unset to download it"
        ),
        default_holdout=5000,
        read=read_cifar,
        download=_torchvision_download("CIFAR10"),
    ),
)
_register(
    "imagenet",
    DatasetSpec(
        info=DatasetInfo("imagenet", 1000, 3, (224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), ()),
        folders=(ROOT_ITSELF, "imagenet"),
        probe=imagenet_probe,
        expected="train/ and val/, each with one subfolder of images per class",
        how_to_get=(
            "point --data-dir or SWEEP_DATA_DIR at an ImageNet folder holding train/ and val/ (one subfolder "
            "per class in each; the official flat val/ must be sorted into class folders first) or at its "
            "parent, with it in imagenet/"
        ),
        default_holdout=10000,
    ),
)

_register(
    data_folder.NAME,
    DatasetSpec(
        info=data_folder.INFO,
        folders=(ROOT_ITSELF,),
        probe=data_folder.probe,
        expected=data_folder.EXPECTED,
        how_to_get=data_folder.HOW_TO_GET,
        default_holdout=data_folder.DEFAULT_HOLDOUT,
        loader=data_folder.load_folder,
    ),
)


def names() -> list[str]:
    return DATASETS.names()


def info(name: str) -> DatasetInfo:
    """What a model needs to know about a dataset, without reading any data.

    For imagenet, num_classes is 1000 and classes is empty; ``load`` returns the folders' real ones."""
    return DATASETS.get(name).info


# ---------------------------------------------------------------------------------------- locating


def _cache_root() -> Path:
    return Path.home() / ".cache" / "sweep" / "data"


def _named_dir(data_dir: str | Path | None) -> Path | None:
    """The folder ``data_dir`` names when it is the only place to look: any folder but $SWEEP_DATA_DIR
    itself, which ``sweep run`` passes on to its trials as their data_dir (a default, not a choice)."""
    env = os.environ.get("SWEEP_DATA_DIR")
    if not data_dir or (
        env and os.path.abspath(Path(data_dir).expanduser()) == os.path.abspath(Path(env).expanduser())
    ):
        return None
    return Path(data_dir).expanduser()


def _roots(data_dir: str | Path | None) -> list[tuple[Path, bool]]:
    """(root, named by the user) in search order. A folder the user names is the only one: data found
    elsewhere would silently be another copy than the one asked for."""
    named, env = _named_dir(data_dir), os.environ.get("SWEEP_DATA_DIR")
    if named is not None:
        return [(named, True)]
    return [
        *([(Path(env).expanduser(), True)] if env else []),
        (SYSTEM_DATASETS, False),
        (_cache_root(), False),
    ]


def _folder_key(folder: str) -> str:
    return folder.split("/")[0].lower().replace("_", "-")


def _names_another_dataset(root: Path, name: str) -> bool:
    """A root called e.g. fashion-mnist/ is not taken for mnist just because it holds IDX files."""
    key = _folder_key(root.name)
    return any(
        key == _folder_key(folder)
        for other in DATASETS
        if other.name != name
        for folder in other.obj.folders
        if folder != ROOT_ITSELF
    )


def search_paths(name: str, data_dir: str | None = None) -> list[Path]:
    """The folders ``load(name, data_dir)`` looks in, in order."""
    spec = DATASETS.get(name)
    paths: list[Path] = []
    for root, named in _roots(data_dir):
        for folder in spec.folders:
            if folder != ROOT_ITSELF:
                paths.append(root / folder)
            elif named and not _names_another_dataset(root, name):
                paths.append(root)
    unique: dict[str, Path] = {}
    for path in paths:
        unique.setdefault(os.path.normpath(os.path.abspath(path)), path)
    return list(unique.values())


def _find(name: str, data_dir: str | None) -> Path | None:
    spec = DATASETS.get(name)
    for folder in search_paths(name, data_dir):
        if not folder.is_dir():
            continue
        missing = spec.probe(folder)
        if missing is None:
            continue
        if missing:
            raise SweepError(
                f"{folder} holds part of {name} but lacks {', '.join(str(folder / m) for m in missing)}; "
                f"expected {spec.expected}"
            )
        return folder
    return None


def available_offline(data_dir: str | None = None) -> list[str]:
    """Datasets whose files are found now (complete sets of files; their contents are not checked).
    ``folder`` is never listed: it is whatever folder a trial names, checked only by reading it."""
    found = []
    for name in names():
        if DATASETS.get(name).loader is not None:
            continue
        with contextlib.suppress(SweepError):
            if _find(name, data_dir) is not None:
                found.append(name)
    return found


def offline() -> bool:
    """SWEEP_OFFLINE=1: nothing is downloaded; data and weights come from local files and caches only."""
    return os.environ.get("SWEEP_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _try_download(spec: DatasetSpec, target: Path) -> str:
    """Runs torchvision's downloader; returns why it failed, or '' when it worked."""
    assert spec.download is not None
    folders = [target / f for f in spec.folders if f != ROOT_ITSELF]
    new_dirs = [d for d in {target, *folders, *(p for f in folders for p in f.parents)} if not d.exists()]
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # no network must mean a quick failure, not a hang
    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for results (e.g. --json)
            spec.download(target)
    except Exception as err:
        for folder in sorted(new_dirs, key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):  # only the empty folders the failed attempt made
                folder.rmdir()
        detail = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        return f"downloading into {target} failed: {type(err).__name__}: {detail[:300]}"
    finally:
        socket.setdefaulttimeout(previous)
    return ""


def _locate(name: str, data_dir: str | None, download: bool | None) -> Path:
    spec = DATASETS.get(name)
    found = _find(name, data_dir)
    if found is not None:
        return found
    if download is None:
        download = not offline()
    if spec.download is None:
        reason = "it cannot be downloaded automatically"
    elif not download:
        reason = "downloads are off (SWEEP_OFFLINE=1)" if offline() else "downloads are off"
    else:
        target = Path(data_dir).expanduser() if data_dir else _cache_root()
        reason = _try_download(spec, target)
        found = _find(name, data_dir)
        if found is not None:
            return found
        reason = reason or f"the download into {target} left no files where sweep looks"
    looked = ", ".join(str(p) for p in search_paths(name, data_dir))
    available = ", ".join(available_offline(data_dir)) or "none"
    only = (
        f" (the data folder given, {_named_dir(data_dir)}, and nowhere else)" if _named_dir(data_dir) else ""
    )
    raise SweepError(
        f"dataset {name} not found; looked in {looked}{only}; {reason}; to get it: {spec.how_to_get}; "
        f"available offline now: {available}"
    )


@functools.lru_cache(maxsize=3)
def _read_cached(name: str, folder: str, stamp: tuple[tuple[str, int, int], ...]) -> Arrays:
    read = DATASETS.get(name).read
    assert read is not None
    return read(Path(folder))


@functools.lru_cache(maxsize=2)
def _read_resized(name: str, folder: str, stamp: tuple[tuple[str, int, int], ...], size: int) -> Arrays:
    return data_folder.resize_arrays(_read_cached(name, folder, stamp), size)


def _tensor_splits(
    spec: DatasetSpec, arrays: Arrays, source: Path, subset: int | None, holdout: int | None, seed: int
) -> Splits:
    name = spec.info.name
    _check_subset(name, subset, len(arrays.train_labels), source)
    pool = subset or len(arrays.train_labels)
    train_idx, holdout_idx = _cut_holdout(
        torch.arange(pool), _holdout_size(name, pool, holdout, spec.default_holdout), seed
    )
    info_ = spec.info
    if arrays.classes is not None and len(arrays.classes) == info_.num_classes:
        info_ = replace(info_, classes=arrays.classes)
    info_ = replace(info_, input_size=tuple(arrays.train_images.shape[2:]))  # resized by input_size
    test_n = len(arrays.test_labels) if subset is None else min(subset, len(arrays.test_labels))

    def split(images: Tensor, labels: Tensor, index: Tensor | None = None) -> TensorSplit:
        return TensorSplit(images, labels, info_.mean, info_.std, index)

    return Splits(
        info=info_,
        train=split(arrays.train_images, arrays.train_labels, train_idx),
        holdout=split(arrays.train_images, arrays.train_labels, holdout_idx),
        test=split(arrays.test_images[:test_n], arrays.test_labels[:test_n]),
        source=str(source),
    )


def _folder_splits(
    spec: DatasetSpec,
    root: Path,
    subset: int | None,
    holdout: int | None,
    seed: int,
    num_workers: int,
    crop: int = 224,
) -> Splits:
    from torchvision import transforms
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    train_dir, val_dir = root / "train", root / "val"
    try:
        train_folder = ImageFolder(str(train_dir))
    except (FileNotFoundError, OSError) as err:
        raise SweepError(f"{train_dir}: {err}; expected {spec.expected}") from None
    classes = tuple(train_folder.classes)
    val_classes = sorted(e.name for e in os.scandir(val_dir) if e.is_dir())
    if not val_classes:
        raise SweepError(
            f"{val_dir} has no class folders; expected {spec.expected} (the same names as train/)"
        )
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        raise SweepError(
            f"{val_dir} has class folders not in train/: {', '.join(unknown[:5])}; expected the same names"
        )
    val_samples = make_dataset(str(val_dir), train_folder.class_to_idx, IMG_EXTENSIONS, allow_empty=True)
    if not val_samples:
        raise SweepError(f"{val_dir} holds no images ({', '.join(IMG_EXTENSIONS)})")

    name = spec.info.name
    train_samples = train_folder.samples
    _check_subset(name, subset, len(train_samples), root)
    generator = torch.Generator().manual_seed(seed)
    # the folders list one class after another, so "the first N" would be one class: draw N instead
    pool = torch.arange(len(train_samples))
    test_pick = torch.arange(len(val_samples))
    if subset is not None:
        pool = torch.randperm(len(train_samples), generator=generator)[:subset].sort().values
        if subset < len(val_samples):
            test_pick = torch.randperm(len(val_samples), generator=generator)[:subset].sort().values
    train_idx, holdout_idx = _cut_holdout(
        pool, _holdout_size(name, len(pool), holdout, spec.default_holdout), seed
    )

    normalize = transforms.Normalize(spec.info.mean, spec.info.std)
    to_input = [transforms.ToTensor(), normalize]
    train_tf = transforms.Compose(
        [transforms.RandomResizedCrop(crop), transforms.RandomHorizontalFlip(), *to_input]
    )
    eval_tf = transforms.Compose(
        [transforms.Resize(round(crop * 256 / 224)), transforms.CenterCrop(crop), *to_input]
    )

    def split(
        samples: list[tuple[str, int]], index: Tensor, transform: Callable[[Any], Tensor]
    ) -> FolderSplit:
        return FolderSplit([samples[i] for i in index.tolist()], transform, num_workers)

    return Splits(
        info=replace(spec.info, num_classes=len(classes), classes=classes, input_size=(crop, crop)),
        train=split(train_samples, train_idx, train_tf),
        holdout=split(train_samples, holdout_idx, eval_tf),
        test=split(val_samples, test_pick, eval_tf),
        source=str(root),
    )


def load(
    name: str,
    data_dir: str | None = None,
    subset: int | None = None,
    holdout: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
    download: bool | None = None,
    input_size: int | None = None,
) -> Splits:
    """Find, read and split a dataset.

    subset: keep the first N training images (imagenet: N drawn with seed), then cut the held-out
    images from them; it also caps holdout and test at N images. holdout: held-out size (default 5,000,
    at most a sixth of the training images). The held-out images are a permutation fixed by seed, so
    trials compared on them should share a seed. download: None means yes unless SWEEP_OFFLINE=1.
    input_size: images resized to this side (None: the dataset's own; imagenet: its crops' side; folder:
    see ``sweep.data.folder``, which reads ``data_dir`` itself and nothing else)."""
    spec = DATASETS.get(name)
    if subset is not None and subset < 1:
        raise SweepError(f"subset must be at least 2 (training images to use), got {subset}")
    if num_workers < 0:
        raise SweepError(f"num_workers must be 0 or more, got {num_workers}")
    if spec.loader is not None:
        return spec.loader(data_dir, subset, holdout, seed, num_workers, input_size)
    folder = _locate(name, data_dir, download)
    if spec.read is None:
        return _folder_splits(spec, folder, subset, holdout, seed, num_workers, input_size or 224)
    if input_size is None or (input_size, input_size) == spec.info.input_size:
        arrays = _read_cached(name, str(folder.resolve()), _stamp(folder))
    else:
        arrays = _read_resized(name, str(folder.resolve()), _stamp(folder), input_size)
    return _tensor_splits(spec, arrays, folder, subset, holdout, seed)
