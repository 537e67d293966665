"""Models from outside the package (``sweep.models.external``): a residual CNN in a file of its own is
swept (Ray Tune, real training; the file imports a module from the driver's working directory, which the
Ray workers must find too) and exported, and the export is loaded in a fresh process by
``sweep.load_compact`` and TorchScript with its recorded error measured again; a ``pkg.mod:fn`` module in
the working directory trains with the generic default space; an entry point of group ``sweep.models`` is
found through a real dist-info folder on the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from conftest import write_mnist_like

from sweep import models
from sweep.cli import main
from sweep.models import external
from sweep.space import SHOWN, announce, load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

BLOCK = """\
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))
"""
# conv-bn-relu stem, one residual block whose add ties its second conv to the stem, a pooled linear head
NET = """\


class SmallResNet(nn.Module):
    def __init__(self, num_classes, in_channels, width=8):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.block = Block(width)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(width * 16, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


def make_net(num_classes, in_channels=3):
    return SmallResNet(num_classes, in_channels)


def make_any(**kwargs):
    return SmallResNet(kwargs["num_classes"], kwargs["in_channels"], width=4)
"""
NETS = BLOCK + NET  # one file
TRAIN_IMAGES = 300
GROUPS = [
    "stem.0",
    "block.conv1",
]  # the stem's stream (stem conv, block.conv2, their BatchNorms); the block's inner


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mnist_like(tmp_path_factory.mktemp("data"), TRAIN_IMAGES)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SWEEP_STORAGE"}
    return {**env, "SWEEP_OFFLINE": "1", **extra}


def _sweep(cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "sweep", *argv],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return done


def test_a_file_model_sweeps_exports_and_loads_in_a_fresh_process(data_dir, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "mine").mkdir()
    # outside the package and outside the working directory, importing its block from a module in the
    # working directory: the Ray workers must import from the driver's working directory as it does
    (tmp_path / "mine" / "nets.py").write_text(
        "import torch\nfrom torch import nn\nfrom myblocks import Block\n" + NET
    )
    (work / "myblocks.py").write_text(BLOCK)
    # `model:` takes the same reference, relative to the working directory; no dataset of its own
    (work / "space.yaml").write_text(
        "model: ../mine/nets.py:make_net\n"
        "fixed: {batch_size: 16, lr: 0.05, lr_policy: cosine, debias_epochs: 1}\n"
        "search:\n"
        "  penalty: {choices: [none, group_lasso]}\n"
        "  lam: {low: 0.05, high: 0.5, log: true}\n"
        "start: [{penalty: group_lasso, lam: 0.2}]\n"
        "budgets: {smoke: {trials: 2, epochs: 3}}\n"
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    argv = ["run", "../mine/nets.py:make_net", "--space", "space.yaml", "--dataset", "mnist"]
    argv += ["--data-dir", str(data_dir), "--subset", str(TRAIN_IMAGES), "--storage", url, "--out", "runs"]
    _sweep(work, *argv)

    study = optuna.load_study(study_name="nets.make_net-mnist", storage=url)
    trials = study.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    ref = f"{tmp_path / 'mine' / 'nets.py'}:make_net"  # recorded absolute: workers and later runs find it
    assert {t.user_attrs["config"]["model"] for t in trials} == {ref}
    assert list(trials[1].user_attrs["widths_full"]) == GROUPS
    widths = trials[1].user_attrs["widths"]
    assert widths != trials[1].user_attrs["widths_full"] and all(w > 0 for w in widths.values()), widths

    out = tmp_path / "export"
    monkeypatch.syspath_prepend(str(work))  # as `python -m sweep export` run there would have it
    argv = ["export", study.study_name, "--storage", url, "--trial", "1", "--out", str(out)]
    assert main([*argv, "--format", "torchscript,safetensors"]) == 0
    capsys.readouterr()
    card = json.loads((out / "card.json").read_text())
    arch = json.loads((out / "architecture.json").read_text())
    assert arch["model"] == ref and arch["widths"] == widths and card["widths"]["after"] == widths
    assert card["equivalence"]["max_relative_logit_difference"] <= 1e-5
    assert card["top1_error"]["test"] == trials[1].user_attrs["test_top1_error"]

    script = """\
import json, sys, torch
from sweep import load_compact
from sweep.data import datasets as data
from sweep.measure import top1_error

folder, data_dir = sys.argv[1], sys.argv[2]
model = load_compact(folder, trust_code=True)  # the user's own export: they trust its writer
scripted = torch.jit.load(folder + "/model.ts")
test = data.load("mnist", data_dir=data_dir, subset=int(sys.argv[3])).test
x = torch.cat([images for images, _ in test.batches(500)])
with torch.no_grad():
    want, got = model(x), scripted(x)
error = top1_error(model, test.batches(500), torch.device("cpu"))[0]
print(json.dumps({"widths": model.widths(), "diff": float((got - want).abs().max() / want.abs().max()),
                  "error": error, "card": json.load(open(folder + "/card.json"))["top1_error"]["test"]}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(out), str(data_dir), str(TRAIN_IMAGES)],
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout.splitlines()[-1])
    assert fresh["widths"] == widths
    assert fresh["diff"] < 1e-5, "TorchScript and load_compact give the same logits"
    assert fresh["error"] == fresh["card"], "the recorded test error, measured again in a fresh process"


def test_a_module_in_the_working_directory_is_a_model(data_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "nets.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)  # not on sys.path here, as under the `sweep` console script
    out = tmp_path / "run"
    argv = ["train", "mypkg.nets:make_any", "--dataset", "mnist", "--data-dir", str(data_dir)]
    assert main([*argv, "--subset", "300", "--epochs", "1", "--device", "cpu", "--out", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("sweep train mypkg.nets:make_any: ") and f"settings from {SHOWN}" in first
    space = load_space("mypkg.nets:make_any", dataset="mnist")
    assert models.create(space.model, num_classes=10, in_channels=1, input_size=28).widths() == {
        "stem.0": 4,
        "block.conv1": 4,
    }
    shown = announce(space).splitlines()  # what `sweep run` prints before the study starts
    assert shown[0] == f"no search space file for this model: {SHOWN}, as a file would hold it:"
    assert shown[1:3] == ['  model: "mypkg.nets:make_any"', '  dataset: "mnist"']
    assert load_space("mypkg.nets:make_any", dataset="mnist") == space


@pytest.fixture
def entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A distribution on sys.path with one entry point of group sweep.models: how pip installs one."""
    site = tmp_path / "site"
    (site / "tinynets-0.1.dist-info").mkdir(parents=True)
    (site / "tinynets.py").write_text(NETS)
    (site / "tinynets-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tinynets\nVersion: 0.1\n"
    )
    (site / "tinynets-0.1.dist-info" / "entry_points.txt").write_text(
        "[sweep.models]\ntinynet = tinynets:make_net\n"
    )
    monkeypatch.syspath_prepend(str(site))
    external.entry_points.cache_clear()
    yield "tinynet"
    external.entry_points.cache_clear()
    external._FUNCTIONS.pop("tinynet", None)


def test_an_entry_point_is_a_model_name(entry_point, data_dir, tmp_path, capsys):
    assert models.check(entry_point) == entry_point and models.is_external(entry_point)
    net = models.create(entry_point, num_classes=10, in_channels=1, input_size=28)
    assert net.name == entry_point and net.unit_layers() == GROUPS
    out = tmp_path / "run"
    argv = ["train", entry_point, "--dataset", "mnist", "--data-dir", str(data_dir), "--subset", "300"]
    assert main([*argv, "--epochs", "1", "--device", "cpu", "--out", str(out), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"settings from {SHOWN} + the command line" in lines[0] and "lr 0.05 (cosine)" in lines[0]
    assert json.loads(lines[-1])["widths_full"] == {"stem.0": 8, "block.conv1": 8}
    assert main(["train", entry_point, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model 'tinynet' comes from outside sweep and has no dataset" in err
    assert "datasets: cifar10, fashion-mnist" in err


def test_what_the_function_is_called_with(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(
        NETS + "\n\ndef nothing():\n    return SmallResNet(10, 3)\n\n"
        "def sized(input_size, num_classes):\n    assert input_size == (40, 36)\n    return SmallResNet(num_classes, 3)\n"
    )
    ref = models.check("nets.py:make_any")
    assert ref == f"{tmp_path / 'nets.py'}:make_any" and external.short_name(ref) == "nets.make_any"
    fn = external.resolve(ref)
    assert external.accepted(fn) == ("num_classes", "in_channels", "input_size")  # **kwargs takes all
    assert external.accepted(external.resolve(models.check("nets.py:make_net"))) == (
        "num_classes",
        "in_channels",
    )
    assert external.accepted(external.resolve(models.check("nets.py:nothing"))) == ()
    net = models.create("nets.py:sized", num_classes=7, in_channels=3, input_size=(40, 36))
    assert net.input_size == (3, 40, 36) and net(torch.zeros(2, 3, 40, 36)).shape == (2, 7)
    assert not models.is_chain(ref)
    with pytest.raises(Exception, match="has no dataset of its own"):
        models.default_dataset(ref)
    space = load_space("nets.py:make_net", dataset="cifar10")  # the generic space, built for the data
    assert (space.model, space.dataset, space.path) == (f"{tmp_path / 'nets.py'}:make_net", "cifar10", SHOWN)
    assert space.search["penalty"].choices == ("group_lasso", "sparse_group_lasso")  # + the baseline
    assert set(space.budgets) == {"smoke", "quick", "full"} and space.fixed["lr_policy"] == "cosine"
