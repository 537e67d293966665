"""Every shipped search space on every dataset, the layer check before a study exists, and the headline
`sweep run vgg13 --dataset cifar10 --budget smoke` run for real on CIFAR-10 (70-95 s on 2 busy cores).

A space accepts a dataset when its network can be built for that dataset's images (channels, side,
classes); ``sweep run`` refuses the others in one line before anything is written. On each dataset it
accepts, a space's layer names must all exist in the network that dataset builds, for every budget."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest

from sweep import cli, models
from sweep.config import TrialConfig
from sweep.data import datasets as data
from sweep.errors import SweepError
from sweep.space import check_on_data, check_sizes, load_space, named_layers, unit_layers

SHIPPED = Path(__file__).resolve().parents[1] / "sweep" / "space" / "shipped"
SPACES = sorted(p.stem for p in SHIPPED.glob("*.yaml"))
# the datasets whose images each shipped space's network cannot take (too small for its pools and
# strides): refused before the study exists; every other dataset is accepted
CANNOT_TAKE = {
    "alexnet": {"mnist", "fashion-mnist", "cifar10", "folder"},
    "vgg13": {"mnist", "fashion-mnist"},
    "vgg13_cifar": {"mnist", "fashion-mnist"},
}


def _check(model: str, dataset: str, budget: str) -> None:
    """What ``sweep run MODEL --dataset DATASET --budget BUDGET`` checks before its study exists."""
    space = load_space(model, str(SHIPPED / f"{model}.yaml"), dataset)
    chosen = space.budget(budget)
    space = space.for_budget(chosen)
    check_sizes(space, space.trial_config({}, chosen, {"dataset": dataset}))


@pytest.mark.parametrize("model", SPACES)
def test_every_shipped_space_validates_on_each_dataset_it_accepts(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWEEP_DATA_DIR", raising=False)  # folder: its placeholder class count
    space = load_space(model, str(SHIPPED / f"{model}.yaml"))
    refused: set[str] = set()
    for dataset in data.names():
        for budget in space.budgets:
            try:
                _check(model, dataset, budget)
            except SweepError as err:
                # the only refusal a shipped space may meet: images its network cannot take
                assert "cannot take input" in str(err) and "\n" not in str(err), (dataset, budget, str(err))
                refused.add(dataset)
    assert space.dataset not in refused
    if model in CANNOT_TAKE or model in models.names():
        assert refused == CANNOT_TAKE.get(model, set())


def test_vgg13_is_the_papers_network_on_cifar10_with_every_layer_its_space_names() -> None:
    layers = unit_layers("vgg13", "cifar10")
    assert layers[-2:] == ("fc1", "fc2")  # the paper's two hidden fc layers, at 32 px too
    assert unit_layers("vgg13", "imagenet") == layers
    space = load_space("vgg13", str(SHIPPED / "vgg13.yaml"), "cifar10")
    assert {layer for _, layer in named_layers(space)} <= set(layers)
    assert space.search["layers"].values["fc"] == ["fc1", "fc2"]


NETS = """
from torch import nn


class Net(nn.Module):
    # a hidden layer only for images under 64 px: its layers depend on the size it is built for
    def __init__(self, in_channels, num_classes, side):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Linear(8, 16) if side < 64 else None
        self.out = nn.Linear(16 if side < 64 else 8, num_classes)

    def forward(self, x):
        x = self.pool(self.conv(x).relu()).flatten(1)
        if self.hidden is not None:
            x = self.hidden(x).relu()
        return self.out(x)


def make_net(num_classes, in_channels, input_size):
    return Net(in_channels, num_classes, input_size[0])
"""

SPACE = """
model: nets.py:make_net
dataset: cifar10
search:
  penalty: {choices: [group_lasso]}
  lam: {low: 1.0e-3, high: 1.0e-2, log: true}
  layers: {choices: {hidden: [hidden], all: null}}
  layer_scales: {hidden: {low: 0.5, high: 2.0}}
budgets:
  smoke: {trials: 1, epochs: 1, subset: 100}
"""


@pytest.mark.parametrize(
    ("searched", "argv", "side"),
    [
        ("", ["--input-size", "64"], 64),  # the command line's side
        ("  input_size: {choices: [32, 64]}\n", [], 64),  # one of the searched sides
    ],
)
def test_a_layer_the_runs_network_lacks_is_one_line_before_the_study_exists(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    searched: str,
    argv: list[str],
    side: int,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(NETS)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.replace("budgets:\n", searched + "budgets:\n"))
    db = tmp_path / "study.db"
    base = ["run", "nets.py:make_net", "--space", str(space), "--storage", f"sqlite:///{db}"]
    code = cli.main([*base, "--out", str(tmp_path / "runs"), *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert f"{space}: search.layers.choices.hidden names layer 'hidden'" in err
    assert f"built for cifar10 (3x{side}x{side}) does not have; allowed: conv" in err
    assert not db.exists() and not (tmp_path / "runs").exists()
    # the same space at 32 px, the dataset's own side, passes the same check
    loaded = load_space("nets.py:make_net", str(space))
    check_on_data(loaded, TrialConfig(model=loaded.model, dataset="cifar10", input_size=32))


def test_the_check_covers_the_command_lines_layers_too() -> None:
    cfg = TrialConfig(model="vgg13_cifar", dataset="cifar10", layers=["fc1", "fc2"])
    with pytest.raises(SweepError, match=r"the trial settings.layers names layer 'fc2', which vgg13_cifar"):
        check_on_data(None, cfg)


def _run_in_thread(argv: list[str], timeout: float) -> int | None:
    """cli.main(argv) in a daemon thread; None when it has not returned within ``timeout`` s."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(cli.main(argv)), daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else None


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_space_that_is_not_a_regular_file_is_refused_without_reading_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    if kind == "fifo":
        path = tmp_path / "space.yaml"
        os.mkfifo(path)
        expected = "a named pipe, not a regular file"
    else:
        path = Path("/dev/null")
        expected = "a character device, not a regular file"
    code = _run_in_thread(
        ["run", "lenet", "--space", str(path), "--storage", f"sqlite:///{tmp_path}/s.db"], 30
    )
    err = capsys.readouterr().err
    assert code == 2, f"sweep run did not return within 30 s (it read {path}?)" if code is None else err
    assert err.count("\n") == 1 and f"cannot read search space {path}: {expected}" in err, err
    assert not (tmp_path / "s.db").exists()


LENET = "model: lenet\nsearch:\n  penalty: {choices: [group_lasso]}\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "  batch_size: {low: 1, high: 2, step: 5}\n",
            "search.batch_size.step: 5 is larger than the range 1..2, which would leave the one value 1; "
            "give a step of at most 1",
        ),
        (
            "  lam: {low: 0.001, high: 0.002, step: 0.01}\n",
            "search.lam.step: 0.01 is larger than the range 0.001..0.002",
        ),
    ],
)
def test_a_step_larger_than_its_range_is_refused_naming_the_parameter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(LENET + line)
    code = cli.main(["run", "lenet", "--space", str(space), "--storage", f"sqlite:///{tmp_path}/s.db"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"{space}: {message}" in err, err
    assert not (tmp_path / "s.db").exists()


def test_a_step_as_wide_as_its_range_is_kept(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(LENET + "  batch_size: {low: 32, high: 64, step: 32}\n")
    dist = load_space("lenet", str(space)).search["batch_size"]
    assert (dist.low, dist.high, dist.step) == (32, 64, 32)


def _cifar10_dir() -> Path:
    for folder in [os.environ.get("SWEEP_DATA_DIR"), Path(__file__).resolve().parents[2] / "shared" / "data"]:
        if folder and (Path(folder) / "cifar10" / "cifar10.npz").is_file():
            return Path(folder)
    pytest.skip("CIFAR-10 not found in $SWEEP_DATA_DIR or ../shared/data")


def test_the_headline_vgg13_on_cifar10_smoke_run_completes_every_trial(tmp_path: Path) -> None:
    data_dir = _cifar10_dir()
    db = tmp_path / "study.db"
    env = {k: v for k, v in os.environ.items() if k != "SWEEP_STORAGE"}
    env.update(SWEEP_OFFLINE="1", SWEEP_DATA_DIR=str(data_dir))
    argv = ["run", "vgg13", "--dataset", "cifar10", "--budget", "smoke"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweep",
            *argv,
            "--storage",
            f"sqlite:///{db}",
            "--out",
            str(tmp_path / "runs"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "FAILED" not in done.stdout
    study = optuna.load_study(study_name="vgg13-cifar10", storage=f"sqlite:///{db}")
    budget = load_space("vgg13", str(SHIPPED / "vgg13.yaml")).budget("smoke")
    states = [t.state for t in study.trials]
    assert len(states) == budget.trials and set(states) == {optuna.trial.TrialState.COMPLETE}, states
    assert all(t.user_attrs["config"]["model"] == "vgg13" for t in study.trials)
