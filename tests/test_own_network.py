"""Your own network on your own images, as a user runs it (issue 14): a small residual CNN kept in a file
outside the package is swept with ``python -m sweep run FILE.py:make_net --dataset folder`` on an ImageFolder
of real PNG files (3 classes), exported with ``python -m sweep export`` and its default pick, and the export
is loaded in a fresh process by ``sweep.load_compact`` and TorchScript; there the val/ images, read with PIL
and preprocessed as the card says, give the error the card recorded. Also: a model that cannot take the
``--input-size`` it is given is refused up front, and the bad-input cases of the issue not held elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import write_image_folder

from sweep import models
from sweep.config import TrialConfig
from sweep.errors import SweepError
from sweep.space import checks as space_checks

NETS = """\
import torch
from torch import nn


class Residual(nn.Module):
    \"\"\"Two 3x3 conv+BN; the add ties conv2 to whatever writes the input (identity), or to a 1x1
    projection when the block downsamples or widens.\"\"\"

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    def __init__(self, num_classes, in_channels, width=8):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.block1 = Residual(width, width)
        self.block2 = Residual(width, 2 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block2(self.block1(self.stem(x)))), 1))


def make_net(num_classes, in_channels, input_size):
    assert isinstance(input_size, tuple) and len(input_size) == 2, input_size
    return SmallResNet(num_classes, in_channels)


def sized_for_32(num_classes, in_channels):
    \"\"\"A head sized for 32x32 images only.\"\"\"
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 32 * 32, num_classes)
    )
"""
# the stem's stream (stem conv, block1.conv2, their BatchNorms); block1's inner conv; block2's inner conv;
# block2's stream (its conv2 and the 1x1 projection, with their BatchNorms)
GROUPS = {"stem.0": 8, "block1.conv1": 8, "block2.conv1": 16, "block2.conv2": 16}
CLASSES = ("ant", "bee", "cat")  # write_image_folder tints each class its own colour: learnable
MISFILED = (("ant", "bee"), ("cat", "ant"))  # val/ant/000.png filed in val/bee/, val/cat/000.png in val/ant/
TRAIN_PER_CLASS, VAL_PER_CLASS, SIDE, INPUT_SIZE = 40, 15, 20, 16  # 20x20 files resized to 16x16
# The baseline and two group-lasso trials. Measured (this data, batch 8, lr 0.05, 4 epochs with 1 of
# debias, seeds 0-2): lambda 0.15 leaves 4-5 of block1.conv1's 8 channels and 6-8 of block2.conv1's 16 at
# 0-10% held-out error, 0.17 leaves 1-3 and 3-4 at 0%; 0.13 removes none and 0.2 empties a layer (BatchNorm
# makes a filter's scale free, so the prox shrinks a layer's filters alike: the window is narrow).
SPACE = """\
model: nets.py:make_net
fixed: {batch_size: 8, lr: 0.05, lr_policy: cosine, debias_epochs: 1}
search:
  penalty: {choices: [none, group_lasso]}
  lam: {low: 0.1, high: 0.2, log: true}
start: [{penalty: group_lasso, lam: 0.15}, {penalty: group_lasso, lam: 0.17}]
budgets: {smoke: {trials: 3, epochs: 4}}
"""
STUDY = "nets.make_net-folder"

# Run in a fresh process: the export as a user loads it, the val/ images as a user reads them.
MEASURE = """\
import json, sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import sweep

folder, images = Path(sys.argv[1]), Path(sys.argv[2])
card = json.loads((folder / "card.json").read_text())
spec = card["input"]
mean = torch.tensor(spec["mean"]).view(3, 1, 1)
std = torch.tensor(spec["std"]).view(3, 1, 1)
xs, ys = [], []
for label, name in enumerate(spec["classes"]):
    for path in sorted((images / name).glob("*.png")):
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((spec["width"], spec["height"]), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)
        xs.append((pixels.float() / 255.0 - mean) / std)
        ys.append(label)
x, y = torch.stack(xs), torch.tensor(ys)
sys.path.insert(0, sys.argv[3])
from nets import make_net  # the caller hands over its own factory; the file the export names is not read

model = sweep.load_compact(folder, model=make_net).eval()
scripted = torch.jit.load(str(folder / "model.ts"))
with torch.no_grad():
    logits, script_logits = model(x), scripted(x)
print(json.dumps({
    "module": type(model).__module__,
    "widths": model.widths(),
    "images": len(y),
    "wrong": int((logits.argmax(1) != y).sum()),
    "script_wrong": int((script_logits.argmax(1) != y).sum()),
    "diff": float((script_logits - logits).abs().max() / logits.abs().max()),
}))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SWEEP_STORAGE", "SWEEP_DATA_DIR")}
    return {**env, "SWEEP_OFFLINE": "1"}


def _python(cwd: Path, *argv: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def _sweep(cwd: Path, *argv: str) -> str:
    done = _python(cwd, "-m", "sweep", *argv)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """``tmp_path/work``: the user's folder, holding nets.py, space.yaml and images/ (real PNG files)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "nets.py").write_text(NETS)
    (work / "space.yaml").write_text(SPACE)
    images = write_image_folder(
        work / "images", CLASSES, per_class=TRAIN_PER_CLASS, size=SIDE, val_per_class=VAL_PER_CLASS
    )
    # two val/ images filed under the wrong class: a network that learnt the colours gets them wrong, so
    # the test error re-measured below is not a trivial 0 = 0
    for src, dst in MISFILED:
        (images / "val" / src / "000.png").rename(images / "val" / dst / f"from_{src}.png")
    return work


def test_own_network_on_own_images_sweeps_exports_and_reloads(work: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _sweep(
        work,
        *("run", "nets.py:make_net", "--space", "space.yaml", "--dataset", "folder"),
        *("--data-dir", "images", "--input-size", str(INPUT_SIZE), "--storage", url, "--out", "runs"),
    )
    trials = optuna.load_study(study_name=STUDY, storage=url).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    ref = f"{work / 'nets.py'}:make_net"
    assert {t.user_attrs["config"]["model"] for t in trials} == {ref}
    assert {t.user_attrs["config"]["input_size"] for t in trials} == {INPUT_SIZE}
    assert all(t.user_attrs["widths_full"] == GROUPS for t in trials)

    out = work / "export"
    printed = _sweep(work, "export", STUDY, "--storage", url, "--out", str(out))  # the default pick
    assert "export: the smallest network within 1 point(s) of the baseline" in printed
    card = json.loads((out / "card.json").read_text())
    picked = trials[card["source"]["trial"]]
    assert picked.params["penalty"] == "group_lasso", "a penalised trial, not the baseline"
    assert card["model"] == ref and card["dataset"] == "folder"
    assert card["input"]["classes"] == list(CLASSES) and card["input"]["height"] == INPUT_SIZE
    before, after = card["widths"]["before"], card["widths"]["after"]
    assert before == GROUPS and after == picked.user_attrs["widths"]
    assert sum(after.values()) < sum(before.values()) and all(w > 0 for w in after.values()), after
    assert card["params"]["after"] < card["params"]["before"]
    errors = card["top1_error"]
    assert errors["test_images"] == len(CLASSES) * VAL_PER_CLASS
    assert errors["test"] == errors["test_recorded"] == picked.user_attrs["test_top1_error"]
    assert errors["test"] >= 100.0 * len(MISFILED) / errors["test_images"] - 1e-9, errors

    # a fresh process somewhere else, handed the factory: no pickle, and nothing imported on the
    # export's say-so
    done = _python(tmp_path, "-c", MEASURE, str(out), str(work / "images" / "val"), str(work))
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout.splitlines()[-1])
    assert fresh["module"] == "sweep.models.net" and fresh["widths"] == after
    assert fresh["images"] == errors["test_images"]
    assert fresh["diff"] < 1e-5, "TorchScript and load_compact give the same logits"
    assert fresh["wrong"] == fresh["script_wrong"]
    assert 100.0 * fresh["wrong"] / fresh["images"] == pytest.approx(errors["test"], abs=1e-9), (
        "the recorded test error, measured again on the val/ images as the card says to read them"
    )


# ------------------------------------------------------------------------------- refused up front


def _config(work: Path, fn: str, input_size: int | None) -> TrialConfig:
    model = models.check(f"{work / 'nets.py'}:{fn}")
    return TrialConfig(model=model, dataset="folder", data_dir=str(work / "images"), input_size=input_size)


def test_a_model_is_built_up_front_for_the_input_size_and_classes_it_gets(work: Path) -> None:
    assert space_checks.sizes("folder", 16, str(work / "images")) == {
        "num_classes": 3,  # counted from train/'s class folders, not the folder dataset's placeholder
        "in_channels": 3,
        "input_size": (16, 16),
    }
    space_checks.check_sizes(None, _config(work, "make_net", 16))
    space_checks.check_sizes(None, _config(work, "sized_for_32", None))  # the folder's default side: 32
    with pytest.raises(SweepError, match=r"^model '.*/nets\.py:sized_for_32' cannot take input 3x16x16: "):
        space_checks.check_sizes(None, _config(work, "sized_for_32", 16))
    space_checks.check_sizes(
        None, TrialConfig(model="lenet", input_size=16)
    )  # a registered model is checked too


def _refused(cwd: Path, *argv: str) -> str:
    """``python -m sweep ARGV`` in ``cwd``: exit 2, one line on stderr, no file created; the line."""
    before = sorted(cwd.rglob("*"))
    done = _python(cwd, "-m", "sweep", *argv, timeout=120)
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
    assert done.stderr.startswith("sweep: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert sorted(cwd.rglob("*")) == before, "nothing written"
    return done.stderr


def test_run_refuses_a_model_that_cannot_take_the_input_size(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweep.search import plan_sweep  # what `sweep run` does first, before storage, data or Ray

    monkeypatch.chdir(work)
    overrides = {"dataset": "folder", "data_dir": str(work / "images"), "input_size": 16}
    options = {"sampler": "tpe", "scheduler": "fifo", "cpus_per_trial": 1.0, "gpus_per_trial": 0.0}
    options.update(concurrency=None, address=None, out="runs", max_failures=0)
    with pytest.raises(SweepError, match=r"nets\.py:sized_for_32' cannot take input 3x16x16: "):
        plan_sweep("nets.py:sized_for_32", None, None, None, "smoke", overrides, **options)


def test_train_refuses_a_model_that_cannot_take_the_input_size(work: Path) -> None:
    err = _refused(
        work,
        *("train", "nets.py:sized_for_32", "--dataset", "folder", "--data-dir", "images"),
        *("--input-size", "16", "--epochs", "1", "--device", "cpu", "--out", "run"),
    )
    assert "nets.py:sized_for_32' cannot take input 3x16x16" in err
