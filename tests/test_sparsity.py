import math

import pytest
import torch
from torch import nn

from sweep import models
from sweep.sparsity import DeadMask, ProxStep, alive_widths, make_penalty, neuron_groups


def lenet_groups(name="fc1"):
    torch.manual_seed(0)
    model = models.create("lenet")
    return model, next(g for g in neuron_groups(model) if g.name == name)


def test_l1_prox_is_soft_thresholding():
    _, g = lenet_groups()
    before = [t.detach().clone() for t in g.tensors()]
    make_penalty("l1").prox_(g, 0.01)
    for old, new in zip(before, g.tensors(), strict=True):
        expected = old.sign() * (old.abs() - 0.01).clamp_min(0)
        assert torch.equal(new, expected)
    assert (g.layer.weight == 0).float().mean() > 0.1  # exact zeros, not small numbers


def test_group_lasso_prox_matches_closed_form_and_zeroes_whole_groups():
    _, g = lenet_groups()
    w, b = g.layer.weight.detach().clone(), g.layer.bias.detach().clone()
    norms = torch.sqrt(w.pow(2).sum(1) + b.pow(2))
    t = float(norms.median()) / math.sqrt(g.group_size)  # about half the groups must die
    make_penalty("group_lasso").prox_(g, t)
    factor = (1 - t * math.sqrt(801) / norms).clamp_min(0)
    torch.testing.assert_close(g.layer.weight, w * factor[:, None], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g.layer.bias, b * factor, rtol=1e-5, atol=1e-7)
    dead = factor == 0
    assert 200 < int(dead.sum()) < 300
    assert torch.all(g.layer.weight[dead] == 0) and torch.all(g.layer.bias[dead] == 0)
    assert torch.equal(~g.alive(), dead)


def test_group_lasso_value():
    _, g = lenet_groups()
    norms = torch.sqrt(g.layer.weight.pow(2).sum(1) + g.layer.bias.pow(2))
    torch.testing.assert_close(make_penalty("group_lasso").value(g), math.sqrt(801) * norms.sum())


def test_sparse_group_lasso_is_soft_threshold_then_group_shrink():
    _, g = lenet_groups()
    _, h = lenet_groups()
    alpha, t = 0.3, 2e-3
    make_penalty("sparse_group_lasso", alpha).prox_(g, t)
    make_penalty("l1").prox_(h, alpha * t)
    make_penalty("group_lasso").prox_(h, (1 - alpha) * t)
    for a, b in zip(g.tensors(), h.tensors(), strict=True):
        assert torch.equal(a, b)
    value = make_penalty("sparse_group_lasso", alpha).value(g)
    expected = alpha * make_penalty("l1").value(g) + (1 - alpha) * make_penalty("group_lasso").value(g)
    torch.testing.assert_close(value, expected)


def test_nuclear_prox_is_singular_value_thresholding():
    _, g = lenet_groups("conv2")
    w = g.layer.weight.detach().reshape(50, -1).clone()
    s = torch.linalg.svdvals(w)
    t = float(s[10])
    make_penalty("nuclear").prox_(g, t)
    after = torch.linalg.svdvals(g.layer.weight.detach().reshape(50, -1))
    torch.testing.assert_close(after[:10], s[:10] - t, rtol=1e-4, atol=1e-5)
    assert after[10:].abs().max() < 1e-4  # rank 10 left
    torch.testing.assert_close(make_penalty("nuclear").value(g), after.sum())


def test_zero_group_gives_exactly_zero_output_through_conv_bn_relu():
    torch.manual_seed(0)
    model = models.create("vgg13_cifar").train()
    model(torch.randn(8, 3, 32, 32))  # give BatchNorm real running statistics
    g = neuron_groups(model, ["conv1_1"])[0]
    assert g.bn is model.layer("bn1_1")
    dead = torch.zeros(64, dtype=torch.bool)
    dead[[0, 5, 17]] = True
    g.zero_(dead)
    model.eval()
    acts = model.body[:3](torch.randn(4, 3, 32, 32))  # conv1_1, bn1_1, relu1_1
    assert torch.all(acts[:, dead] == 0)
    assert acts[:, ~dead].abs().sum() > 0
    assert alive_widths(model)["conv1_1"] == 61


def test_zero_filter_with_bn_beta_alive_is_still_counted_alive():
    model = models.create("vgg13_cifar")
    g = neuron_groups(model, ["conv1_1"])[0]
    with torch.no_grad():
        g.layer.weight[3].zero_()
        g.layer.bias[3].zero_()
        g.bn.weight[3].zero_()
        g.bn.bias[3] = 0.5
    assert g.alive()[3]  # beta still makes a constant output: not removable


def test_prox_step_zeroes_momentum_of_dead_groups():
    torch.manual_seed(0)
    model, g = lenet_groups()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    step = ProxStep([g], make_penalty("group_lasso"), lam=1.0, layer_scales={"fc1": 0.21})
    step(opt)
    dead = ~g.alive()
    assert 0 < int(dead.sum()) < 500
    assert torch.all(opt.state[g.layer.weight]["momentum_buffer"][dead] == 0)
    assert torch.all(opt.state[g.layer.bias]["momentum_buffer"][dead] == 0)


def test_dead_mask_holds_dead_neurons_at_zero_through_training_steps():
    torch.manual_seed(0)
    model, g = lenet_groups()
    dead = torch.arange(500) % 2 == 0
    g.zero_(dead)
    mask = DeadMask(neuron_groups(model))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(16, 1, 28, 28)), torch.randint(0, 10, (16,))).backward()
        opt.step()
        mask(opt)
    assert alive_widths(model)["fc1"] == 250


def test_constraining_an_unknown_layer_names_the_allowed_ones():
    from sweep.errors import SweepError

    with pytest.raises(SweepError, match="allowed: conv1, conv2, fc1"):
        neuron_groups(models.create("lenet"), ["fc2"])


def resnet_stream():
    torch.manual_seed(0)
    model = models.create("resnet20")
    for m in model.modules():  # gammas that differ per channel, so the group norms do
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.2, 2.0)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return model, neuron_groups(model, ["layer2.0.conv2"])[0]


STREAM = [  # every parameter writing the second stage's residual stream
    *(f"layer2.{b}.conv2.weight" for b in range(3)),
    *(f"layer2.{b}.bn2.{p}" for b in range(3) for p in ("weight", "bias")),
    "layer2.0.shortcut.0.weight",
    "layer2.0.shortcut.1.weight",
    "layer2.0.shortcut.1.bias",
]


def test_group_lasso_on_a_residual_stream_spans_every_layer_writing_it():
    model, g = resnet_stream()
    params = dict(model.body.named_parameters())
    assert {id(t) for t in g.tensors()} == {id(params[n]) for n in STREAM}
    size = 3 * 32 * 9 + 16 + 3 * 2 + 2  # three 3x3 convs over 32 channels, the 1x1 projection, 4 BatchNorms
    assert g.group_size == size and g.uniform_size == size
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.randint(0, 10, (4,))).backward()
    opt.step()
    before = {n: params[n].detach().clone() for n in STREAM}
    norms = sum(before[n].reshape(32, -1).pow(2).sum(1) for n in STREAM).sqrt()
    t = float(norms.median()) / math.sqrt(size)  # about half the channels must die
    ProxStep([g], make_penalty("group_lasso"), lam=t / 0.1)(opt)
    factor = (1 - t * math.sqrt(size) / norms).clamp_min(0)
    dead = factor == 0
    assert 8 < int(dead.sum()) < 24
    for n in STREAM:
        shape = (-1,) + (1,) * (before[n].dim() - 1)
        torch.testing.assert_close(params[n].detach(), before[n] * factor.view(shape), rtol=1e-5, atol=1e-6)
        assert torch.all(params[n][dead] == 0)
        assert torch.all(opt.state[params[n]]["momentum_buffer"][dead] == 0)
    near = (factor > 0) & (factor < 1e-5)  # float32 rounding may tip these either way
    assert torch.equal(~g.alive() | near, dead | near)
    torch.testing.assert_close(
        make_penalty("group_lasso").value(g), math.sqrt(size) * (norms * factor).sum(), rtol=1e-4, atol=1e-4
    )


def test_l1_and_dead_mask_work_over_every_slice_of_a_stream():
    model, g = resnet_stream()
    params = dict(model.body.named_parameters())
    before = {n: params[n].detach().clone() for n in STREAM}
    make_penalty("l1").prox_(g, 0.05)
    for n in STREAM:
        assert torch.equal(params[n].detach(), before[n].sign() * (before[n].abs() - 0.05).clamp_min(0))
    dead = torch.arange(32) % 3 == 0
    g.zero_(dead)
    mask = DeadMask(neuron_groups(model))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.randint(0, 10, (4,))).backward()
        opt.step()
        mask(opt)
    assert alive_widths(model)["layer2.0.conv2"] == 32 - int(dead.sum())
    assert all(torch.all(params[n][dead] == 0) for n in STREAM)


def test_nuclear_is_refused_on_a_group_of_several_layers_and_a_non_root_is_refused():
    from sweep.errors import SweepError

    model, g = resnet_stream()
    with pytest.raises(
        SweepError, match=r"penalty nuclear acts on one layer's weight matrix; group 'layer2\.0\.conv2'"
    ):
        ProxStep([g], make_penalty("nuclear"), lam=0.1)
    ProxStep(neuron_groups(model, ["layer2.1.conv1"]), make_penalty("nuclear"), lam=0.1)  # one layer: fine
    with pytest.raises(
        SweepError, match=r"layer2.1.conv2 cannot lose units .* allowed: conv1, layer1.0.conv1"
    ):
        neuron_groups(model, ["layer2.1.conv2"])
