"""Channel groups of any network: found, named after their root layer, and removable without changing the
logits; the removal record rebuilds the compact network from a fresh dense one; what cannot be followed
is refused in one line."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch
from torch import nn

from sweep import models
from sweep.errors import SweepError
from sweep.models import STRUCTURE_MODELS
from sweep.structure import Removal, Structure, channel_groups, prune, replay

RTOL = 1e-5
SMALL_SIDE = {"alexnet": 63, "vgg13": 72}  # the ImageNet chains at the smallest side they build at
STRUCTURE_SIDE = {"resnet18": 64}


def chain_builder(name: str) -> tuple[Callable[[], nn.Module], torch.Size]:
    entry = models.MODELS.entry(name)
    c, h, w = entry.meta["input_size"]
    side = SMALL_SIDE.get(name)
    size = torch.Size((c, side, side) if side else (c, h, w))
    return (lambda: models.create(name, input_size=side)), size


def builder(name: str) -> tuple[Callable[[], nn.Module], torch.Size]:
    if name in STRUCTURE_MODELS:
        side = STRUCTURE_SIDE.get(name, 32)
        return STRUCTURE_MODELS[name], torch.Size((3, side, side))
    return chain_builder(name)


ALL_MODELS = models.chain_names() + list(STRUCTURE_MODELS)


def with_batchnorm_statistics(model: nn.Module, size: torch.Size, seed: int = 0) -> nn.Module:
    """Random gamma/beta and running statistics from a few training-mode passes on random data, then
    eval mode: a wrongly cut channel then shows in the logits."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.momentum = 0.5
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *size, generator=gen))
    return model.eval()


def zero_random_half(model: nn.Module, structure: Structure, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    keep = {}
    for group in structure.groups:
        mask = torch.rand(group.width, generator=gen) < 0.5
        mask[torch.randint(group.width, (1,), generator=gen)] = True  # never empty
        group.zero_(model, ~mask)
        keep[group.name] = mask
    return keep


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_of_the_new_models() -> None:
    counts = {name: params(build()) for name, build in STRUCTURE_MODELS.items()}
    assert counts == {
        "resnet20": 272_474,  # He et al.: 0.27M (option A); option B's two projections add 2,752
        "resnet56": 855_770,  # 0.85M
        "mobilenet_v2": 2_236_682,
        "resnet18": 11_181_642,  # torchvision's, with a 10-class head
    }


@pytest.mark.parametrize("name", models.chain_names())
def test_chain_groups_are_the_unit_layers(name: str) -> None:
    build, size = chain_builder(name)
    model = build()
    structure = channel_groups(model, torch.zeros(1, *size))
    assert structure.names() == [f"body.{n}" for n in model.unit_layers()]
    assert structure.widths() == {f"body.{n}": w for n, w in model.widths().items()}
    assert all(g.layers == (g.name,) for g in structure.groups)


def resnet_groups(blocks: int) -> dict[str, tuple[str, ...]]:
    streams = {"conv1": ("conv1", *(f"layer1.{b}.conv2" for b in range(blocks)))}
    for s in (2, 3):
        streams[f"layer{s}.0.conv2"] = (
            f"layer{s}.0.conv2",
            f"layer{s}.0.shortcut.0",
            *(f"layer{s}.{b}.conv2" for b in range(1, blocks)),
        )
    out = {}
    for s in (1, 2, 3):
        if s == 1:
            out["conv1"] = streams["conv1"]
        for b in range(blocks):
            out[f"layer{s}.{b}.conv1"] = (f"layer{s}.{b}.conv1",)
            if s > 1 and b == 0:
                out[f"layer{s}.0.conv2"] = streams[f"layer{s}.0.conv2"]
    return out


@pytest.mark.parametrize(("name", "blocks"), [("resnet20", 3), ("resnet56", 9)])
def test_each_residual_stream_is_one_group(name: str, blocks: int) -> None:
    structure = channel_groups(STRUCTURE_MODELS[name](), torch.zeros(1, 3, 32, 32))
    expected = resnet_groups(blocks)
    assert len(structure.groups) == 3 * blocks + 3
    assert {g.name: g.layers for g in structure.groups} == expected
    assert structure.names() == list(expected)  # forward order
    stream = structure.group("layer2.0.conv2")
    assert stream.width == 32
    # producer side: every conv writing the stream and its BatchNorm, never a reader's input rows
    assert {s.name for s in stream.slices} >= {"layer2.0.bn2.weight", "layer2.0.shortcut.1.bias"}
    assert not any(s.module.endswith(("conv1", "fc")) for s in stream.slices)


def test_mobilenet_groups_tie_depthwise_filters_to_their_input_channel() -> None:
    structure = channel_groups(STRUCTURE_MODELS["mobilenet_v2"](), torch.zeros(1, 3, 32, 32))
    assert len(structure.groups) == 25  # stem, 16 expansions, 7 stage streams, head
    expansion = structure.group("blocks.3.expand.0")
    assert expansion.layers == ("blocks.3.expand.0", "blocks.3.dw")
    assert {s.module for s in expansion.slices} == {
        "blocks.3.expand.0",
        "blocks.3.expand.1",
        "blocks.3.dw",
        "blocks.3.bn_dw",
    }
    assert structure.group("blocks.1.project").layers == ("blocks.1.project", "blocks.2.project")
    assert structure.group("conv_head").width == 1280


def test_resnet18_groups() -> None:
    structure = channel_groups(STRUCTURE_MODELS["resnet18"](), torch.zeros(1, 3, 64, 64))
    assert len(structure.groups) == 12
    assert structure.group("layer4.0.conv2").layers == (
        "layer4.0.conv2",
        "layer4.0.downsample.0",
        "layer4.1.conv2",
    )


@pytest.mark.parametrize("name", ALL_MODELS)
def test_removing_zeroed_channels_keeps_the_logits(name: str) -> None:
    build, size = builder(name)
    torch.manual_seed(0)
    model = with_batchnorm_statistics(build(), size)
    x = torch.randn(4, *size)
    structure = channel_groups(model, x)
    keep = zero_random_half(model, structure)
    assert all(torch.equal(g.alive(model), keep[g.name]) for g in structure.groups)
    with torch.no_grad():
        reference = model(x)
    dense_params = params(model)

    compact, record = prune(model, x, keep)
    assert params(model) == dense_params  # the original is untouched
    with torch.no_grad():
        out = compact.eval()(x)
    assert relative_difference(out, reference) < RTOL
    assert params(compact) < dense_params
    assert channel_groups(compact, x).widths() == {n: int(k.sum()) for n, k in keep.items()}
    assert record.widths(structure.widths()) == {n: int(k.sum()) for n, k in keep.items()}

    torch.manual_seed(123)  # a differently initialised dense model: only the record and tensors carry over
    rebuilt = replay(build(), x, Removal.from_dict(json.loads(json.dumps(record.to_dict()))))
    rebuilt.load_state_dict(compact.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), out)


class Concat(nn.Module):
    """Two branches concatenated, a shared BatchNorm over the concatenation, then a conv and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(3, 5, 1)
        self.bn = nn.BatchNorm2d(11)
        self.c = nn.Conv2d(11, 7, 3)
        self.fc = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(torch.cat([self.a(x), self.b(x)], 1)))
        return self.fc(self.c(y).mean((2, 3)))


def test_concatenation_maps_index_ranges() -> None:
    model = with_batchnorm_statistics(Concat(), torch.Size((3, 8, 8)))
    x = torch.randn(2, 3, 8, 8)
    structure = channel_groups(model, x)
    assert structure.names() == ["a", "b", "c"]
    b = structure.group("b")
    assert b.concat_rows == ((6, 7, 8, 9, 10),)
    assert [s.rows for s in b.slices if s.module == "bn"] == [(6, 7, 8, 9, 10)] * 2
    keep = zero_random_half(model, structure)
    with torch.no_grad():
        reference = model(x)
    compact, _ = prune(model, x, keep)
    with torch.no_grad():
        assert relative_difference(compact(x), reference) < RTOL
    assert compact.bn.num_features == int(keep["a"].sum() + keep["b"].sum())


def test_tracing_leaves_modes_and_frozen_parameters_as_found() -> None:
    model = STRUCTURE_MODELS["resnet20"]().train()
    model.bn1.weight.requires_grad_(False)
    with torch.no_grad():  # the analysis needs autograd and turns it on itself
        structure = channel_groups(model, torch.zeros(2, 3, 32, 32))
    assert model.training and all(m.training for m in model.modules())
    assert not model.bn1.weight.requires_grad
    assert "bn1.weight" in {s.name for s in structure.group("conv1").slices}


class _Double(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return grad * 2


class TwoConvs(nn.Module):
    def __init__(
        self, between: Callable[[torch.Tensor], torch.Tensor], middle: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.middle = middle if middle is not None else nn.Identity()
        self.conv2 = nn.Conv2d(8, 4, 3)
        self.between = between

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.between(self.middle(self.conv1(x)))).flatten(1)


@pytest.mark.parametrize(
    ("model", "words"),
    [
        (TwoConvs(_Double.apply), ["_DoubleBackward", "after layer 'conv1'"]),
        (TwoConvs(torch.sigmoid), ["SigmoidBackward0", "after layer 'conv1'"]),
        (TwoConvs(lambda t: t + 1), ["AddBackward0"]),
        (TwoConvs(lambda t: t.transpose(2, 3)), ["TransposeBackward0"]),
        (TwoConvs(lambda t: t.unsqueeze(1).squeeze(1)), ["SqueezeBackward"]),
        (TwoConvs(lambda t: t, nn.GroupNorm(2, 8)), ["'middle' (GroupNorm)", "over channels", "not exact"]),
        (TwoConvs(lambda t: t, nn.PReLU(8)), ["'middle' (PReLU)", "supported: Conv2d"]),
        (TwoConvs(lambda t: t, nn.BatchNorm2d(8, affine=False)), ["'middle'", "affine=True"]),
        (
            TwoConvs(lambda t: torch.sigmoid(t) * torch.sigmoid(t)),
            ["SigmoidBackward0", "after layer 'conv1'"],
        ),
        (TwoConvs(lambda t: torch.sigmoid(t) * 2), ["SigmoidBackward0", "after layer 'conv1'"]),
    ],
)
def test_a_network_the_analysis_cannot_follow_is_refused_in_one_line(
    model: nn.Module, words: list[str]
) -> None:
    with pytest.raises(SweepError) as err:
        channel_groups(model, torch.zeros(1, 3, 8, 8))
    message = str(err.value)
    assert "\n" not in message
    assert all(w in message for w in words), message


def test_a_layer_called_twice_is_refused() -> None:
    conv = nn.Conv2d(8, 8, 3, padding=1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), conv, nn.ReLU(), conv, nn.Flatten())
    with pytest.raises(SweepError, match="layer '1' is called more than once"):
        channel_groups(model, torch.zeros(1, 3, 8, 8))


def test_an_input_the_model_cannot_take_is_refused() -> None:
    with pytest.raises(SweepError, match=r"cannot take the example input of shape \(2, 3\)"):
        channel_groups(STRUCTURE_MODELS["resnet20"](), torch.zeros(2, 3))


def test_bad_keep_masks_and_records_are_refused() -> None:
    model = STRUCTURE_MODELS["resnet20"]().eval()
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(
        SweepError, match=r"'fc' is not a channel group root; allowed: conv1, layer1\.0\.conv1"
    ):
        prune(model, x, {"fc": [True] * 10})
    with pytest.raises(SweepError, match="would lose all 16 channels"):
        prune(model, x, {"conv1": torch.zeros(16, dtype=torch.bool)})
    with pytest.raises(SweepError, match="has 3 entries; the group has 16 channels"):
        prune(model, x, {"conv1": [True] * 3})
    with pytest.raises(SweepError, match="has 16 channels, got index 16"):
        replay(model, x, Removal({"conv1": (16,)}))
    for bad in (
        None,
        {"version": 2},
        {"version": 1, "removed": []},
        {"version": 1, "removed": {"conv1": [-1]}},
    ):
        with pytest.raises(SweepError, match="removal record"):
            Removal.from_dict(bad)


def sibling_batchnorm(model: models.ChainNet, name: str) -> str | None:
    """The chain rule the groups used before the dependency analysis: the first BatchNorm after the layer,
    before the next conv/linear."""
    children = [n for n, _ in model.body.named_children()]
    for nxt in children[children.index(name) + 1 :]:
        m = model.layer(nxt)
        if isinstance(m, nn.Conv2d | nn.Linear):
            return None
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            return nxt
    return None


@pytest.mark.parametrize("name", models.chain_names())
def test_chain_neuron_groups_come_from_the_analysis_and_match_the_chain_rule(name: str) -> None:
    from sweep.sparsity import neuron_groups
    from sweep.sparsity.groups import _channel_groups

    model = chain_builder(name)[0]()
    groups = neuron_groups(model)
    assert [g.name for g in groups] == model.unit_layers()
    names = {m: n for n, m in model.body.named_children()}
    assert [names.get(g.bn) for g in groups] == [sibling_batchnorm(model, g.name) for g in groups]
    assert _channel_groups(model) is _channel_groups(model)  # traced once per architecture


def test_chain_groups_are_traced_again_when_the_shapes_change() -> None:
    from sweep.sparsity.groups import _channel_groups

    model = models.create("lenet")
    before = _channel_groups(model)
    compact, _ = prune(model.body, torch.zeros(1, 1, 28, 28), {"fc1": torch.arange(500) < 100})
    model.body = compact
    after = _channel_groups(model)
    assert after is not before
    assert {g.name: g.width for g in after}["fc1"] == 100
