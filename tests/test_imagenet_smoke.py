"""The ImageNet paths start: `sweep train alexnet` and `sweep train vgg13` (the 224 px networks of the
paper) train one epoch on a tiny ImageFolder (train/ and val/, one folder per class) and write a checkpoint.

Real files, real decoding and the real 224 px transforms; only the number of images is tiny."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sweep.cli import main

CLASSES = ("n01440764", "n01443537", "n01484850")


def write_image_folder(root: Path, per_class: dict[str, int], size: int = 64, seed: int = 0) -> Path:
    """train/ and val/ with one folder of JPEG (and a few PNG) images per class, as ImageNet is laid out."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                # each class its own tint, so the images differ the way classes do
                pixels = rng.integers(0, 80, size=(size, size, 3), dtype=np.uint8)
                pixels[..., c] += 150
                suffix = "png" if i == 0 else "JPEG"
                Image.fromarray(pixels).save(folder / f"{name}_{i}.{suffix}")
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("imagenet"), {"train": 4, "val": 2})


@pytest.mark.parametrize("model", ["alexnet", "vgg13"])
def test_train_starts_on_an_image_folder(
    model: str, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "train",
            model,
            "--dataset",
            "imagenet",
            "--data-dir",
            str(image_folder),
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--subset",
            "6",  # 5 training images and 1 held out: a few 224 px iterations on a CPU
            "--device",
            "cpu",
            "--out",
            str(out),
            "--json",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    final = json.loads(printed.strip().splitlines()[-1])
    assert final["dataset"] == "imagenet"
    assert Path(final["data_source"]) == image_folder
    assert final["epochs"] == 1
    assert 0.0 <= final["test_top1_error"] <= 100.0
    assert final["neurons"] > 0
    checkpoint = out / "checkpoint.pt"
    assert checkpoint.is_file() and checkpoint.stat().st_size > 10_000_000  # the full 224 px network
    checkpoint.unlink()  # hundreds of MB: do not leave them in pytest's kept temp folders
