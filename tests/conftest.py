"""Shared fixtures: an offline data environment and small datasets written in the real file formats."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ENV_DATA_DIR = os.environ.get("SWEEP_DATA_DIR")  # read now: offline_data_env removes it during a test


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Writes a uint8 array as an IDX file (gzip-compressed when compress), the MNIST format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, compresslevel=1) if compress else payload)
    return path


def mnist_like_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 28x28 images: each class lights up its own 7x7 block over a little noise."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 4)
        images[i, 7 * row : 7 * row + 7, 7 * col : 7 * col + 7] = 220
    return images, labels


def write_tiny_mnist(data_dir: Path, train: int = 160, test: int = 40) -> Path:
    """An MNIST-like dataset in the real IDX files under ``data_dir/mnist``; returns ``data_dir``."""
    for prefix, n, seed in (("train", train, 0), ("t10k", test, 1)):
        images, labels = mnist_like_arrays(n, seed)
        write_idx(data_dir / "mnist" / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(data_dir / "mnist" / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return data_dir


def write_mnist_like(root: Path, n_train: int, n_test: int = 60) -> Path:
    """``root/mnist/``: the four IDX .gz files of a small learnable MNIST-like set; returns ``root``."""
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = mnist_like_arrays(n, seed)
        write_idx(root / "mnist" / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / "mnist" / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("ant", "bee", "cat"),
    per_class: int = 12,
    size: int = 16,
    val_per_class: int = 0,
    seed: int = 0,
) -> Path:
    """``root/train/<class>/NNN.png`` (and ``root/val/...`` when val_per_class): real PNG files of
    size x size RGB noise, each class tinted its own colour (learnable); returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for part, n in (("train", per_class), ("val", val_per_class)):
        for label, name in enumerate(classes):
            folder = root / part / name
            for i in range(n):
                pixels = rng.integers(0, 96, (size, size, 3), dtype=np.uint8)
                pixels[..., label % 3] += 140
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def offline_data_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No downloads, no SWEEP_DATA_DIR, and an empty home (so ~/.cache holds no data); returns that home."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SWEEP_OFFLINE", "1")
    monkeypatch.delenv("SWEEP_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def write_idx_dataset() -> Callable[..., Path]:
    """Returns write(folder, n_train=120, n_test=30, seed=0): the four IDX .gz files of a small MNIST-like set."""

    def write(
        folder: Path, n_train: int = 120, n_test: int = 30, seed: int = 0, compress: bool = True
    ) -> Path:
        suffix = ".gz" if compress else ""
        for prefix, n, part_seed in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
            images, labels = mnist_like_arrays(n, part_seed)
            write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
            write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
        return folder

    return write


@pytest.fixture
def tiny_mnist_dir(offline_data_env: Path, tmp_path: Path, write_idx_dataset: Callable[..., Path]) -> Path:
    """A data dir holding mnist/ with 120 training and 30 test images; pass it as data_dir."""
    root = tmp_path / "data"
    write_idx_dataset(root / "mnist")
    return root


@pytest.fixture
def lenet_baseline(tiny_mnist_dir: Path, tmp_path: Path) -> str:
    """A one-epoch unconstrained lenet trained on ``tiny_mnist_dir``: the checkpoint pruning arms start from."""
    from sweep.config import TrialConfig
    from sweep.train import train_trial

    cfg = TrialConfig(
        model="lenet", data_dir=str(tiny_mnist_dir), penalty="none", lam=0.0, epochs=1, batch_size=16
    )
    train_trial(cfg, None, str(tmp_path / "baseline"))
    return str(tmp_path / "baseline" / "checkpoint.pt")


@pytest.fixture
def shared_data_dir() -> Path:
    """The real datasets beside the checkout ($SWEEP_DATA_DIR or ../shared/data); skips when absent."""
    candidates = [Path(ENV_DATA_DIR)] if ENV_DATA_DIR else []
    for folder in [*candidates, SHARED_DATA]:
        if (folder / "mnist").is_dir() or (folder / "cifar10").is_dir():
            return folder
    pytest.skip(f"real data not found in {SHARED_DATA} or $SWEEP_DATA_DIR")


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """A local Ray of 2 CPUs for the tests of one module that run sweeps in this process."""
    import logging

    import ray

    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        object_store_memory=128 * 2**20,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL server's URL ($SWEEP_TEST_POSTGRES); skips when it is not set."""
    url = os.environ.get("SWEEP_TEST_POSTGRES")
    if not url:
        pytest.skip("SWEEP_TEST_POSTGRES is not set (bash scripts/start-postgres.sh prints the URL)")
    return url


def small_resnet20_trial(data_dir: Path, **overrides: Any) -> Any:
    """A one-epoch resnet20 trial on 256 CIFAR-10 images whose group lasso kills channels in the first two
    stages (measured: leaves 23 of 32 layer2.0.conv1 channels and 3 of the 32 of its stream)."""
    from sweep.config import TrialConfig

    settings: dict[str, Any] = {
        "model": "resnet20",
        "data_dir": str(data_dir),
        "subset": 256,
        "holdout": 64,
        "epochs": 1,
        "batch_size": 16,
        "lr": 0.1,
        "penalty": "group_lasso",
        "lam": 0.1,
        "layers": ["conv1", "layer1.0.conv1", "layer2.0.conv1", "layer2.0.conv2"],
        "device": "cpu",
    }
    return TrialConfig(**{**settings, **overrides})


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Returns mount(options): a fresh tmpfs (``size=256k``, ``ro,size=1m``...) under tmp_path, unmounted
    at the end: a real full or read-only disk. Skips where mounting is not allowed (not root)."""
    import subprocess

    mounted: list[Path] = []

    def mount(options: str) -> Path:
        disk = tmp_path / f"disk{len(mounted)}"
        disk.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(disk)
        return disk

    yield mount
    for disk in mounted:
        subprocess.run(["umount", "-l", str(disk)], check=False)
