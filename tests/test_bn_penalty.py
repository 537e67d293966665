"""The BatchNorm penalty (bn_group_lasso) and per-layer lambda by RMS (lam_scaling: rms)."""

import math

import pytest
import torch
from test_sparsity import STREAM, resnet_stream
from torch import nn

from sweep import models
from sweep.config import TrialConfig
from sweep.errors import SweepError
from sweep.space import load_space
from sweep.sparsity import ProxStep, make_penalty, neuron_groups, rms_scales
from sweep.train import train_trial

STREAM_BN = [n for n in STREAM if ".bn2." in n or "shortcut.1." in n]


def test_bn_group_lasso_shrinks_the_batchnorms_and_zeroes_whole_channels_it_kills():
    model, g = resnet_stream()
    assert g.batch_normalised  # four convs write the stream, each through its BatchNorm
    params = dict(model.body.named_parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.randint(0, 10, (4,))).backward()
    opt.step()
    before = {n: params[n].detach().clone() for n in STREAM}
    norms = sum(before[n].pow(2) for n in STREAM_BN).sqrt()  # (gamma, beta) of 4 BatchNorms per channel
    size = 2 * 4
    t = float(norms.median()) / math.sqrt(size)
    ProxStep([g], make_penalty("bn_group_lasso"), lam=t / 0.1)(opt)
    factor = (1 - t * math.sqrt(size) / norms).clamp_min(0)
    dead = factor == 0
    assert 8 < int(dead.sum()) < 24
    for n in STREAM:
        kept = before[n] * factor if n in STREAM_BN else before[n]  # the convs' filters keep their size
        torch.testing.assert_close(params[n][~dead].detach(), kept[~dead], rtol=1e-5, atol=1e-6)
        assert torch.all(params[n][dead] == 0), f"{n}: a killed channel is zero in every slice"
        assert torch.all(opt.state[params[n]]["momentum_buffer"][dead] == 0)
    assert torch.equal(~g.alive(), dead)
    torch.testing.assert_close(
        make_penalty("bn_group_lasso").value(g),
        math.sqrt(size) * (norms * factor).sum(),
        rtol=1e-4,
        atol=1e-4,
    )


def test_bn_group_lasso_is_group_lasso_where_a_layer_has_no_batchnorm():
    torch.manual_seed(0)
    a, b = models.create("lenet"), models.create("lenet")
    b.load_state_dict(a.state_dict())
    ga, gb = neuron_groups(a, ["fc1"])[0], neuron_groups(b, ["fc1"])[0]
    assert not ga.batch_normalised
    make_penalty("group_lasso").prox_(ga, 0.05)
    make_penalty("bn_group_lasso").prox_(gb, 0.05)
    assert all(torch.equal(x, y) for x, y in zip(ga.tensors(), gb.tensors(), strict=True))
    assert torch.equal(make_penalty("group_lasso").value(ga), make_penalty("bn_group_lasso").value(gb))


def test_rms_scales_follow_each_layers_channel_size_and_keep_lambda_on_average():
    torch.manual_seed(0)
    model = models.create("lenet")
    groups = neuron_groups(model)
    plain = rms_scales(groups, make_penalty("group_lasso"))
    assert math.prod(plain) == pytest.approx(1.0)  # geometric mean 1: lambda keeps its size overall
    with torch.no_grad():
        for p in groups[0].tensors():  # conv1 four times larger
            p.mul_(4)
    scaled = rms_scales(groups, make_penalty("group_lasso"))
    assert scaled[0] / scaled[1] == pytest.approx(4 * plain[0] / plain[1], rel=1e-5)
    step = ProxStep(groups, make_penalty("group_lasso"), 1e-3, {"conv1": 0.5}, lam_scaling="rms")
    assert step.scales == pytest.approx([0.5 * scaled[0], *scaled[1:]])


def test_a_bn_network_fine_tuned_with_both_reports_its_scales_and_loses_channels(tiny_mnist_dir, tmp_path):
    cfg = TrialConfig(
        model="resnet20",
        dataset="mnist",
        data_dir=str(tiny_mnist_dir),
        penalty="bn_group_lasso",
        lam_scaling="rms",
        lam=25.0,
        epochs=2,
        debias_epochs=1,
        batch_size=32,
        holdout=20,
        eval_test=False,
    )
    final = train_trial(cfg, None, str(tmp_path / "run"))
    assert final["neurons"] < sum(final["widths_full"].values())
    assert set(final["lam_scales"]) == set(final["widths"])
    assert math.prod(final["lam_scales"].values()) == pytest.approx(1.0, rel=1e-3)


def test_lam_scaling_is_checked_by_name_in_settings_and_spaces(tmp_path):
    with pytest.raises(
        SweepError, match="lam_scaling must be one of uniform, rms, flops, rms_flops, got 'l2'"
    ):
        TrialConfig(model="lenet", lam_scaling="l2").validate()
    bad = tmp_path / "s.yaml"
    bad.write_text(
        "model: lenet\nsearch: {penalty: {choices: [group_lasso]}, lam_scaling: {choices: [rms, l2]}}\n"
    )
    with pytest.raises(SweepError, match=r"search\.lam_scaling\.choices\[1\]: unknown lambda scaling 'l2'"):
        load_space("lenet", str(bad))
    good = tmp_path / "g.yaml"
    good.write_text(
        "model: lenet\nfixed: {lam_scaling: rms}\nsearch: {penalty: {choices: [none, bn_group_lasso]}}\n"
    )
    space = load_space("lenet", str(good))
    assert space.trial_config({"penalty": "bn_group_lasso"}).lam_scaling == "rms"
    assert space.trial_config(space.baseline()).lam_scaling == "uniform", "the baseline has no penalty"
