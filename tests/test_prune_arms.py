"""Pruning arms beside the proximal penalties: a FLOPs target instead of a ratio or a lambda, the Taylor
and BatchNorm-scale importances, the prox topped up to a target with its survivors rewound, and the
penalty weighted by what a channel costs (sweep.train.channels, sweep.sparsity.magnitude)."""

import itertools

import pytest
import torch

from sweep import models
from sweep.cli import main
from sweep.config import TrialConfig
from sweep.errors import SweepError
from sweep.measure import size_at
from sweep.sparsity import alive_masks, neuron_groups
from sweep.sparsity.magnitude import channel_importance, check_importance, magnitude_masks
from sweep.train import load_checkpoint, train_trial
from sweep.train.channels import flops_scales


def arm(data_dir, init, **extra):
    settings = {"epochs": 2, "batch_size": 16, "holdout": 20, "method": "magnitude", **extra}
    return TrialConfig(model="lenet", data_dir=str(data_dir), init=init, **settings)


def removed(metrics):
    return 1 - metrics["flops"] / metrics["flops_full"]


@pytest.mark.parametrize("importance", ["l1", "taylor"])
@pytest.mark.parametrize("scope", ["local", "global"])
def test_a_flops_target_is_met_with_the_fewest_channels(
    tiny_mnist_dir, lenet_baseline, tmp_path, importance, scope
):
    cfg = arm(tiny_mnist_dir, lenet_baseline, flops_target=0.5, importance=importance, scope=scope)
    final = train_trial(cfg, None, str(tmp_path / "arm"))
    assert removed(final) >= 0.5, final["flops"]
    assert removed(final) < 0.56, "the smallest ratio that meets the target, not more"
    assert 0 < final["pruned_ratio"] < 1
    # one ratio step below the one it chose would not have met the target
    ckpt = load_checkpoint(str(tmp_path / "arm" / "checkpoint.pt"))
    assert ckpt.metrics["pruned_ratio"] == final["pruned_ratio"]
    assert ckpt.config.flops_target == 0.5


def test_iterative_pruning_reaches_the_target_in_steps_one_an_epoch(tiny_mnist_dir, lenet_baseline, tmp_path):
    reports = []
    cfg = arm(tiny_mnist_dir, lenet_baseline, flops_target=0.6, scope="global", prune_steps=3, epochs=4)
    train_trial(cfg, lambda m, _ckpt: reports.append(m), str(tmp_path / "arm"))
    shares = [1 - m["flops"] / m["flops_full"] for m in reports]
    # a third, two thirds, then all of the target; held from the last step on
    assert 0.2 <= shares[0] < 0.3 and 0.4 <= shares[1] < 0.5 and 0.6 <= shares[2] < 0.66, shares
    assert shares[3] == shares[2]
    widths = [m["widths"] for m in reports]
    for before, after in itertools.pairwise(widths):  # a step only adds to what went before
        assert all(after[name] <= before[name] for name in before), (before, after)
    ckpt = load_checkpoint(str(tmp_path / "arm" / "checkpoint.pt"))
    assert ckpt.config.prune_steps == 3
    assert {g.name: int(g.alive().sum()) for g in neuron_groups(ckpt.model)} == widths[-1]


def test_taylor_ranks_by_gradient_and_weight_not_by_norm(tiny_mnist_dir, lenet_baseline, tmp_path):
    from sweep.data import datasets as data
    from sweep.device import resolve_compute
    from sweep.train.channels import taylor_scores
    from sweep.train.weights import load_initial_weights

    model = models.create("lenet", num_classes=10, in_channels=1, input_size=(28, 28))
    load_initial_weights(model, lenet_baseline)
    groups = neuron_groups(model)
    splits = data.load("mnist", data_dir=str(tiny_mnist_dir), holdout=20)
    cfg = TrialConfig(model="lenet", batch_size=16)
    scores = taylor_scores(model, groups, splits, cfg, resolve_compute("cpu", "fp32"))
    assert [s.shape[0] for s in scores] == [g.width for g in groups]
    assert all(bool((s >= 0).all()) and float(s.sum()) > 0 for s in scores)
    assert all(p.grad is None for p in model.parameters()), "no gradient left behind"
    l1 = [channel_importance(g, "l1") for g in groups]
    assert any(not torch.equal(s.argsort(), n.argsort()) for s, n in zip(scores, l1, strict=True))


def test_bn_scale_ranks_by_gamma_and_is_refused_without_batchnorm():
    net = models.create("resnet20", num_classes=10, in_channels=3, input_size=(32, 32))
    groups = neuron_groups(net)
    check_importance(groups, "bn_scale")
    g = next(g for g in groups if g.name == "layer1.0.conv1")
    bn = next(m for m in g.modules if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        bn.weight.copy_(torch.arange(g.width, dtype=torch.float32) - 3.5)
    scores = channel_importance(g, "bn_scale")
    assert torch.equal(scores, (torch.arange(g.width, dtype=torch.float32) - 3.5).abs())
    assert magnitude_masks([g], 0.25, "bn_scale")[0].nonzero().view(-1).tolist() == [2, 3, 4, 5]
    lenet = models.create("lenet", num_classes=10, in_channels=1, input_size=(28, 28))
    with pytest.raises(SweepError, match=r"importance bn_scale needs a BatchNorm .* conv1 has none"):
        check_importance(neuron_groups(lenet), "bn_scale")


def test_the_prox_tops_up_to_the_target_and_rewinds_its_survivors(tiny_mnist_dir, lenet_baseline, tmp_path):
    reports = []
    cfg = arm(
        tiny_mnist_dir,
        lenet_baseline,
        method="prox",
        penalty="group_lasso",
        lam=1e-4,
        epochs=3,
        debias_epochs=1,
        debias_restart=False,
        flops_target=0.5,
        rewind=True,
        lr=1e-9,
    )
    train_trial(cfg, lambda m, ckpt: reports.append(m), str(tmp_path / "prox"))
    assert [m["phase"] for m in reports] == ["sparse", "sparse", "debias"]
    assert removed(reports[0]) < 0.5 <= removed(reports[-1]), "the tiny lambda alone removes little"
    # lr 1e-9: the debias phase leaves the rewound weights where they were, so the survivors are the
    # baseline's own weights, and the pruned ones exact zeros
    start = load_checkpoint(lenet_baseline).model.state_dict()
    now = load_checkpoint(str(tmp_path / "prox" / "checkpoint.pt")).model
    alive = alive_masks(now)
    for g in neuron_groups(now):
        for s in g.slices:
            if s.channels is None and not s.bn:
                name = next(k for k, v in now.state_dict(keep_vars=True).items() if v is s.param)
                kept = alive[g.name]
                assert torch.allclose(s.param.data[kept], start[name][kept], atol=1e-6), name


def test_flops_scaling_pulls_hardest_where_a_channel_costs_most():
    net = models.create("resnet20", num_classes=10, in_channels=3, input_size=(32, 32))
    groups = neuron_groups(net)
    scales = flops_scales(net, groups)
    # a stage-1 inner channel (32x32 maps) costs 4x a stage-3 one (8x8 maps, 4x the fan-in)
    assert scales["layer1.1.conv1"] / scales["layer3.1.conv1"] == pytest.approx(4.0, rel=0.05)
    full = size_at(net).flops
    keep = torch.ones(16, dtype=torch.bool)
    keep[0] = False
    assert size_at(net, {"layer1.0.conv1": keep}).flops < full


def test_an_unreachable_target_is_one_line(tiny_mnist_dir, lenet_baseline, tmp_path):
    cfg = arm(tiny_mnist_dir, lenet_baseline, flops_target=0.95, layers=["fc1"])
    with pytest.raises(SweepError, match=r"flops_target 0.95 cannot be reached by pruning fc1: at most"):
        train_trial(cfg, None, str(tmp_path / "arm"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flops-target", "1.5"], "flops_target must be"),
        (["--rewind"], "rewind must be false unless method is prox with debias epochs"),
        (["--method", "prox", "--flops-target", "0.5"], "flops_target must be null for a prox trial without"),
        (["--importance", "hessian"], "--importance: invalid choice: 'hessian'"),
        (["--prune-steps", "3"], "prune_steps must be at most epochs (1): one step per epoch, got 3"),
        (["--method", "prox", "--prune-steps", "2"], "prune_steps must be 1 unless method is magnitude"),
        (["--prune-steps", "0"], "prune_steps must be"),
    ],
)
def test_bad_arm_settings_are_one_line_and_exit_2(tiny_mnist_dir, tmp_path, capsys, args, message):
    base = [
        "train",
        "lenet",
        "--data-dir",
        str(tiny_mnist_dir),
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "o"),
    ]
    method = [] if "--method" in args else ["--method", "magnitude"]
    assert main([*base, *method, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


SPACE = """
model: lenet
dataset: mnist
fixed: {batch_size: 16, init: baseline}
search:
  penalty: {choices: [none, group_lasso]}
  lam: {low: 1.0e-3, high: 1.0e-2, log: true}
  method: {choices: [prox, magnitude]}
  prune_ratio: {low: 0.2, high: 0.7}
  flops_target: {low: 0.3, high: 0.7}
  rewind: {choices: [true, false]}
  prune_steps: {low: 1, high: 3}
  debias_fraction: {low: 0.5, high: 0.8}
budgets:
  smoke: {trials: 2, epochs: 4}
"""


def test_a_space_searches_targets_and_rewinding_where_the_method_uses_them(tmp_path):
    import optuna

    from sweep.space import load_space

    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    space = load_space("lenet", str(path))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        params = space.suggest(study.ask())
        cfg = space.trial_config(params, "smoke").validate()
        assert 0.3 <= cfg.flops_target <= 0.7
        # rewind only for the prox, prune_ratio only for magnitude: never an invalid pair
        assert ("rewind" in params) == (cfg.method == "prox")
        assert ("prune_ratio" in params) == (cfg.method == "magnitude")
        assert ("prune_steps" in params) == (cfg.method == "magnitude")
        seen.add(cfg.method)
    assert seen == {"prox", "magnitude"}
    base = space.baseline()
    assert not {"flops_target", "rewind", "method", "prune_steps"} & set(base)
    path.write_text(SPACE.replace("[true, false]", "[true, 'no']"))
    with pytest.raises(SweepError, match=r"search\.rewind\.choices\[1\]: must be true or false, got 'no'"):
        load_space("lenet", str(path))
    path.write_text(SPACE.replace("{low: 0.3, high: 0.7}", "{low: 0.3, high: 1.0}"))
    with pytest.raises(SweepError, match="flops_target"):
        load_space("lenet", str(path))


def test_tables_name_a_magnitude_trial_by_its_pruning():
    from sweep.config import pruning_label
    from sweep.study.create import describe_params

    assert (
        pruning_label({"method": "magnitude", "prune_ratio": 0.5, "scope": "local"}) == "magnitude 0.50 local"
    )
    taylor = {"method": "magnitude", "importance": "taylor", "flops_target": 0.45, "scope": "global"}
    assert pruning_label(taylor) == "magnitude taylor 45% FLOPs global"
    assert pruning_label({**taylor, "prune_steps": 4}) == "magnitude taylor 45% FLOPs global 4 steps"
    assert pruning_label({"method": "prox", "lam": 0.01}) is None
    assert (
        describe_params({"penalty": "group_lasso", "lam": 0.02, **taylor})
        == "magnitude taylor 45% FLOPs global"
    )
    assert describe_params({"penalty": "group_lasso", "lam": 0.02}) == "group_lasso lam 2.00e-02"
