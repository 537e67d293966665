"""``sweep check MODEL``: the preflight lists the channel groups, removes a random half of each and finds the
logits unchanged (exit 0, a one-line verdict), or names in one line what it cannot follow (exit 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sweep.cli import main

NETS = '''
import torch
from torch import nn


class Gated(nn.Module):
    """conv -> BN -> sigmoid -> conv: the sigmoid turns a zero channel into 0.5."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        return self.conv2(torch.sigmoid(self.bn(self.conv1(x)))).mean((2, 3))


def gated(num_classes):
    return Gated(num_classes)


def prelu(num_classes):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.PReLU(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)
    )


def small(num_classes, in_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, groups=4), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    )
'''


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


@pytest.fixture
def nets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    monkeypatch.chdir(tmp_path)
    return path


@pytest.mark.parametrize(
    ("model", "args", "groups"),
    [
        ("resnet20", [], 12),
        ("mobilenet_v2", [], 25),
        ("lenet", [], 3),
        ("torchvision:resnet18", ["--input-size", "32"], 12),
    ],
)
def test_registered_and_zoo_models_are_verified(
    capsys: pytest.CaptureFixture[str], model: str, args: list[str], groups: int
) -> None:
    code, out, err = run(capsys, model, *args)
    assert code == 0, err
    assert err == []
    assert f": {groups} channel groups" in out[0]
    assert len(out) == groups + 2
    assert out[-1].startswith(f"verified: all {groups} groups remove exactly")


def test_a_network_of_ones_own_with_a_grouped_conv_is_verified(
    capsys: pytest.CaptureFixture[str], nets: Path
) -> None:
    code, out, err = run(
        capsys, "nets.py:small", "--in-channels", "1", "--num-classes", "5", "--input-size", "12"
    )
    assert code == 0, err
    assert "at 1x12x12, 5 classes: 2 channel groups" in out[0]
    assert out[-1].startswith("verified: all 2 groups")
    assert sorted(p.name for p in nets.parent.iterdir()) == ["nets.py"]  # nothing written


@pytest.mark.parametrize(
    ("model", "args", "words"),
    [
        ("no_such_model", [], ["unknown model 'no_such_model'", "resnet20", "torchvision:NAME"]),
        ("torchvision:resnt18", [], ["torchvision has no classification model 'resnt18'", "close: resnet18"]),
        ("torchvision:resnet18", ["--in-channels", "1"], ["reads 3 input channels, the data has 1"]),
        ("nets.py:gated", [], ["op SigmoidBackward0 after layer 'bn'", "keep a zero channel zero"]),
        ("nets.py:nope", [], ["has no function 'nope'", "gated"]),
        ("torchvision:convnext_tiny", ["--input-size", "32"], ["LayerNorm2d", "not exact"]),
        ("nets.py:prelu", [], ["layer '1' (PReLU) holds parameters the channel analysis cannot follow"]),
        ("resnet20", ["--input-size", "0"], ["--input-size", "must be an integer in [8"]),
    ],
)
def test_what_check_cannot_follow_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], nets: Path, model: str, args: list[str], words: list[str]
) -> None:
    code, out, err = run(capsys, model, *args)
    assert code == 2
    assert out == []
    assert len(err) == 1 and err[0].startswith("sweep: error: "), err
    assert all(w in err[0] for w in words), err[0]
    assert "Traceback" not in err[0]
    assert sorted(p.name for p in nets.parent.iterdir()) == ["nets.py"]


def test_a_wrong_removal_is_named_by_its_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard behind the analysis: a compaction that changes the logits is caught and blamed on the
    group whose removal changes them."""
    import torch

    from sweep import models
    from sweep.errors import SweepError
    from sweep.export import check

    net = models.create("resnet20")
    pruned = type(net).pruned

    def off_by_a_little(self: models.Net, keep: dict[str, torch.Tensor]) -> models.Net:
        out = pruned(self, keep)
        if "layer2.1.conv1" in keep:
            with torch.no_grad():
                out.layer("layer2.1.conv1").weight.mul_(1.5)
        return out

    monkeypatch.setattr(type(net), "pruned", off_by_a_little)
    with pytest.raises(SweepError, match=r"group 'layer2\.1\.conv1' .*changes the logits"):
        check.check_model(net)


def test_check_is_fast_on_a_resnet50_at_64_px(capsys: pytest.CaptureFixture[str]) -> None:
    if os.environ.get("SWEEP_SKIP_TIMING"):
        pytest.skip("timing checks off")
    code, out, _ = run(capsys, "torchvision:resnet50", "--input-size", "64")
    assert code == 0
    seconds = float(out[-1].rsplit(" in ", 1)[1].split()[0])
    assert seconds < 30, out[-1]


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        ("0.02", ["the channel analysis of ResNet did not finish in 0.02 s", "raise SWEEP_GRAPH_SECONDS"]),
        ("soon", ["SWEEP_GRAPH_SECONDS must be a number of seconds", "'soon'"]),
        ("-1", ["SWEEP_GRAPH_SECONDS must be a number of seconds >= 0"]),
    ],
)
def test_an_analysis_past_its_time_limit_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, seconds: str, words: list[str]
) -> None:
    """The guard for graphs the library's search takes minutes on (timm's rexnet_100): one line naming
    the limit, after which the process's alarm handler is what it was."""
    import signal

    monkeypatch.setenv("SWEEP_GRAPH_SECONDS", seconds)
    handler = signal.getsignal(signal.SIGALRM)
    code, out, err = run(capsys, "torchvision:resnet50", "--input-size", "64")
    assert code == 2 and out == []
    assert len(err) == 1 and all(w in err[0] for w in words), err
    assert signal.getsignal(signal.SIGALRM) is handler
