"""``method: magnitude``: one-shot magnitude pruning of the starting weights, then fine-tuning with the pruned
channels held at exactly zero (sweep.sparsity.magnitude, sweep.train.trial)."""

import json

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution

from sweep import models
from sweep.cli import main
from sweep.config import LATER_DEFAULTS, TrialConfig
from sweep.errors import SweepError
from sweep.select.picks import TrialRow
from sweep.sparsity import compact_network, logits_difference, magnitude_prune_, neuron_groups
from sweep.study import is_baseline
from sweep.train import load_checkpoint, train_trial

WIDTHS = {"conv1": 20, "conv2": 50, "fc1": 500}


def magnitude_config(data_dir, init, **extra):
    return TrialConfig(
        model="lenet",
        data_dir=str(data_dir),
        init=init,
        method="magnitude",
        prune_ratio=0.5,
        epochs=2,
        batch_size=16,
        holdout=20,
        **extra,
    )


def test_local_magnitude_trial_halves_every_group_and_exports_exactly(
    tiny_mnist_dir, lenet_baseline, tmp_path
):
    reports = []
    cfg = magnitude_config(tiny_mnist_dir, lenet_baseline)
    final = train_trial(cfg, lambda m, ckpt: reports.append((m, ckpt)), str(tmp_path / "mag"))
    half = {name: width // 2 for name, width in WIDTHS.items()}
    assert [m["widths"] for m, _ in reports] == [half, half], "pruned at the start, held through fine-tuning"
    assert [m["phase"] for m, _ in reports] == ["finetune", "finetune"]
    assert final["penalty_value"] == 0.0 and final["config"]["method"] == "magnitude"
    ckpt = load_checkpoint(reports[-1][1])
    assert ckpt.config.method == "magnitude"
    # exact zeros in every producer: the dead channels' rows, biases
    for g in neuron_groups(ckpt.model):
        dead = ~g.alive()
        assert int(dead.sum()) == WIDTHS[g.name] - half[g.name]
        for s in g.slices:
            assert s.view()[s.per_channel(dead) if s.channels is not None else dead].abs().sum() == 0
    small = compact_network(ckpt.model)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in ckpt.model.parameters())
    x = torch.randn(8, 1, 28, 28)
    _, rel = logits_difference(ckpt.model, small, x)
    assert rel <= 1e-5


def test_global_scope_prunes_unevenly_and_l2_ranks_by_l2(tiny_mnist_dir, lenet_baseline):
    model = models.create("lenet", num_classes=10, in_channels=1, input_size=(28, 28))
    from sweep.train.weights import load_initial_weights

    load_initial_weights(model, lenet_baseline)
    groups = neuron_groups(model)
    masks = magnitude_prune_(groups, 0.5, "l1", "global")
    pruned = {g.name: int(m.sum()) for g, m in zip(groups, masks, strict=True)}
    assert sum(pruned.values()) == int(0.5 * sum(WIDTHS.values()))
    shares = {name: pruned[name] / WIDTHS[name] for name in WIDTHS}
    assert len({round(s, 3) for s in shares.values()}) > 1, shares
    assert all(pruned[name] < WIDTHS[name] for name in WIDTHS), "every group keeps a channel"
    assert {g.name: int((~g.alive()).sum()) for g in groups} == pruned

    model = models.create("lenet", num_classes=10, in_channels=1, input_size=(28, 28))
    load_initial_weights(model, lenet_baseline)
    groups = neuron_groups(model)
    norms = groups[0].sq_norms().sqrt()
    (mask,) = magnitude_prune_(groups[:1], 0.25, "l2", "local")
    assert int(mask.sum()) == 5 and float(norms[mask].max()) <= float(norms[~mask].min())


def test_magnitude_trial_is_not_the_baseline_and_old_fingerprints_match():
    assert {"method": "prox", "prune_ratio": 0.5, "importance": "l1", "scope": "local"}.items() <= (
        LATER_DEFAULTS.items()
    )
    fields = {f: None for f in TrialRow.__dataclass_fields__}
    row = TrialRow(
        **{
            **fields,
            "number": 1,
            "state": "COMPLETE",
            "penalty": "magnitude",
            "config": {"method": "magnitude", "prune_ratio": 0.5, "scope": "global"},
            "widths": {},
            "widths_full": {},
            "history": [],
        }
    )
    assert not row.is_baseline and row.penalty_label == "magnitude 0.50 global"
    dists = {
        "penalty": CategoricalDistribution(["none", "group_lasso"]),
        "method": CategoricalDistribution(["prox", "magnitude"]),
    }
    trial = optuna.trial.create_trial(
        params={"penalty": "none", "method": "magnitude"}, distributions=dists, value=1.0
    )
    assert not is_baseline(trial)
    trial = optuna.trial.create_trial(
        params={"penalty": "none"}, distributions={"penalty": dists["penalty"]}, value=1.0
    )
    assert is_baseline(trial)


def test_train_cli_runs_a_magnitude_trial(tiny_mnist_dir, lenet_baseline, tmp_path, capsys):
    code = main(
        [
            "train",
            "lenet",
            "--method",
            "magnitude",
            "--prune-ratio",
            "0.5",
            "--scope",
            "local",
            "--importance",
            "l2",
            "--init",
            lenet_baseline,
            "--epochs",
            "1",
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
    assert "pruning by l2 0.50 local" in out[0]
    result = json.loads(out[-1])
    assert result["widths"] == {name: width // 2 for name, width in WIDTHS.items()}
    assert result["config"]["importance"] == "l2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prune-ratio", "1.0"], "prune_ratio must be in [0, 1), got 1.0"),
        (["--importance", "hessian"], "--importance: invalid choice: 'hessian'"),
    ],
)
def test_bad_magnitude_values_are_one_line_and_exit_2(args, message, tiny_mnist_dir, tmp_path, capsys):
    code = main(
        ["train", "lenet", "--method", "magnitude", *args, "--epochs", "1", "--data-dir", str(tiny_mnist_dir),
         "--out", str(tmp_path / "out")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_config_rejects_unknown_method_and_scope():
    with pytest.raises(SweepError, match="method must be one of prox, magnitude, got 'taylor'"):
        TrialConfig(model="lenet", method="taylor").validate()
    with pytest.raises(SweepError, match="scope must be one of local, global"):
        TrialConfig(model="lenet", scope="layer").validate()
    with pytest.raises(SweepError, match=r"prune_ratio must be in \[0, 1\)"):
        TrialConfig(model="lenet", prune_ratio=-0.1).validate()


SPACE = """
model: lenet
dataset: mnist
fixed: {batch_size: 16, init: baseline}
search:
  penalty: {choices: [none, group_lasso]}
  method: {choices: [magnitude]}
  prune_ratio: {low: 0.2, high: 0.7}
  importance: {choices: [l1, l2]}
  scope: {choices: [local, global]}
budgets:
  smoke: {trials: 2, epochs: 2}
"""


def test_a_space_searches_the_magnitude_arm_and_its_baseline_is_never_pruned(tmp_path):
    from sweep.space import load_space

    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    space = load_space("lenet", str(path))
    study = optuna.create_study()
    params = space.suggest(study.ask())
    assert params["method"] == "magnitude" and 0.2 <= params["prune_ratio"] <= 0.7
    cfg = space.trial_config(params, "smoke")
    assert cfg.method == "magnitude" and cfg.init == "baseline"
    base = space.baseline()
    assert "method" not in base and "prune_ratio" not in base
    assert space.trial_config(base, "smoke").method == "prox"
    path.write_text(SPACE.replace("[l1, l2]", "[l1, hessian]"))
    with pytest.raises(SweepError, match=r"search\.importance\.choices\[1\]: unknown importance 'hessian'"):
        load_space("lenet", str(path))
    path.write_text(SPACE.replace("high: 0.7", "high: 1.0"))
    with pytest.raises(SweepError, match="prune_ratio"):
        load_space("lenet", str(path))
