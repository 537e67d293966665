"""Data is never code: an export or a checkpoint that names a model outside sweep's registry is not
imported on its say-so. Each payload below would write a marker file if it ever ran; none may."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from conftest import write_tiny_mnist
from optuna.trial import create_trial

import sweep
from sweep import models
from sweep.cli import main
from sweep.config import TrialConfig
from sweep.errors import SweepError
from sweep.export import write_compact
from sweep.train import load_checkpoint, train_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)

PAYLOAD = """\
from pathlib import Path
Path({marker!r}).write_text("ran")
from torch import nn


def make(num_classes=10, in_channels=1):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 5), nn.ReLU(), nn.Flatten(), nn.LazyLinear(num_classes))
"""

OWN_NET = """\
from torch import nn


def make(num_classes, in_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, num_classes)
    )
"""


def _payload(folder: Path) -> tuple[Path, Path]:
    """A helper file an attacker drops beside the files they rewrite, and the marker it would write."""
    marker = folder / "payload-ran"
    helper = folder / "helper.py"
    helper.write_text(PAYLOAD.format(marker=str(marker)))
    return helper, marker


def _lenet_export(folder: Path) -> Path:
    folder.mkdir()
    write_compact(folder, models.create("lenet").eval())
    return folder


@pytest.mark.parametrize("named", ["{helper}:make", "os:abort", "sys:exit", "subprocess:getoutput"])
def test_load_compact_never_imports_what_architecture_json_names(tmp_path: Path, named: str) -> None:
    folder = _lenet_export(tmp_path / "export")
    helper, marker = _payload(folder)
    arch_path = folder / "architecture.json"
    arch = json.loads(arch_path.read_text())
    arch["model"] = named.format(helper=helper)
    arch_path.write_text(json.dumps(arch))

    with pytest.raises(SweepError, match=r"code from outside sweep.*trust_code=True"):
        sweep.load_compact(str(folder))
    assert not marker.exists()


def test_a_registered_model_loads_as_before(tmp_path: Path) -> None:
    folder = _lenet_export(tmp_path / "export")
    assert sweep.load_compact(str(folder)).name == "lenet"


def test_an_own_network_loads_with_its_factory_or_with_trust(tmp_path: Path) -> None:
    nets = tmp_path / "nets.py"
    nets.write_text(OWN_NET)
    ref = models.check(f"{nets}:make")
    dense = models.create(ref, num_classes=10, in_channels=1, input_size=(12, 12)).eval()
    folder = tmp_path / "export"
    folder.mkdir()
    write_compact(folder, dense)
    x = torch.randn(2, 1, 12, 12)

    with pytest.raises(SweepError, match="code from outside sweep"):
        sweep.load_compact(str(folder))

    namespace: dict[str, Any] = {}
    exec(OWN_NET, namespace)  # the caller's own copy of the function, not the file the export names
    nets.write_text("raise SystemExit('the file named in architecture.json was imported')\n")
    by_factory = sweep.load_compact(str(folder), model=namespace["make"])
    by_factory.load_state_dict(dense.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(by_factory(x), dense(x))

    nets.write_text(OWN_NET)
    trusted = sweep.load_compact(str(folder), trust_code=True)
    with torch.no_grad():
        torch.testing.assert_close(trusted(x), dense(x))


# ---------------------------------------------------------------- a tampered checkpoint under export


@pytest.fixture(scope="module")
def lenet_trial(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One trained LeNet trial (a small MNIST-like set, one epoch) recorded in a study."""
    root = tmp_path_factory.mktemp("trust")
    write_tiny_mnist(root / "data")
    cfg = TrialConfig(
        model="lenet", data_dir=str(root / "data"), epochs=1, batch_size=32, holdout=20, penalty="none"
    )
    metrics = train_trial(cfg, None, str(root / "runs" / "t0"))
    attrs = {k: v for k, v in metrics.items() if k != "done"}
    attrs.update(early_stopped=False, checkpoint=str(root / "runs" / "t0"))
    storage = f"sqlite:///{root / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="trust", directions=["minimize", "minimize"])
    study.add_trial(create_trial(values=[attrs["top1_error"], attrs["neurons"]], user_attrs=attrs))
    return {"root": root, "storage": storage, "checkpoint": root / "runs" / "t0" / "checkpoint.pt"}


def _tampered(lenet_trial: dict[str, Any], tmp_path: Path, arch_only: bool) -> Path:
    """The trial's checkpoint rewritten (still loadable with weights_only=True) to name a helper file."""
    helper, marker = _payload(tmp_path)
    path: Path = lenet_trial["checkpoint"]
    original = path.read_bytes()
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["arch"]["model"] = f"{helper}:make"
    if not arch_only:
        payload["config"]["model"] = f"{helper}:make"
    torch.save(payload, path)
    lenet_trial["restore"] = original
    return marker


@pytest.mark.parametrize("arch_only", [True, False])
def test_export_of_a_tampered_checkpoint_runs_no_code(
    lenet_trial: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arch_only: bool,
) -> None:
    marker = _tampered(lenet_trial, tmp_path, arch_only)
    out = tmp_path / "exported"
    try:
        code = main(
            ["export", "trust", "--storage", lenet_trial["storage"], "--trial", "0", "--out", str(out)]
        )
        with pytest.raises(SweepError, match="but the study recorded 'lenet'"):
            load_checkpoint(lenet_trial["checkpoint"], expected="lenet")
        with pytest.raises(SweepError, match="code from outside sweep"):
            load_checkpoint(lenet_trial["checkpoint"])
    finally:
        lenet_trial["checkpoint"].write_bytes(lenet_trial["restore"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("sweep: error: ") and err.count("\n") == 1, err
    assert "but the study recorded 'lenet'" in err
    assert not marker.exists()
    assert not out.exists()


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p.update(arch=["not", "a", "mapping"]),
        lambda p: p["arch"].update(input_size="abc"),
        lambda p: p.update(metrics=3),
        lambda p: p.update(epoch="x"),
        lambda p: p["arch"].update(num_classes=-4),
    ],
    ids=["arch-list", "size-text", "metrics-int", "epoch-text", "classes-negative"],
)
def test_a_hand_edited_checkpoint_is_one_error(
    lenet_trial: dict[str, Any], tmp_path: Path, edit: Any
) -> None:
    payload = torch.load(lenet_trial["checkpoint"], map_location="cpu", weights_only=True)
    edit(payload)
    path = tmp_path / "checkpoint.pt"
    torch.save(payload, path)
    with pytest.raises(SweepError, match=r"not a sweep checkpoint|num_classes"):
        load_checkpoint(path, expected="lenet")


def test_a_checkpoint_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="not a regular file"):
        load_checkpoint("/dev/zero")
