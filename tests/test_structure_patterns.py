"""The patterns of modern CNNs, each on a small network that has it and on the torchvision model that uses it:
squeeze-excitation gates, grouped convs, a concatenation read by a depthwise conv and a channel shuffle are
removed exactly; a norm over channels (ConvNeXt's LayerNorm2d) is refused as not exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.errors import SweepError
from sweep.export.check import build, check_model
from sweep.structure import Removal, channel_groups, prune, replay

RTOL = 1e-5


def batchnorms_randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


def removes_exactly(model: nn.Module, x: torch.Tensor, seed: int = 1) -> tuple[nn.Module, Removal]:
    """Zero a random ~half of every group (uneven across a grouped conv's groups), remove, compare."""
    structure = channel_groups(model, x)
    gen = torch.Generator().manual_seed(seed)
    keep = {}
    for g in structure.groups:
        mask = torch.rand(g.width, generator=gen) < 0.5
        mask[0] = True
        g.zero_(model, ~mask)
        keep[g.name] = mask
    with torch.no_grad():
        reference = model(x)
        compact, record = prune(model, x, keep)
        diff = float((compact(x) - reference).abs().max() / reference.abs().max())
    assert diff < RTOL
    assert sum(p.numel() for p in compact.parameters()) < sum(p.numel() for p in model.parameters())
    return compact, record


class SE(nn.Module):
    def __init__(self, channels: int, squeeze: int, gate: nn.Module) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class Gated(nn.Module):
    def __init__(self, gate: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.se = SE(12, 4, gate)
        self.head = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.se(torch.relu(self.bn(self.conv(x)))).mean((2, 3)))


@pytest.mark.parametrize("gate", [nn.Sigmoid(), nn.Hardsigmoid()])
def test_a_squeeze_excitation_gate_keeps_a_zero_channel_zero(gate: nn.Module) -> None:
    model = batchnorms_randomised(Gated(gate))
    x = torch.randn(2, 3, 8, 8)
    structure = channel_groups(model, x)
    assert structure.names() == ["conv", "se.fc1"]  # the gate's squeeze channels: a group of their own
    assert structure.group("conv").layers == ("conv", "se.fc2")  # the gate's rows go with the channel
    compact, _ = removes_exactly(model, x)
    assert compact.se.fc2.out_channels == compact.conv.out_channels < 12
    assert compact.se.fc1.in_channels == compact.conv.out_channels


class GroupedConvs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(16)
        self.b = nn.Conv2d(16, 24, 3, padding=1, groups=4)
        self.bn_b = nn.BatchNorm2d(24)
        self.c = nn.Conv2d(24, 24, 3, padding=1, groups=2)
        self.head = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn_a(self.a(x)))
        return self.head(self.c(torch.relu(self.bn_b(self.b(x)))).mean((2, 3)))


def test_grouped_convs_lose_as_many_channels_per_group_and_stay_valid() -> None:
    model = batchnorms_randomised(GroupedConvs())
    x = torch.randn(2, 3, 8, 8)
    structure = channel_groups(model, x)
    assert structure.group("a").blocks == tuple(i // 4 for i in range(16))
    assert structure.group("b").blocks == tuple(
        i // 6 for i in range(24)
    )  # written by b (6 per group), read by c (12)
    compact, record = removes_exactly(model, x)
    for name, groups in (("b", 4), ("c", 2)):
        conv = getattr(compact, name)
        assert conv.groups == groups and conv.in_channels % groups == 0 and conv.out_channels % groups == 0
    for name in ("a", "b"):  # uneven dead channels: the same number removed from each block
        g = structure.group(name)
        removed = record.removed.get(name, ())
        counts = {b: sum(g.blocks[i] == b for i in removed) for b in set(g.blocks)}
        assert len(set(counts.values())) == 1, counts
    rebuilt = replay(batchnorms_randomised(GroupedConvs()), x, Removal.from_dict(record.to_dict()))
    rebuilt.load_state_dict(compact.state_dict())
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), compact(x))
    with pytest.raises(SweepError, match="as many channels from each of its groups"):
        replay(GroupedConvs(), x, Removal({"a": (0,)}))


class CatDepthwise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(10)
        self.dw = nn.Conv2d(10, 10, 3, padding=1, groups=10)
        self.c = nn.Conv2d(10, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(torch.cat([self.a(x), self.b(x)], 1)))
        return self.c(self.dw(y)).mean((2, 3))


def test_a_concatenation_read_by_a_depthwise_conv_is_one_group_rooted_at_it() -> None:
    model = batchnorms_randomised(CatDepthwise())
    x = torch.randn(2, 3, 8, 8)
    structure = channel_groups(model, x)
    assert [(g.name, g.width, g.layers) for g in structure.groups] == [("dw", 10, ("dw", "a", "b"))]
    compact, _ = removes_exactly(model, x)
    assert compact.a.out_channels + compact.b.out_channels == compact.dw.out_channels == compact.dw.groups


class Shuffled(nn.Module):
    """A ShuffleNetV2 unit: split, a branch, concatenation, channel shuffle."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.inner = nn.Conv2d(4, 6, 1)
        self.bn = nn.BatchNorm2d(6)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.out = nn.Conv2d(6, 4, 1)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.stem(x).chunk(2, dim=1)
        y = torch.cat([x1, self.out(self.dw(torch.relu(self.bn(self.inner(x2)))))], 1)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return self.head(y.mean((2, 3)))


def test_channels_through_a_channel_shuffle_are_kept_and_the_rest_removed_exactly() -> None:
    model = batchnorms_randomised(Shuffled())
    x = torch.randn(2, 3, 8, 8)
    structure = channel_groups(model, x)
    assert structure.names() == ["inner"]
    assert structure.kept == ("stem", "out")
    compact, _ = removes_exactly(model, x)
    assert compact.stem.out_channels == 8 and compact.out.out_channels == 4


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsampling_keeps_a_zero_channel_zero(mode: str) -> None:
    model = batchnorms_randomised(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Upsample(scale_factor=2, mode=mode),
            nn.Conv2d(8, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
    )  # fmt: skip
    x = torch.randn(2, 3, 6, 6)
    assert channel_groups(model, x).names() == ["0"]
    removes_exactly(model, x)


def test_a_norm_over_channels_is_refused_as_not_exact() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(1, 8), nn.Conv2d(8, 4, 1), nn.Flatten())
    with pytest.raises(SweepError, match=r"'1' \(GroupNorm\) normalises over channels: .* not exact"):
        channel_groups(model, torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize(
    ("arch", "groups"),
    [
        ("mobilenet_v3_small", 27),  # SE with hardsigmoid
        ("efficientnet_b0", 40),  # SE with sigmoid
        ("regnet_y_400mf", 53),  # SE and grouped convs
        ("resnext50_32x4d", 37),  # grouped convs
        ("shufflenet_v2_x0_5", 18),  # channel shuffle
    ],
)
def test_the_torchvision_models_with_these_patterns_are_verified(arch: str, groups: int) -> None:
    report = check_model(build(f"torchvision:{arch}", 32, None, None))
    assert len(report.groups) == groups
    assert report.rel_diff < 1e-4
    assert report.params[1] < report.params[0] * (0.6 if arch.startswith("shufflenet") else 0.5)


def test_convnext_is_refused_for_its_layernorm() -> None:
    with pytest.raises(SweepError, match=r"LayerNorm2d\) normalises over channels.*not exact"):
        check_model(build("torchvision:convnext_tiny", 32, None, None))


def test_a_failure_inside_the_graph_library_names_the_op_that_moves_channels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch_pruning as tp

    def fails(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("integer division or modulo by zero")

    monkeypatch.setattr(tp.DependencyGraph, "build_dependency", fails)
    with pytest.raises(SweepError) as err:
        channel_groups(Shuffled(), torch.zeros(1, 3, 8, 8))
    message = str(err.value)
    assert (
        "op TransposeBackward0" in message and "channel shuffle" in message and "ZeroDivisionError" in message
    )
    assert "\n" not in message
