"""Compaction: dead neurons physically removed, the same logits, low-rank layers factorised."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep import models
from sweep.config import TrialConfig
from sweep.errors import SweepError
from sweep.measure import measure
from sweep.models import ChainNet
from sweep.sparsity import (
    LowRankPair,
    Nuclear,
    alive_masks,
    check_equivalence,
    compact,
    factorised_ranks,
    layer_widths,
    logits_difference,
    low_rank_layers,
    masked,
    neuron_groups,
)

# Small inputs keep the big ImageNet networks quick; 72 px still builds vgg13's ImageNet form.
SMALL_SIDE = {"alexnet": 63, "vgg13": 72}


def small_model(name: str, seed: int = 0) -> ChainNet:
    torch.manual_seed(seed)
    model = models.create(name, input_size=SMALL_SIDE.get(name)).eval()
    # BatchNorm with non-trivial statistics, so a wrongly sliced channel would show in the logits
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    return model


def random_keep(model: ChainNet, share: float = 0.5, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    keep = {}
    for name, width in model.widths().items():
        mask = torch.rand(width, generator=gen) < share
        mask[torch.randint(width, (1,), generator=gen)] = True  # never empty
        keep[name] = mask
    return keep


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# sweep.sparsity.compact rebuilds chains only; the other models are pruned by sweep.structure (tests/test_structure.py)
@pytest.mark.parametrize("name", models.chain_names())
def test_zeroed_groups_are_removed_and_logits_unchanged(name: str) -> None:
    model = small_model(name)
    keep = random_keep(model)
    dense = masked(model, keep)  # the groups not kept are all zero: those neurons are dead
    assert {k: v.tolist() for k, v in alive_masks(dense).items()} == {k: v.tolist() for k, v in keep.items()}

    small = compact(dense)

    assert small.widths() == {k: int(v.sum()) for k, v in keep.items()}
    assert params(small) < params(dense)
    x = torch.randn(4, *dense.input_size)
    assert check_equivalence(dense, small, x) <= 1e-5
    with torch.no_grad():
        want = dense(x)
        torch.testing.assert_close(small(x), want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_flatten_columns_follow_their_channel() -> None:
    # lenet's conv2 feeds fc1 through a 4x4 flatten: removing channel c removes columns 16c..16c+15
    model = small_model("lenet")
    keep = {"conv2": torch.zeros(50, dtype=torch.bool)}
    keep["conv2"][[3, 17, 49]] = True
    small = compact(masked(model, keep))
    fc1 = small.layer("fc1")
    assert isinstance(fc1, nn.Linear) and fc1.in_features == 3 * 16
    columns = torch.cat([torch.arange(16 * c, 16 * c + 16) for c in (3, 17, 49)])
    torch.testing.assert_close(fc1.weight, model.layer("fc1").weight[:, columns])


def test_compact_is_smaller_in_flops_and_keeps_the_dense_model_untouched() -> None:
    model = small_model("vgg13_cifar")
    dense = masked(model, random_keep(model, share=0.5))
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    small = compact(dense)
    cost_dense, cost_small = measure(dense, dense.input_size), measure(small, small.input_size)
    assert cost_small.flops < 0.4 * cost_dense.flops
    assert all(torch.equal(before[k], v) for k, v in dense.state_dict().items())


def test_layer_with_no_alive_neuron_is_refused() -> None:
    model = small_model("lenet")
    for g in neuron_groups(model, ["fc1"]):
        g.zero_(torch.ones(g.width, dtype=torch.bool))
    with pytest.raises(SweepError, match="layer fc1 has no alive neurons: the network is empty"):
        compact(model)


def test_unknown_layer_type_is_named() -> None:
    odd = ChainNet(
        "odd",
        [
            ("conv1", nn.Conv2d(1, 4, 3)),
            ("squash", nn.Sigmoid()),  # maps a removed (zero) channel to 0.5: slicing would not be exact
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(4 * 6 * 6, 8)),
            ("fc2", nn.Linear(8, 2)),
        ],
        (1, 8, 8),
        2,
    )
    with pytest.raises(SweepError, match=r"layer squash .*Sigmoid"):
        compact(odd)


def test_dropping_alive_neurons_is_caught_by_the_equivalence_check() -> None:
    model = small_model("cifar10_quick")
    keep = random_keep(model)
    small = compact(model, keep)  # these neurons are alive in model: the function changes
    x = torch.randn(8, *model.input_size)
    with pytest.raises(SweepError, match=r"max logit difference [0-9.e+-]+ \(.* of the logits' scale"):
        check_equivalence(model, small, x)
    assert logits_difference(masked(model, keep), small, x)[1] <= 1e-5


def make_low_rank(model: ChainNet, layers: list[str], rank: int) -> None:
    """Weights of ``rank`` as the nuclear prox leaves them: a rank-``rank`` matrix plus small noise, then
    singular-value soft-thresholding at a level inside the gap, which zeroes the noise's share."""
    gen = torch.Generator().manual_seed(2)
    for g in neuron_groups(model, layers):
        w = g.layer.weight
        rows, cols = w.shape[0], w[0].numel()
        left, right = torch.randn(rows, rank, generator=gen), torch.randn(rank, cols, generator=gen)
        noise = 1e-3 * torch.randn(rows, cols, generator=gen)
        with torch.no_grad():
            w.copy_(((left @ right + noise) / cols).view_as(w))
        s = torch.linalg.svdvals(w.detach().reshape(rows, -1).double())
        Nuclear().prox_(g, float((s[rank - 1] * s[rank]).sqrt()))


def test_nuclear_layers_become_two_thin_factors() -> None:
    model = small_model("lenet")
    keep = {"fc1": torch.arange(500) % 3 != 0}  # dead neurons and low rank in the same layer
    make_low_rank(model, ["conv2", "fc1"], rank=6)
    dense = masked(model, keep)

    small = compact(dense, low_rank=["conv2", "fc1"])

    assert factorised_ranks(small) == {"conv2": 6, "fc1": 6}
    conv2, fc1 = small.layer("conv2"), small.layer("fc1")
    assert isinstance(conv2, LowRankPair) and isinstance(fc1, LowRankPair)
    assert conv2.v.kernel_size == (5, 5) and conv2.v.bias is None and conv2.u.kernel_size == (1, 1)
    assert fc1.v.in_features == 800 and fc1.u.out_features == int(keep["fc1"].sum())
    assert layer_widths(small) == {"conv1": 20, "conv2": 50, "fc1": int(keep["fc1"].sum())}
    assert params(small) < params(compact(dense)) < params(dense)
    x = torch.randn(8, 1, 28, 28)
    assert check_equivalence(dense, small, x) <= 1e-5


def test_full_rank_layer_stays_dense() -> None:
    model = small_model("lenet")
    small = compact(model, low_rank=["fc1"])
    assert isinstance(small.layer("fc1"), nn.Linear)
    assert factorised_ranks(small) == {}


def test_low_rank_layers_follow_the_trial_config() -> None:
    model = small_model("lenet")
    assert low_rank_layers(TrialConfig(model="lenet", penalty="nuclear"), model) == ["conv1", "conv2", "fc1"]
    assert low_rank_layers(TrialConfig(model="lenet", penalty="nuclear", layers=["fc1"]), model) == ["fc1"]
    assert low_rank_layers(TrialConfig(model="lenet", penalty="group_lasso"), model) == []
    with pytest.raises(SweepError, match="cannot factorise fc2"):
        compact(model, low_rank=["fc2"])
