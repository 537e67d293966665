"""Training a network that is not a chain: the prox works on the coupled channel groups of a residual
network (every conv writing into a stream, their BatchNorms), dead groups are exactly zero, and the
reported widths and costs are those of the network that physically remains."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import small_resnet20_trial
from torch.utils.flop_counter import FlopCounterMode

from sweep.cli import main
from sweep.structure import channel_groups, prune
from sweep.train import load_checkpoint, train_trial


def test_resnet20_trial_zeroes_whole_groups_and_reports_the_pruned_network(shared_data_dir, tmp_path):
    reports: list[tuple[dict, str | None]] = []
    cfg = small_resnet20_trial(
        shared_data_dir,
        epochs=2,
        debias_epochs=1,
        layer_scales={"layer2.0.conv2": 1.0},  # a residual stream's root names its group
        eval_test=False,
    )
    final = train_trial(cfg, lambda m, ckpt: reports.append((m, ckpt)), str(tmp_path / "ckpt"))
    widths, full = final["widths"], final["widths_full"]
    assert list(widths) == list(full) and full["layer2.0.conv2"] == 32 and len(full) == 12
    assert final["neurons"] == sum(widths.values())
    assert any(0 < widths[n] < full[n] for n in widths), f"some group must lose channels: {widths}"
    assert widths["layer3.0.conv2"] == 64  # not constrained
    assert reports[1][0]["widths"] == widths  # the debias phase holds the dead channels at zero

    model = load_checkpoint(reports[-1][1]).model.eval()
    x = torch.zeros(1, 3, 32, 32)
    structure = channel_groups(model.body, x)
    keep: dict[str, torch.Tensor] = {}
    for group in structure.groups:
        alive = torch.zeros(group.width, dtype=torch.bool)
        for s in group.slices:  # every producer row of a dead channel is exactly zero
            rows = model.body.get_parameter(s.name).detach()[list(s.rows)].reshape(len(s.rows), -1)
            alive[list(s.channels)] |= rows.ne(0).any(dim=1)
        keep[group.name] = alive
    assert {n: int(k.sum()) for n, k in keep.items()} == widths

    assert all(k.any() for k in keep.values())
    compact, _ = prune(model.body, x, keep)
    assert channel_groups(compact, x).widths() == widths
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        compact.eval()(x)
    assert final["params"] == sum(p.numel() for p in compact.parameters()) < final["params_full"]
    assert final["flops"] == counter.get_total_flops() < final["flops_full"]
    assert final["memory_mb"] == round(final["params"] * 4 / 2**20, 4)
    probe = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        want, got = model(probe), compact(probe)
    assert float((got - want).abs().max() / want.abs().max()) < 1e-5


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["--layers", "layer1.0.conv2"],
            "--layers names 'layer1.0.conv2', not a layer that can lose units; allowed: conv1, layer1.0.conv1, ",
        ),
        (
            ["--penalty", "nuclear", "--lam", "0.01"],
            "penalty nuclear acts on one layer's weight matrix; group 'conv1' is written by 4 layers",
        ),
    ],
)
def test_train_refuses_a_non_root_layer_and_nuclear_on_a_stream_in_one_line(args, fragment, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", "resnet20", "--epochs", "1", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert not out.exists()


def test_mobilenet_v2_trains_on_its_depthwise_groups(shared_data_dir, tmp_path, capsys):
    args = ["train", "mobilenet_v2", "--data-dir", str(shared_data_dir), "--subset", "64", "--epochs", "1"]
    args += ["--penalty", "group_lasso", "--lam", "0.01", "--out", str(tmp_path / "o"), "--json"]
    assert main(args) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["widths_full"]["blocks.3.expand.0"] == 144 and len(final["widths"]) == 25
    assert final["neurons"] == sum(final["widths"].values())
    assert final["params_full"] == 2_236_682 and final["params"] <= final["params_full"]
