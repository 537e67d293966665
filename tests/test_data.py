"""The dataset registry: finding files, reading the real formats, splitting, normalising, and bad input."""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sweep.data import CIFAR_CLASSES
from sweep.data import datasets as data
from sweep.errors import SweepError

pytestmark = pytest.mark.usefixtures("offline_data_env")


def write_idx(path: Path, array: np.ndarray) -> Path:
    """A uint8 array as a gzip-compressed IDX file, the MNIST format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), compresslevel=1))
    return path


MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def ids_images(n: int, size: int = 28) -> np.ndarray:
    """Grey images that carry their own index in two pixels, so a split's members can be read back."""
    images = np.zeros((n, size, size), np.uint8)
    images[:, 0, 0] = np.arange(n) % 256
    images[:, 0, 1] = np.arange(n) // 256
    return images


def write_ids_mnist(folder: Path, n_train: int, n_test: int) -> None:
    write_idx(folder / "train-images-idx3-ubyte.gz", ids_images(n_train))
    write_idx(folder / "train-labels-idx1-ubyte.gz", (np.arange(n_train) % 10).astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", ids_images(n_test))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", (np.arange(n_test) % 10).astype(np.uint8))


def image_ids(split: data.Split, mean: float = MNIST_MEAN, std: float = MNIST_STD, **kw: object) -> list[int]:
    ids: list[int] = []
    for x, _ in split.batches(7, **kw):  # type: ignore[arg-type]
        raw = torch.round((x[:, 0, 0, :2] * std + mean) * 255).long()
        ids += (raw[:, 0] + 256 * raw[:, 1]).tolist()
    return ids


def all_batches(split: data.Split, batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*split.batches(batch_size), strict=True)
    return torch.cat(xs), torch.cat(ys)


# ------------------------------------------------------------------------------------------ MNIST IDX


@pytest.mark.parametrize("layout", ["mnist/", "MNIST/raw (torchvision, uncompressed)", "the folder itself"])
def test_idx_layouts_load_with_shapes_dtypes_and_default_holdout(
    tmp_path: Path, write_idx_dataset: Callable[..., Path], layout: str
) -> None:
    root = tmp_path / "data"
    if layout == "mnist/":
        folder = write_idx_dataset(root / "mnist")
    elif layout.startswith("MNIST/raw"):
        folder = write_idx_dataset(root / "MNIST" / "raw", compress=False)
    else:
        folder = write_idx_dataset(root)
    splits = data.load("mnist", data_dir=str(root))

    assert splits.source == str(folder)
    assert splits.info == data.info("mnist")
    # 120 training images: the default holdout is capped at a sixth of them
    assert (len(splits.train), len(splits.holdout), len(splits.test)) == (100, 20, 30)
    x, y = all_batches(splits.train)
    assert x.shape == (100, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) <= 9


def test_normalisation_maps_the_dataset_mean_grey_to_zero(tmp_path: Path) -> None:
    grey = round(MNIST_MEAN * 255)  # 33
    folder = tmp_path / "mnist"
    write_idx(folder / "train-images-idx3-ubyte.gz", np.full((12, 28, 28), grey, np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(12, np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.full((3, 28, 28), 255, np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.ones(3, np.uint8))
    splits = data.load("mnist", data_dir=str(tmp_path))

    x, _ = all_batches(splits.train)
    assert torch.allclose(x, torch.full_like(x, (grey / 255 - MNIST_MEAN) / MNIST_STD), atol=1e-5)
    assert abs(float(x.mean())) < 0.01
    white, labels = all_batches(splits.test)
    assert torch.allclose(white, torch.full_like(white, (1 - MNIST_MEAN) / MNIST_STD), atol=1e-5)
    assert labels.tolist() == [1, 1, 1]


def test_holdout_and_train_partition_the_training_images_and_follow_the_seed(tmp_path: Path) -> None:
    write_ids_mnist(tmp_path / "mnist", n_train=300, n_test=40)
    splits = data.load("mnist", data_dir=str(tmp_path), holdout=50, seed=3)
    train_ids, holdout_ids = image_ids(splits.train), image_ids(splits.holdout)

    assert len(holdout_ids) == 50 and len(train_ids) == 250
    assert set(train_ids).isdisjoint(holdout_ids)
    assert sorted(train_ids + holdout_ids) == list(range(300))
    assert image_ids(splits.test) == list(range(40))  # the test split is the official one, in order

    again = data.load("mnist", data_dir=str(tmp_path), holdout=50, seed=3)
    assert image_ids(again.holdout) == holdout_ids
    other = data.load("mnist", data_dir=str(tmp_path), holdout=50, seed=4)
    assert image_ids(other.holdout) != holdout_ids

    shuffled = image_ids(splits.train, shuffle=True, seed=11)
    assert shuffled == image_ids(splits.train, shuffle=True, seed=11)
    assert shuffled != image_ids(splits.train, shuffle=True, seed=12)
    assert shuffled != train_ids and sorted(shuffled) == sorted(train_ids)


def test_subset_keeps_the_first_images_and_caps_holdout_and_test(tmp_path: Path) -> None:
    write_ids_mnist(tmp_path / "mnist", n_train=300, n_test=100)
    splits = data.load("mnist", data_dir=str(tmp_path), subset=60)

    assert (len(splits.train), len(splits.holdout), len(splits.test)) == (50, 10, 60)
    assert sorted(image_ids(splits.train) + image_ids(splits.holdout)) == list(range(60))
    assert image_ids(splits.test) == list(range(60))


def test_batches_cover_the_split_once_with_a_short_last_batch(tiny_mnist_dir: Path) -> None:
    train = data.load("mnist", data_dir=str(tiny_mnist_dir)).train
    sizes = [len(y) for _, y in train.batches(32, shuffle=True, seed=0)]
    assert sizes == [32, 32, 32, 4]
    assert train.num_batches(32) == 4 and train.num_batches(100) == 1
    with pytest.raises(SweepError, match="batch_size must be at least 1, got 0"):
        train.num_batches(0)


# ------------------------------------------------------------------------------------------- CIFAR-10


def cifar_arrays(n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """NHWC images whose red channel is 10, green 20 and blue the image index (+offset), labels index % 10."""
    images = np.empty((n, 32, 32, 3), np.uint8)
    images[..., 0], images[..., 1] = 10, 20
    images[..., 2] = (np.arange(n) + offset)[:, None, None]
    return images, ((np.arange(n) + offset) % 10).astype(np.uint8)


def check_cifar_channels(split: data.Split, first_id: int) -> None:
    x, y = all_batches(split)
    assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    raw = torch.round(
        (x * torch.tensor(CIFAR_STD)[:, None, None] + torch.tensor(CIFAR_MEAN)[:, None, None]) * 255
    )
    assert bool((raw[:, 0] == 10).all()) and bool((raw[:, 1] == 20).all())
    assert raw[:, 2, 5, 5].long().tolist() == list(range(first_id, first_id + len(y)))
    assert y.tolist() == [i % 10 for i in range(first_id, first_id + len(y))]


def test_cifar10_npz(tmp_path: Path) -> None:
    x_train, y_train = cifar_arrays(60)
    x_test, y_test = cifar_arrays(12, offset=100)
    classes = np.array(["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])
    (tmp_path / "cifar10").mkdir()
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, "classes": classes}
    np.savez(tmp_path / "cifar10" / "cifar10.npz", **arrays)
    splits = data.load("cifar10", data_dir=str(tmp_path))

    assert splits.info.classes[:2] == ("plane", "car") and splits.info.in_channels == 3
    assert (len(splits.train), len(splits.holdout), len(splits.test)) == (50, 10, 12)
    check_cifar_channels(splits.test, first_id=100)


def test_cifar10_torchvision_python_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(6):
        name, offset = (f"data_batch_{i + 1}", 4 * i) if i < 5 else ("test_batch", 100)
        nhwc, labels = cifar_arrays(4 if i < 5 else 6, offset)
        rows = nhwc.transpose(0, 3, 1, 2).reshape(len(nhwc), 3072)  # the official R, G, B planes per row
        # the official files come from Python 2 (str keys under latin1, as torchvision reads them);
        # batches re-saved by Python 3 have bytes keys: both must load
        keys = (b"data", b"labels", b"batch_label") if i % 2 else ("data", "labels", "batch_label")
        batch = dict(zip(keys, (rows, labels.tolist(), f"batch {i}"), strict=True))
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    label_names = [name.encode() for name in CIFAR_CLASSES]
    meta = {b"label_names": label_names, b"num_cases_per_batch": 4}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))

    splits = data.load("cifar10", data_dir=str(tmp_path), holdout=2)
    assert splits.source == str(folder)
    assert (len(splits.train), len(splits.holdout), len(splits.test)) == (18, 2, 6)
    assert splits.info.classes[-1] == "truck"
    check_cifar_channels(splits.test, first_id=100)


def test_cifar10_pickle_with_anything_but_arrays_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"):
        (folder / name).write_bytes(pickle.dumps({"data": Path("x"), "labels": []}))
    with pytest.raises(SweepError, match=r"data_batch_1: cannot unpickle it .*refusing to load pathlib"):
        data.load("cifar10", data_dir=str(tmp_path))


# ------------------------------------------------------------------------------------ ImageNet folder


def write_image_folder(root: Path, per_class_train: int = 6, per_class_val: int = 2) -> None:
    mean_colour = tuple(round(m * 255) for m in (0.485, 0.456, 0.406))
    for split, count in (("train", per_class_train), ("val", per_class_val)):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (32, 32), mean_colour).save(root / split / cls / f"{i}.png")


def test_imagenet_folder_loads_classes_splits_and_normalised_224_inputs(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "imagenet")
    splits = data.load("imagenet", data_dir=str(tmp_path))

    assert splits.source == str(tmp_path / "imagenet")
    assert splits.info.classes == ("cat", "dog") and splits.info.num_classes == 2
    assert splits.info.input_size == (224, 224)
    assert (len(splits.train), len(splits.holdout), len(splits.test)) == (10, 2, 4)
    x, y = all_batches(splits.test, batch_size=3)
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32
    assert y.tolist() == [0, 0, 1, 1]
    assert float(x.abs().max()) < 0.02  # the ImageNet mean colour normalises to about 0
    train_x, train_y = next(splits.train.batches(10, shuffle=True, seed=0))
    assert train_x.shape == (10, 3, 224, 224) and set(train_y.tolist()) == {0, 1}
    assert data.info("imagenet").num_classes == 1000  # without reading the folder


def test_imagenet_found_as_the_data_dir_itself_and_val_classes_checked(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    assert data.load("imagenet", data_dir=str(tmp_path), subset=6).source == str(tmp_path)
    (tmp_path / "val" / "fox").mkdir()
    with pytest.raises(SweepError, match=r"val has class folders not in train/: fox"):
        data.load("imagenet", data_dir=str(tmp_path))


# ------------------------------------------------------------------------------------------ real data


def test_real_mnist_default_splits_are_normalised(shared_data_dir: Path) -> None:
    if not (shared_data_dir / "mnist").is_dir():
        pytest.skip("no mnist/ in the shared data")
    splits = data.load("mnist", data_dir=str(shared_data_dir))
    assert (len(splits.train), len(splits.holdout), len(splits.test)) == (55_000, 5_000, 10_000)
    total = squares = count = 0.0
    for x, _ in splits.train.batches(5_000):
        total, squares, count = total + float(x.sum()), squares + float((x * x).sum()), count + x.numel()
    mean = total / count
    assert abs(mean) < 0.02 and abs((squares / count - mean**2) ** 0.5 - 1) < 0.02


def test_real_cifar10_shapes(shared_data_dir: Path) -> None:
    if not (shared_data_dir / "cifar10" / "cifar10.npz").is_file():
        pytest.skip("no cifar10/cifar10.npz in the shared data")
    splits = data.load("cifar10", data_dir=str(shared_data_dir))
    assert (len(splits.train), len(splits.holdout), len(splits.test)) == (45_000, 5_000, 10_000)
    x, y = next(splits.test.batches(256))
    assert x.shape == (256, 3, 32, 32) and int(y.max()) <= 9
    assert splits.info.classes == data.info("cifar10").classes


def test_fashion_mnist_from_the_debian_package() -> None:
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file():
        pytest.skip("dataset-fashion-mnist is not installed")
    assert "fashion-mnist" in data.available_offline()
    splits = data.load("fashion-mnist", subset=1200)
    assert splits.source == "/usr/share/datasets/fashion-mnist"
    assert (len(splits.train), len(splits.holdout), len(splits.test)) == (1000, 200, 1200)
    x, _ = all_batches(splits.train, batch_size=500)
    assert x.shape == (1000, 1, 28, 28) and abs(float(x.mean())) < 0.1


# ------------------------------------------------------------------------------------ finding the data


def test_search_order_and_a_folder_named_for_another_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_DATA_DIR", str(tmp_path / "env"))
    paths = data.search_paths("mnist", data_dir=str(tmp_path / "mine"))
    # a folder the user names is the only place looked in
    assert paths == [tmp_path / "mine" / "mnist", tmp_path / "mine" / "MNIST" / "raw", tmp_path / "mine"]
    paths = data.search_paths("mnist")
    assert paths[0] == tmp_path / "env" / "mnist"
    assert Path("/usr/share/datasets/mnist") in paths
    assert paths[-1] == Path.home() / ".cache" / "sweep" / "data" / "MNIST" / "raw"
    assert data.search_paths("mnist", data_dir=str(tmp_path / "env")) == paths, "$SWEEP_DATA_DIR: the default"
    # pointed straight at a fashion-mnist folder, mnist must not take its files for its own
    assert tmp_path / "fashion-mnist" not in data.search_paths("mnist", str(tmp_path / "fashion-mnist"))
    assert tmp_path / "fashion-mnist" in data.search_paths("fashion-mnist", str(tmp_path / "fashion-mnist"))


def test_data_dir_wins_over_sweep_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_idx_dataset: Callable[..., Path]
) -> None:
    write_idx_dataset(tmp_path / "a" / "mnist", n_train=60)
    write_idx_dataset(tmp_path / "b" / "mnist", n_train=90)
    monkeypatch.setenv("SWEEP_DATA_DIR", str(tmp_path / "b"))
    assert data.load("mnist").source == str(tmp_path / "b" / "mnist")
    assert data.load("mnist", data_dir=str(tmp_path / "a")).source == str(tmp_path / "a" / "mnist")
    assert set(data.available_offline()) >= {"mnist"}
    (tmp_path / "c").mkdir()
    with pytest.raises(
        SweepError, match=r"dataset mnist not found; .*/c \(the data folder given, .*/c, and nowhere else\)"
    ):
        data.load("mnist", data_dir=str(tmp_path / "c"))  # not silently the copy in $SWEEP_DATA_DIR


def test_available_offline_lists_what_is_found(tiny_mnist_dir: Path) -> None:
    found = data.available_offline(str(tiny_mnist_dir))
    assert "mnist" in found and "cifar10" not in found and "imagenet" not in found
    assert set(data.names()) == {"mnist", "fashion-mnist", "cifar10", "imagenet", "folder"}


# ----------------------------------------------------------------------------------------- bad input


def test_unknown_dataset_lists_the_known_names() -> None:
    with pytest.raises(
        SweepError, match=r"unknown dataset 'mnistt'; known: cifar10, fashion-mnist, folder, imagenet, mnist"
    ):
        data.load("mnistt")
    with pytest.raises(SweepError, match="known:"):
        data.info("svhn")


def test_folder_without_the_files_says_where_it_looked_and_what_is_available(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "notes.txt").write_text("nothing here")
    with pytest.raises(SweepError) as err:
        data.load("mnist", data_dir=str(tmp_path))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("dataset mnist not found; looked in ")
    assert f"{tmp_path / 'mnist'}, {tmp_path / 'MNIST' / 'raw'}, {tmp_path} (the data folder given" in message
    assert "SWEEP_OFFLINE=1" in message and "train-images-idx3-ubyte.gz" in message
    available = ", ".join(data.available_offline(str(tmp_path))) or "none"
    assert message.endswith(f"; available offline now: {available}")


def test_fashion_mnist_error_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "SYSTEM_DATASETS", tmp_path / "no-system-datasets")
    with pytest.raises(
        SweepError, match=r"apt-get install dataset-fashion-mnist.*available offline now: none$"
    ):
        data.load("fashion-mnist", data_dir=str(tmp_path))


def test_download_false_is_respected_even_when_online(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWEEP_OFFLINE")
    with pytest.raises(SweepError, match=r"dataset cifar10 not found; .*; downloads are off;"):
        data.load("cifar10", data_dir=str(tmp_path), download=False)


def test_incomplete_folder_names_the_missing_files(
    tmp_path: Path, write_idx_dataset: Callable[..., Path]
) -> None:
    folder = write_idx_dataset(tmp_path / "mnist")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        SweepError, match=r"holds part of mnist but lacks .*t10k-labels-idx1-ubyte\.gz; expected"
    ):
        data.load("mnist", data_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncated gzip", r"train-images-idx3-ubyte\.gz: cannot read it .*expected a complete gzip"),
        ("not gzip", r"train-images-idx3-ubyte\.gz: cannot read it .*expected a complete gzip"),
        ("wrong magic", r"train-images-idx3-ubyte\.gz: bad IDX magic number 0x00000801; expected 0x00000803"),
        ("short data", r"train-images-idx3-ubyte\.gz: header says 120x28x28 = 94080 bytes .* holds 94000"),
        ("wrong image size", r"train-images-idx3-ubyte\.gz: images are 32x32; expected 28x28"),
        ("label count", r"train-labels-idx1-ubyte\.gz: 119 labels for 120 images"),
    ],
)
def test_corrupt_idx_files_are_named(
    tmp_path: Path, write_idx_dataset: Callable[..., Path], damage: str, message: str
) -> None:
    folder = write_idx_dataset(tmp_path / "mnist")
    images_path = folder / "train-images-idx3-ubyte.gz"
    payload = gzip.decompress(images_path.read_bytes())
    if damage == "truncated gzip":
        images_path.write_bytes(images_path.read_bytes()[:-100])
    elif damage == "not gzip":
        images_path.write_bytes(payload)
    elif damage == "wrong magic":
        images_path.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + payload[4:]))
    elif damage == "short data":
        images_path.write_bytes(gzip.compress(payload[:-80]))
    elif damage == "wrong image size":
        write_idx(images_path, np.zeros((120, 32, 32), np.uint8))
    else:
        write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(119, np.uint8))
    with pytest.raises(SweepError, match=message):
        data.load("mnist", data_dir=str(tmp_path))


def test_cifar_npz_missing_arrays_is_named(tmp_path: Path) -> None:
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "cifar10.npz", x_train=np.zeros((4, 32, 32, 3), np.uint8))
    with pytest.raises(SweepError, match=r"cifar10\.npz: no y_train, x_test, y_test in it; expected arrays"):
        data.load("cifar10", data_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subset": 121}, r"subset must be between 2 and 120 for mnist .*got 121"),
        ({"subset": 0}, r"subset must be at least 2 .*got 0"),
        ({"subset": -5}, r"subset must be at least 2 .*got -5"),
        ({"holdout": 120}, r"holdout must be between 1 and 119 for mnist .*got 120"),
        ({"subset": 30, "holdout": 0}, r"holdout must be between 1 and 29 for mnist .*got 0"),
    ],
)
def test_subset_and_holdout_out_of_range(tiny_mnist_dir: Path, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(SweepError, match=message):
        data.load("mnist", data_dir=str(tiny_mnist_dir), **kwargs)  # type: ignore[arg-type]


def test_random_shift_translates_each_image_within_the_limit_and_repeats_per_seed():
    from sweep.data import TensorSplit

    images = torch.zeros(64, 1, 12, 12, dtype=torch.uint8)
    images[:, :, 5, 5] = 255  # one bright pixel: where it lands is the image's shift
    split = TensorSplit(images, torch.arange(64) % 10, (0.0,), (1.0,))
    ((x, _),) = split.batches(64, shuffle=False, seed=3, shift=2)
    ((again, _),) = split.batches(64, shuffle=False, seed=3, shift=2)
    assert torch.equal(x, again), "the same seed gives the same shifts"
    spots = (x[:, 0] > 0).flatten(1).nonzero()[:, 1]
    rows, cols = spots // 12, spots % 12
    assert len(spots) == 64, "every image keeps its pixel"
    assert rows.sub(5).abs().max() <= 2 and cols.sub(5).abs().max() <= 2
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 10, "offsets differ per image"
    ((plain, _),) = split.batches(64, shuffle=False, seed=3)
    assert (plain[:, 0, 5, 5] > 0).all(), "no shift unless asked"
