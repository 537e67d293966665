"""Readers for the files datasets come in: IDX (MNIST, Fashion-MNIST) and CIFAR-10 (npz or python batches).

Each reader returns uint8 NCHW image tensors and int64 labels, or raises a SweepError that names the file
and what was expected. Parsing is plain numpy: no per-image work.
"""

from __future__ import annotations

import gzip
import math
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from sweep.errors import SweepError

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


@dataclass(frozen=True)
class Arrays:
    train_images: Tensor  # uint8 (N, C, H, W)
    train_labels: Tensor  # int64 (N,)
    test_images: Tensor
    test_labels: Tensor
    classes: tuple[str, ...] | None  # from the files, when they name them


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """One IDX file of unsigned bytes (gzip-compressed when it ends in .gz), parsed with numpy."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise SweepError(
            f"{path}: cannot read it ({err}); expected a complete gzip-compressed IDX file"
        ) from None
    magic = int.from_bytes(raw[:4], "big")
    if len(raw) < 4 or magic != 0x800 + ndim:
        raise SweepError(
            f"{path}: bad IDX magic number 0x{magic:08x}; expected 0x{0x800 + ndim:08x} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise SweepError(f"{path}: IDX header cut short ({len(raw)} bytes); expected {header} header bytes")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    expected, actual = math.prod(dims), len(raw) - header
    if actual != expected:
        raise SweepError(
            f"{path}: header says {'x'.join(map(str, dims))} = {expected} bytes of data but the file holds "
            f"{actual}; it is truncated or corrupt"
        )
    return np.frombuffer(raw, np.uint8, expected, header).reshape(dims).copy()


def idx_path(folder: Path, stem: str) -> Path:
    gz = folder / f"{stem}.gz"
    return gz if gz.is_file() else folder / stem


def _checked_labels(path: Path, labels: np.ndarray, count: int, num_classes: int) -> Tensor:
    if len(labels) != count:
        raise SweepError(f"{path}: {len(labels)} labels for {count} images; expected one label per image")
    if len(labels) and int(labels.max()) >= num_classes:
        raise SweepError(f"{path}: label {int(labels.max())} found; expected labels 0..{num_classes - 1}")
    return torch.from_numpy(labels.astype(np.int64))


def read_idx_folder(folder: Path, size: tuple[int, int], num_classes: int) -> Arrays:
    out: list[Tensor] = []
    for images_stem, labels_stem in (IDX_FILES[:2], IDX_FILES[2:]):
        images_path, labels_path = idx_path(folder, images_stem), idx_path(folder, labels_stem)
        images = read_idx(images_path, 3)
        if images.shape[1:] != size:
            raise SweepError(
                f"{images_path}: images are {images.shape[1]}x{images.shape[2]}; expected {size[0]}x{size[1]}"
            )
        labels = _checked_labels(labels_path, read_idx(labels_path, 1), len(images), num_classes)
        out += [torch.from_numpy(images).unsqueeze(1), labels]
    return Arrays(*out, classes=None)


def _cifar_tensors(
    path: Path, images: np.ndarray, labels: np.ndarray, channels_last: bool
) -> tuple[Tensor, Tensor]:
    shape = (32, 32, 3) if channels_last else (3, 32, 32)
    if images.dtype != np.uint8 or images.shape[1:] != shape:
        raise SweepError(
            f"{path}: images are {images.dtype} {images.shape}; expected uint8 (N, {', '.join(map(str, shape))})"
        )
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if channels_last:
        tensor = tensor.permute(0, 3, 1, 2).contiguous()
    return tensor, _checked_labels(path, np.asarray(labels).reshape(-1), len(images), 10)


def read_cifar_npz(path: Path) -> Arrays:
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise SweepError(
                    f"{path}: no {', '.join(missing)} in it; expected arrays {', '.join(keys)}, classes"
                )
            arrays = {k: npz[k] for k in keys}
            classes = tuple(str(c) for c in npz["classes"]) if "classes" in npz.files else None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
        raise SweepError(f"{path}: cannot read it ({err}); expected a numpy .npz of uint8 arrays") from None
    train = _cifar_tensors(path, arrays["x_train"], arrays["y_train"], channels_last=True)
    test = _cifar_tensors(path, arrays["x_test"], arrays["y_test"], channels_last=True)
    return Arrays(*train, *test, classes=classes)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """The official CIFAR-10 pickles hold dicts of lists, strings and numpy arrays; refuse anything else."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        module = module.replace("numpy.core", "numpy._core")  # pickles written before numpy 2
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            loaded = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, ValueError, pickle.UnpicklingError, AttributeError, ImportError) as err:
        raise SweepError(f"{path}: cannot unpickle it ({err}); expected a CIFAR-10 python batch") from None
    if not isinstance(loaded, dict):
        raise SweepError(f"{path}: holds a {type(loaded).__name__}; expected a dict")
    # Python 2 pickles give str keys under latin1 (as torchvision reads them); Python 3 ones may give bytes
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in loaded.items()}


def read_cifar_batches(folder: Path) -> Arrays:
    parts: dict[bool, list[tuple[Tensor, Tensor]]] = {True: [], False: []}
    for stem in CIFAR_BATCHES:
        path = folder / stem
        batch = _unpickle(path)
        if "data" not in batch or "labels" not in batch:
            raise SweepError(f"{path}: keys {sorted(batch)}; expected 'data' and 'labels'")
        data = np.asarray(batch["data"])
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise SweepError(f"{path}: data is {data.shape}; expected (N, 3072) uint8 rows")
        parts[stem != "test_batch"].append(
            _cifar_tensors(
                path, data.reshape(-1, 3, 32, 32), np.asarray(batch["labels"]), channels_last=False
            )
        )
    classes = None
    meta_path = folder / "batches.meta"
    if meta_path.is_file():
        names_in_meta = _unpickle(meta_path).get("label_names")
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names_in_meta or ()) or None
    train_images, train_labels = (torch.cat(t) for t in zip(*parts[True], strict=True))
    return Arrays(train_images, train_labels, *parts[False][0], classes=classes)


def read_cifar(folder: Path) -> Arrays:
    npz = folder / "cifar10.npz"
    return read_cifar_npz(npz) if npz.is_file() else read_cifar_batches(folder)


def idx_probe(folder: Path) -> list[str] | None:
    missing = [f"{stem}.gz" for stem in IDX_FILES if not idx_path(folder, stem).is_file()]
    return None if len(missing) == len(IDX_FILES) else missing


def cifar_probe(folder: Path) -> list[str] | None:
    if (folder / "cifar10.npz").is_file():
        return []
    missing = [stem for stem in CIFAR_BATCHES if not (folder / stem).is_file()]
    return None if len(missing) == len(CIFAR_BATCHES) else missing


FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    stats = []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            st = path.stat()
            stats.append((path.name, st.st_size, st.st_mtime_ns))
    return tuple(stats)
