"""The ``folder`` dataset: real PNG/JPEG ImageFolders written here, read into splits, normalised by the
measured statistics, resized, cached, decoded in worker processes or streamed, and trained on end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_image_folder
from PIL import Image

from sweep.data import FolderSplit, TensorSplit
from sweep.data import datasets as data
from sweep.data import folder as data_folder
from sweep.errors import SweepError
from sweep.space import load_space

pytestmark = pytest.mark.usefixtures("offline_data_env")
CLASSES = ("ant", "bee", "cat")
REPO = Path(__file__).resolve().parents[1]


def pil_pixels(path: Path, size: int) -> np.ndarray:
    """The test's own decoding: uint8 (3, size, size), as the module docstring says it is done."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb).transpose(2, 0, 1)


def raw_batches(split: data.Split, info: data.DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    """A split's images back in uint8 pixels (undoing the normalisation) and its labels."""
    xs, ys = zip(*split.batches(10), strict=True)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    pixels = torch.round((torch.cat(xs) * std + mean) * 255).clamp(0, 255).to(torch.uint8)
    return pixels.numpy(), torch.cat(ys).numpy()


@pytest.fixture
def with_val(tmp_path: Path) -> Path:
    root = write_image_folder(tmp_path / "imgs", CLASSES, per_class=10, size=16, val_per_class=3)
    # one JPEG and one grayscale PNG among the training images
    Image.open(root / "train" / "bee" / "000.png").save(root / "train" / "bee" / "000.jpg", quality=90)
    (root / "train" / "bee" / "000.png").unlink()
    Image.open(root / "train" / "cat" / "001.png").convert("L").save(root / "train" / "cat" / "001.png")
    (root / "train" / "ant" / "notes.txt").write_text("not an image: ignored")
    return root


def test_without_val_a_stratified_sixth_is_the_test_split(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", CLASSES, per_class=12, size=16)
    splits = data.load("folder", data_dir=str(root))

    assert splits.info.classes == CLASSES and splits.info.num_classes == 3
    assert splits.info.input_size == (32, 32) and splits.info.in_channels == 3  # the default side
    assert splits.source == str(root)
    # 36 images: 2 of each class for the test split, then a sixth of the other 30 held out
    assert (len(splits.train), len(splits.holdout), len(splits.test)) == (25, 5, 6)
    assert all(isinstance(s, TensorSplit) for s in (splits.train, splits.holdout, splits.test))
    _, test_labels = raw_batches(splits.test, splits.info)
    assert sorted(test_labels.tolist()) == [0, 0, 1, 1, 2, 2]
    members = torch.cat([s.index for s in (splits.train, splits.holdout, splits.test)])  # type: ignore[attr-defined]
    assert sorted(members.tolist()) == list(range(36))
    # the test images do not depend on the seed (export loads with the trial's), the held-out ones do
    other = data.load("folder", data_dir=str(root), seed=7)
    assert torch.equal(other.test.index, splits.test.index)  # type: ignore[attr-defined]
    assert not torch.equal(other.holdout.index, splits.holdout.index)  # type: ignore[attr-defined]
    assert (other.info.mean, other.info.std) == (splits.info.mean, splits.info.std)


def test_val_is_the_test_split_labels_classes_and_measured_normalisation(with_val: Path) -> None:
    splits = data.load("folder", data_dir=str(with_val), input_size=16)
    info = splits.info

    assert info.classes == CLASSES and info.input_size == (16, 16)
    assert (len(splits.train) + len(splits.holdout), len(splits.test)) == (30, 9)
    files = sorted(p for p in (with_val / "train").rglob("*") if p.suffix in (".png", ".jpg"))
    pixels = np.stack([pil_pixels(p, 16) for p in files]).astype(np.float64) / 255
    assert info.mean == pytest.approx(pixels.mean(axis=(0, 2, 3)), abs=2e-6)
    assert info.std == pytest.approx(pixels.std(axis=(0, 2, 3)), abs=2e-6)
    # what a batch holds is those pixels, normalised by those numbers, labelled by class folder
    got, labels = raw_batches(splits.test, info)
    val_files = sorted((with_val / "val").rglob("*.png"))
    assert np.array_equal(got, np.stack([pil_pixels(p, 16) for p in val_files]))
    assert labels.tolist() == [CLASSES.index(p.parent.name) for p in val_files]
    grey = files.index(with_val / "train" / "cat" / "001.png")
    everything = splits.train.images  # type: ignore[attr-defined]
    assert torch.equal(everything[grey, 0], everything[grey, 1])  # grayscale: three equal channels


def test_input_size_resizes_every_image(with_val: Path) -> None:
    splits = data.load("folder", data_dir=str(with_val), input_size=8)
    assert splits.info.input_size == (8, 8)
    x, _ = next(splits.train.batches(50))
    assert x.shape == (len(splits.train), 3, 8, 8)
    got, _ = raw_batches(splits.test, splits.info)
    val_files = sorted((with_val / "val").rglob("*.png"))
    assert np.array_equal(got, np.stack([pil_pixels(p, 8) for p in val_files]))


def test_mnist_resized_by_input_size(tmp_path: Path, write_idx_dataset) -> None:  # type: ignore[no-untyped-def]
    write_idx_dataset(tmp_path / "data" / "mnist")
    splits = data.load("mnist", data_dir=str(tmp_path / "data"), input_size=14)
    assert splits.info.input_size == (14, 14)
    assert next(splits.test.batches(5))[0].shape == (5, 1, 14, 14)


def test_decoded_once_and_again_when_a_file_changes(with_val: Path) -> None:
    data_folder._decoded.cache_clear()
    first = data.load("folder", data_dir=str(with_val), input_size=12)
    again = data.load("folder", data_dir=str(with_val), input_size=12, seed=3)
    info = data_folder._decoded.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    assert again.train.images is first.train.images  # type: ignore[attr-defined]
    touched = with_val / "train" / "ant" / "002.png"
    os.utime(touched, ns=(1, 1))
    data.load("folder", data_dir=str(with_val), input_size=12)
    assert data_folder._decoded.cache_info().misses == 2


def test_worker_processes_decode_the_same_pixels_and_name_a_bad_file(
    with_val: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = sorted(str(p) for p in (with_val / "train").rglob("*") if p.suffix in (".png", ".jpg"))
    here = data_folder.decode_all(paths, 16)
    monkeypatch.setattr(data_folder, "POOL_MIN_FILES", 1)
    monkeypatch.setattr(data_folder, "CHUNK", 4)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})  # two workers, even on one core
    pools: list[int] = []

    class Counted(data_folder.ProcessPoolExecutor):
        def __init__(self, max_workers: int) -> None:
            pools.append(max_workers)
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(data_folder, "ProcessPoolExecutor", Counted)
    assert torch.equal(data_folder.decode_all(paths, 16), here)
    assert pools == [2]
    bad = with_val / "train" / "bee" / "005.png"
    bad.write_bytes(bad.read_bytes()[:60])  # a PNG cut short
    with pytest.raises(SweepError, match=rf"^{bad}: cannot read it as an image \("):
        data_folder.decode_all(paths, 16)


def test_a_folder_over_the_memory_cap_streams_the_same_batches(
    with_val: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_memory = data.load("folder", data_dir=str(with_val), input_size=16)
    monkeypatch.setenv(data_folder.MEMORY_CAP_ENV, str(39 * 3 * 16 * 16 - 1))  # one byte short
    streamed = data.load("folder", data_dir=str(with_val), input_size=16)

    assert isinstance(streamed.test, FolderSplit) and isinstance(streamed.train, FolderSplit)
    assert streamed.info == in_memory.info  # the sample is every training image here
    assert [len(s) for s in (streamed.train, streamed.holdout, streamed.test)] == [
        len(s) for s in (in_memory.train, in_memory.holdout, in_memory.test)
    ]
    for a, b in zip(in_memory.test.batches(4), streamed.test.batches(4), strict=True):
        assert torch.allclose(a[0], b[0], atol=1e-5) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda r: r, "does not exist; expected an ImageFolder"),
        (lambda r: (r / "val").mkdir(parents=True), "has no train/ folder"),
        (lambda r: (r / "train").mkdir(parents=True), "train has no class folders"),
        (
            lambda r: write_image_folder(r, ("solo",), 4),
            "train has one class folder (solo); expected at least 2",
        ),
        (
            lambda r: (write_image_folder(r, ("a", "b"), 3), (r / "train" / "c").mkdir()),
            "train/c holds no images",
        ),
        (
            lambda r: (write_image_folder(r, ("a", "b"), 3), (r / "val" / "zebra").mkdir(parents=True)),
            "val has class folders not in train/: zebra; expected only train/'s classes (a, b)",
        ),
        (lambda r: write_image_folder(r, ("a", "b"), 1), "train holds 2 images, too few to hold out a test"),
        (
            lambda r: (write_image_folder(r, ("a", "b"), 3), (r / "train" / "b" / "x.jpg").write_text("no")),
            "train/b/x.jpg: cannot read it as an image (UnidentifiedImageError",
        ),
    ],
    ids=["missing", "no train", "no classes", "one class", "empty class", "val class", "too few", "corrupt"],
)
def test_bad_folders_are_one_clear_error(tmp_path: Path, make, fragment: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(SweepError) as caught:
        data.load("folder", data_dir=str(root))
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_no_folder_named() -> None:
    with pytest.raises(SweepError, match="dataset folder reads the folder of your images and none was given"):
        data.load("folder")
    assert "folder" not in data.available_offline()


def test_space_file_names_the_folder_and_input_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "spaces").mkdir()
    space_file = tmp_path / "spaces" / "mine.yaml"
    space_file.write_text(
        "model: cifar10_quick\ndataset: folder\ndata_dir: ../imgs\nfixed: {input_size: 16}\n"
        "search: {penalty: {choices: [group_lasso]}, input_size: {choices: [8, 16]}}\n"
    )
    space = load_space("cifar10_quick", str(space_file))
    cfg = space.trial_config({})
    assert (cfg.dataset, cfg.data_dir, cfg.input_size) == ("folder", str(tmp_path / "imgs"), 16)
    assert space.trial_config({"penalty": "group_lasso", "input_size": 8}).input_size == 8
    # sweep run passes $SWEEP_DATA_DIR on as the trials' data_dir: a default, which the file's beats
    monkeypatch.setenv("SWEEP_DATA_DIR", str(tmp_path / "elsewhere"))
    assert space.trial_config({}, overrides={"data_dir": str(tmp_path / "elsewhere")}).data_dir == str(
        tmp_path / "imgs"
    )
    assert space.trial_config({}, overrides={"data_dir": "/chosen"}).data_dir == "/chosen"


def test_sweep_train_on_a_folder_end_to_end(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", CLASSES, per_class=14, size=20)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "sweep", "train", "cifar10_quick", "--dataset", "folder", "--data-dir",
         str(root), "--input-size", "16", "--epochs", "1", "--device", "cpu", "--out", str(out), "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout.strip().splitlines()[-1])
    assert final["dataset"] == "folder" and final["data_source"] == str(root)
    assert final["config"]["input_size"] == 16 and final["test_top1_error"] is not None
    from sweep.train import load_checkpoint

    ckpt = load_checkpoint(out)
    assert ckpt.model.input_size == (3, 16, 16) and ckpt.model.num_classes == 3
