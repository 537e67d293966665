import dataclasses
import json

import pytest
import torch

from sweep.cli import main
from sweep.config import TrialConfig
from sweep.errors import SweepError
from sweep.train import DivergedError, load_checkpoint, train_trial


def test_trial_reports_each_epoch_and_writes_a_loadable_checkpoint(tiny_mnist_dir, tmp_path):
    reports = []
    cfg = TrialConfig(
        model="lenet",
        data_dir=str(tiny_mnist_dir),
        penalty="group_lasso",
        lam=0.15,
        layers=["fc1"],
        epochs=3,
        debias_epochs=1,
        batch_size=16,
        holdout=20,
        measure_latency=True,
    )
    final = train_trial(cfg, lambda m, ckpt: reports.append((m, ckpt)), str(tmp_path / "ckpt"))
    assert [m["epoch"] for m, _ in reports] == [1, 2, 3]
    assert [m["phase"] for m, _ in reports] == ["sparse", "sparse", "debias"]
    assert final["done"] and final["neurons"] == sum(final["widths"].values())
    assert final["widths"]["fc1"] < 500 and final["widths"]["conv1"] == 20  # only fc1 constrained
    assert final["params"] < final["params_full"] == 431_080
    assert final["flops"] < final["flops_full"]
    assert 0 <= final["test_top1_error"] <= 100 and final["dataset"] == "mnist"
    assert final["latency_ms"] > 0, "the compact network's CPU time, asked for by measure_latency"
    assert "latency_ms" not in reports[0][0], "measured once, at the end"
    assert reports[-1][0]["widths"] == reports[-2][0]["widths"]  # debias holds dead neurons at zero
    ckpt = load_checkpoint(reports[-1][1])
    # the checkpoint records the device and precision the trial resolved "auto" to
    assert ckpt.epoch == 3 and ckpt.config == dataclasses.replace(cfg, device="cpu", precision="fp32")
    alive = ckpt.model.body.fc1.weight.abs().sum(1).ne(0).sum()
    assert int(alive) == final["widths"]["fc1"]


def test_cosine_anneals_the_sparse_phase_and_again_the_debias_phase(tiny_mnist_dir, tmp_path):
    cfg = TrialConfig(
        model="lenet",
        data_dir=str(tiny_mnist_dir),
        penalty="group_lasso",
        lam=0.01,
        epochs=4,
        debias_epochs=2,
        batch_size=10,
        holdout=20,
        lr_policy="cosine",
    )
    reports: list[dict] = []
    train_trial(cfg, lambda m, _ckpt: reports.append(m), str(tmp_path / "ckpt"))
    last_lr = [m["lr"] / cfg.lr for m in reports]  # each epoch's last step
    assert last_lr[1] < 0.05 and last_lr[3] < 0.05, "each phase ends its cosine near 0"
    assert 0.5 <= last_lr[2] < 0.7, "the debias phase starts again from lr and is half-way after one epoch"


def test_unconstrained_trial_keeps_every_neuron(tiny_mnist_dir, tmp_path):
    final = train_trial(
        TrialConfig(
            model="lenet", data_dir=str(tiny_mnist_dir), penalty="none", epochs=1, batch_size=32, holdout=20
        ),
        None,
        str(tmp_path),
    )
    assert final["neurons"] == 570 and final["params"] == final["params_full"]
    assert "latency_ms" not in final, "not measured unless asked"


def test_diverging_trial_raises_a_clear_error(tiny_mnist_dir, tmp_path):
    cfg = TrialConfig(
        model="lenet",
        data_dir=str(tiny_mnist_dir),
        penalty="none",
        lr=1e6,
        epochs=1,
        batch_size=16,
        holdout=20,
    )
    with pytest.raises(DivergedError, match="diverged"):
        train_trial(cfg, None, str(tmp_path))


def test_train_cli_prints_progress_and_json_last_line(tiny_mnist_dir, tmp_path, capsys):
    code = main(
        [
            "train",
            "lenet",
            "--penalty",
            "sparse_group_lasso",
            "--lam",
            "0.02",
            "--alpha",
            "0.3",
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--data-dir",
            str(tiny_mnist_dir),
            "--out",
            str(tmp_path / "run"),
            "--json",
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert out[1].startswith("epoch   1/2") and "neurons" in out[1]
    result = json.loads(out[-1])
    for key in (
        "top1_error",
        "test_top1_error",
        "neurons",
        "widths",
        "widths_full",
        "params",
        "params_full",
        "flops",
        "flops_full",
        "memory_mb",
        "epochs",
        "early_stopped",
        "config",
        "dataset",
        "seed",
        "versions",
    ):
        assert key in result, key
    assert result["neurons"] == sum(result["widths"].values())
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["resnet"],
            "unknown model 'resnet'; known: alexnet, cifar10_quick, lenet, mobilenet_v2, resnet18, resnet20, resnet56, vgg13, vgg13_cifar",
        ),
        (["lenet", "--dataset", "svhn"], "unknown dataset 'svhn'; known:"),
        (
            ["lenet", "--penalty", "l0"],
            "penalty must be one of none, l1, group_lasso, bn_group_lasso, sparse_group_lasso, nuclear, got 'l0'",
        ),
        (["lenet", "--lam", "-1"], "lam must be a number >= 0, got -1.0"),
        (["lenet", "--alpha", "1.5"], "alpha must be in [0, 1], got 1.5"),
        (["lenet", "--layers", "fc2"], "allowed: conv1, conv2, fc1"),
        (["lenet", "--subset", "100000"], "subset"),
        (["lenet", "--data-dir", "EMPTY"], "mnist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tiny_mnist_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [str(empty) if a == "EMPTY" else a for a in args]
    if "--data-dir" not in args:
        args += ["--data-dir", str(tiny_mnist_dir)]
    code = main(["train", *args, "--epochs", "1", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_empty_data_dir_message_says_where_it_looked(offline_data_env, tmp_path):
    from sweep.data import datasets as data

    with pytest.raises(SweepError) as info:
        data.load("mnist", data_dir=str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_train_onto_a_file_or_a_full_disk_is_one_line(tmp_path, tmpfs, capsys):
    """--out that is a file is refused before training; a disk that fills up ends in one line and leaves
    no partial checkpoint behind."""
    from sweep.models import create
    from sweep.train import save_checkpoint

    (tmp_path / "a-file").write_text("mine")
    assert main(["train", "lenet", "--out", str(tmp_path / "a-file")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err
    assert (tmp_path / "a-file").read_text() == "mine"

    disk = tmpfs("size=256k")
    with pytest.raises(SweepError, match=r"cannot write the checkpoint to .*No space left on device"):
        save_checkpoint(disk, create("lenet"), TrialConfig(model="lenet"), 1, {})
    assert list(disk.iterdir()) == []
