"""The ``folder`` dataset: your own images, in torchvision's ImageFolder layout.

    PATH/train/<class>/*.png|jpg|...   one subfolder per class (at least 2), images at any depth below it
    PATH/val/<class>/...               optional; the same class names (a subset of them): the test split

Without ``val/``, a sixth of each class of ``train/`` (at least one image of every class that has two or
more) is the test split, drawn by a fixed seed, so every trial and every export sees the same test images.
The held-out split that trials are chosen on is then cut from the rest as for the other datasets.

Every image is converted to RGB (a grayscale folder gives three equal channels) and resized to
``input_size`` x ``input_size`` (PIL's bilinear filter, antialiased when shrinking). Normalisation is
measured: the per-channel mean and std of the training pool (``train/`` minus the test images, held-out
images included, so the numbers do not depend on the seed) in [0, 1] pixel units.

A folder whose decoded images fit under ``memory_cap()`` bytes (2 GiB unless $SWEEP_FOLDER_MEMORY_CAP
says otherwise) is decoded once, in worker processes, into one uint8 tensor, kept per process keyed on
every file's path, size and modification time, and split into ``TensorSplit``s like MNIST and CIFAR-10
(random_shift, random_flip and device-resident batches work as there). A larger folder streams through
``FolderSplit``'s DataLoader workers with the same conversion and resize; there the mean and std come
from a fixed sample of ``STATS_SAMPLE`` training images, and only those are checked up front.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sweep.data.files import Arrays
from sweep.data.splits import DatasetInfo, FolderSplit, Splits, TensorSplit
from sweep.errors import SweepError

NAME = "folder"
# torchvision's IMG_EXTENSIONS (not imported: torchvision costs a second to import), any letter case
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DEFAULT_INPUT_SIZE = 32  # image side when the trial gives no input_size (the CIFAR-10 models' own)
DEFAULT_MEMORY_CAP = 2 << 30  # bytes of decoded uint8 images held in memory; above it the folder streams
MEMORY_CAP_ENV = "SWEEP_FOLDER_MEMORY_CAP"
TEST_SHARE = 6  # without val/: one image in TEST_SHARE of each class is the test split
TEST_SEED = 14_000  # draws the test images (and a subset's images): fixed, whatever the trial's seed
STATS_SAMPLE = 10_000  # training images a streamed folder's mean and std are measured on
DEFAULT_HOLDOUT = 5000  # held-out images, at most a sixth of the training pool (as for the other datasets)
POOL_MIN_FILES = 256  # fewer images than this are decoded in this process: workers would cost more
CHUNK = 64  # images per task sent to a decoding worker
MAX_DECODE_WORKERS = 8
EXPECTED = (
    "an ImageFolder: train/ with one subfolder of images per class (at least 2 classes), and optionally "
    "val/ with the same class names as the test split"
)
HOW_TO_GET = "point --data-dir (or data_dir: in the search space) at the folder of your images"
# What ``sweep.data.datasets.info("folder")`` says before any folder is read; ``load_folder`` returns the real one.
INFO = DatasetInfo(NAME, 2, 3, (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), ())

Stamp = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Listing:
    """What an ImageFolder holds: class names (sorted, as ImageFolder numbers them), (path, label) of
    every image of train/ and of val/ (None without val/), and each file's (path, size, mtime)."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    val: tuple[tuple[str, int], ...] | None
    stamp: Stamp


def memory_cap() -> int:
    """Bytes of decoded images a folder may take in memory: $SWEEP_FOLDER_MEMORY_CAP, else 2 GiB."""
    raw = os.environ.get(MEMORY_CAP_ENV, "").strip()
    if not raw:
        return DEFAULT_MEMORY_CAP
    try:
        cap = int(float(raw))
    except ValueError:
        cap = -1
    if cap < 0:
        raise SweepError(f"${MEMORY_CAP_ENV} must be a number of bytes >= 0, got {raw!r}")
    return cap


def probe(folder: Path) -> list[str] | None:
    """For sweep.data.datasets's registry: None unless ``folder`` holds train/ ([] then; the check is ``scan``)."""
    return [] if (folder / "train").is_dir() else None


# ------------------------------------------------------------------------------------------ listing


def _visible_dirs(folder: Path) -> list[os.DirEntry[str]]:
    return sorted(
        (e for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name
    )


def _images_below(folder: str) -> Iterator[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every image file below ``folder``, in sorted order (hidden names
    skipped, symbolic links followed as ImageFolder does)."""
    for current, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = os.path.join(current, name)
            try:
                st = os.stat(path)
            except OSError as err:
                raise SweepError(f"{path}: cannot read it ({err.strerror or err})") from None
            yield path, st.st_size, st.st_mtime_ns


def _some(names: Sequence[str], shown: int = 10) -> str:
    return ", ".join(names[:shown]) + (f" ... ({len(names)} in all)" if len(names) > shown else "")


def class_names(root: Path) -> tuple[str, ...] | None:
    """The class folders of ``root/train`` as ``scan`` numbers them, without listing their images (what a
    model is built for before the data is read); None when there is no such folder to list."""
    try:
        return tuple(e.name for e in _visible_dirs(root / "train"))
    except OSError:
        return None


def decoded_bytes(n_images: int, size: int) -> int:
    """What ``n_images`` decoded at ``size`` take in memory (uint8, 3 channels)."""
    return n_images * 3 * size * size


def scan(root: Path) -> Listing:
    """List an ImageFolder; a SweepError naming the folder and what is expected when it is not one."""
    if not root.exists():
        raise SweepError(f"{root} does not exist; expected {EXPECTED}")
    if not root.is_dir():
        raise SweepError(f"{root} is not a folder; expected {EXPECTED}")
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir():
        raise SweepError(f"{root} has no train/ folder; expected {EXPECTED}")
    try:
        class_dirs = _visible_dirs(train_dir)
    except OSError as err:
        raise SweepError(
            f"{train_dir}: cannot list it ({err.strerror or err}); expected {EXPECTED}"
        ) from None
    if not class_dirs:
        raise SweepError(f"{train_dir} has no class folders; expected one subfolder of images per class")
    if len(class_dirs) < 2:
        raise SweepError(
            f"{train_dir} has one class folder ({class_dirs[0].name}); expected at least 2 classes, one "
            "subfolder of images each"
        )
    classes = tuple(e.name for e in class_dirs)
    stamp: list[tuple[str, int, int]] = []
    train: list[tuple[str, int]] = []
    for label, entry in enumerate(class_dirs):
        found = list(_images_below(entry.path))
        if not found:
            raise SweepError(
                f"{entry.path} holds no images; expected at least one file ending in "
                f"{', '.join(IMAGE_EXTENSIONS)} in every class folder"
            )
        stamp += found
        train += [(path, label) for path, _, _ in found]
    val: list[tuple[str, int]] | None = None
    if val_dir.is_dir():
        val_classes = [e.name for e in _visible_dirs(val_dir)]
        if not val_classes:
            raise SweepError(
                f"{val_dir} has no class folders; expected subfolders named as train/'s classes "
                f"({_some(classes)})"
            )
        unknown = [name for name in val_classes if name not in classes]
        if unknown:
            raise SweepError(
                f"{val_dir} has class folders not in train/: {', '.join(unknown[:5])}"
                f"{' ...' if len(unknown) > 5 else ''}; expected only train/'s classes ({_some(classes)})"
            )
        val = []
        index = {name: i for i, name in enumerate(classes)}
        for name in val_classes:
            found = list(_images_below(str(val_dir / name)))
            stamp += found
            val += [(path, index[name]) for path, _, _ in found]
        if not val:
            raise SweepError(
                f"{val_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}); expected the test split"
            )
    return Listing(root, classes, tuple(train), None if val is None else tuple(val), tuple(stamp))


# ----------------------------------------------------------------------------------------- decoding


def decode(path: str, size: int) -> np.ndarray:
    """One image file as uint8 (size, size, 3): converted to RGB, then resized (PIL bilinear)."""
    from PIL import Image

    with Image.open(path) as image:
        return _to_array(image, size)


def _to_array(image: Any, size: int) -> np.ndarray:
    from PIL import Image

    rgb = image.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _decode_chunk(paths: Sequence[str], size: int) -> tuple[np.ndarray | None, str, str]:
    """(images (n, size, size, 3), '', '') or (None, the file that failed, why); runs in a worker."""
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        try:
            out[i] = decode(path, size)
        except Exception as err:  # PIL raises many kinds (UnidentifiedImageError, OSError, SyntaxError...)
            return None, path, f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
    return out, "", ""


def _bad_image(path: str, why: str) -> SweepError:
    return SweepError(f"{path}: cannot read it as an image ({why}); expected a readable image file")


def decode_all(paths: Sequence[str], size: int) -> Tensor:
    """uint8 (N, 3, size, size) of ``paths``, decoded in worker processes when there are many; a
    SweepError naming the first file that cannot be read."""
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    workers = min(len(os.sched_getaffinity(0)), MAX_DECODE_WORKERS, len(chunks))
    if len(paths) < POOL_MIN_FILES or workers < 2:
        results: Iterator[tuple[np.ndarray | None, str, str]] = (_decode_chunk(c, size) for c in chunks)
        return _gather(results, len(paths), size)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        try:
            return _gather(pool.map(_decode_chunk, chunks, [size] * len(chunks)), len(paths), size)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _gather(results: Iterator[tuple[np.ndarray | None, str, str]], n: int, size: int) -> Tensor:
    images = torch.empty((n, 3, size, size), dtype=torch.uint8)
    start = 0
    for block, bad, why in results:
        if block is None:
            raise _bad_image(bad, why)
        images[start : start + len(block)] = torch.from_numpy(block).permute(0, 3, 1, 2)
        start += len(block)
    return images


@functools.lru_cache(maxsize=2)
def _decoded(root: str, stamp: Stamp, paths: tuple[str, ...], size: int) -> Tensor:
    """Every image of the folder decoded once per process, until a file is added, removed or changed."""
    return decode_all(paths, size)


def channel_stats(images: Tensor, index: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (population) of ``images[index]``, pixels in [0, 1], summed in float64.
    A channel that never varies gets std 1/255 (any value normalises it to 0; this one stays finite)."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for rows in index.split(2048):
        x = images[rows].to(torch.float64)
        total += x.sum((0, 2, 3))
        squares += x.square().sum((0, 2, 3))
    count = len(index) * images.shape[2] * images.shape[3]
    mean = total / count / 255.0
    var = (squares / count / 255.0**2 - mean.square()).clamp(min=0.0)
    std = var.sqrt().clamp(min=1.0 / 255.0)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


class ToInput:
    """A streamed image (a PIL image, RGB) as the in-memory path gives it: resized, then normalised
    float32 CHW. Picklable, for DataLoader worker processes."""

    def __init__(self, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.size = size
        self.scale = (1.0 / (255.0 * torch.tensor(std))).view(-1, 1, 1)
        self.shift = (torch.tensor(mean) / torch.tensor(std)).view(-1, 1, 1)

    def __call__(self, image: Any) -> Tensor:
        pixels = torch.from_numpy(_to_array(image, self.size).copy()).permute(2, 0, 1)
        return pixels.to(torch.float32).mul_(self.scale).sub_(self.shift)


@functools.lru_cache(maxsize=4)
def _sampled_stats(
    root: str, stamp: Stamp, paths: tuple[str, ...], size: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    sample = decode_all(paths, size)
    return channel_stats(sample, torch.arange(len(sample)))


def resize_arrays(arrays: Arrays, size: int) -> Arrays:
    """A tensor dataset's images resized to size x size (bilinear, antialiased when shrinking), uint8."""

    def resize(images: Tensor) -> Tensor:
        if tuple(images.shape[2:]) == (size, size):
            return images
        out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
        for start in range(0, len(images), 4096):
            x = images[start : start + 4096].to(torch.float32)
            y = torch.nn.functional.interpolate(x, (size, size), mode="bilinear", antialias=True)
            out[start : start + 4096] = y.round_().clamp_(0, 255).to(torch.uint8)
        return out

    return replace(arrays, train_images=resize(arrays.train_images), test_images=resize(arrays.test_images))


# ------------------------------------------------------------------------------------------ splitting


def _test_cut(labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """(pool, test) indices of train/ without val/: per class, round(n / TEST_SHARE) images (at least 1
    of a class with 2 or more, never its last one) drawn by TEST_SEED; both sorted."""
    generator = torch.Generator().manual_seed(TEST_SEED)
    pool, test = [], []
    for label in range(num_classes):
        members = (labels == label).nonzero().flatten()
        n = len(members)
        k = min(max(round(n / TEST_SHARE), 1 if n >= 2 else 0), n - 1)
        perm = members[torch.randperm(n, generator=generator)]
        test.append(perm[:k])
        pool.append(perm[k:])
    return torch.cat(pool).sort().values, torch.cat(test).sort().values


def _draw(index: Tensor, n: int | None, salt: int) -> Tensor:
    """``n`` of ``index`` drawn by a fixed seed (all of it when n is None or not smaller), sorted."""
    if n is None or n >= len(index):
        return index
    generator = torch.Generator().manual_seed(TEST_SEED + salt)
    return index[torch.randperm(len(index), generator=generator)[:n]].sort().values


def load_folder(
    data_dir: str | None,
    subset: int | None = None,
    holdout: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
    input_size: int | None = None,
) -> Splits:
    """Read and split the ImageFolder at ``data_dir`` (see the module docstring).

    subset: N training images drawn by a fixed seed (as for imagenet, but the same N whatever ``seed``),
    then the held-out images cut from them; it also caps the test split at N. holdout: held-out size
    (default 5,000, at most a sixth of the training pool), a permutation fixed by ``seed``."""
    from sweep.config import check_range
    from sweep.data.splits import _check_subset, _cut_holdout, _holdout_size

    env = os.environ.get("SWEEP_DATA_DIR")
    data_dir = data_dir or env
    if not data_dir:
        raise SweepError(
            f"dataset {NAME} reads the folder of your images and none was given: {HOW_TO_GET}, {EXPECTED}"
        )
    size = DEFAULT_INPUT_SIZE if input_size is None else input_size
    check_range("input_size", size)
    root = Path(data_dir).expanduser()
    try:
        listing = scan(root)
    except SweepError as err:
        if env and os.path.abspath(root) == os.path.abspath(Path(env).expanduser()):
            raise SweepError(f"{err} (the folder is $SWEEP_DATA_DIR, the default; {HOW_TO_GET})") from None
        raise
    samples = list(listing.train) + list(listing.val or ())
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    n_train = len(listing.train)
    if listing.val is None:
        pool, test = _test_cut(labels, len(listing.classes))
        if len(test) == 0 or len(pool) < 2:
            raise SweepError(
                f"{root / 'train'} holds {n_train} images, too few to hold out a test split and still "
                "train; add images, or a val/ folder with the test images"
            )
    else:
        pool, test = torch.arange(n_train), torch.arange(n_train, len(samples))
    _check_subset(NAME, subset, len(pool), root)
    pool = _draw(pool, subset, 1)
    test = _draw(test, subset, 2)
    train_idx, holdout_idx = _cut_holdout(
        pool, _holdout_size(NAME, len(pool), holdout, DEFAULT_HOLDOUT), seed
    )
    paths = tuple(path for path, _ in samples)

    if decoded_bytes(len(samples), size) <= memory_cap():
        images = _decoded(str(root.resolve()), listing.stamp, paths, size)
        mean, std = channel_stats(images, pool)

        def split(index: Tensor) -> Any:
            return TensorSplit(images, labels, mean, std, index)

    else:
        sample = _draw(pool, STATS_SAMPLE, 3)
        mean, std = _sampled_stats(
            str(root.resolve()), listing.stamp, tuple(paths[i] for i in sample.tolist()), size
        )
        transform = ToInput(size, mean, std)
        pairs = [(path, int(label)) for (path, _), label in zip(samples, labels.tolist(), strict=True)]

        def split(index: Tensor) -> Any:
            return FolderSplit([pairs[i] for i in index.tolist()], transform, num_workers)

    info = DatasetInfo(NAME, len(listing.classes), 3, (size, size), mean, std, listing.classes)
    return Splits(
        info=info, train=split(train_idx), holdout=split(holdout_idx), test=split(test), source=str(root)
    )
