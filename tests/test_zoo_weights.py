"""``--init torchvision:...`` and ``--init timm:...``: a zoo's pretrained weights read from the zoo's own
cache (written here in the real layouts, as a download would leave them), the classifier fresh for
another class count, a pickle in the cache never run, and one line, exit 2, nothing written for what
cannot be had offline."""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from sweep import models
from sweep.cli import main
from sweep.train import load_initial_weights

ROOT = Path(__file__).resolve().parent.parent
HAS_TIMM = importlib.util.find_spec("timm") is not None
needs_timm = pytest.mark.skipif(not HAS_TIMM, reason="timm is not installed (extra: sweep[timm])")
RESNET18 = "torchvision:ResNet18_Weights.IMAGENET1K_V1"
MARKER = "ran-code"


def hub_file(torch_home: Path) -> Path:
    """Where torch hub keeps ResNet18_Weights.IMAGENET1K_V1 once downloaded."""
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    path = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class Planted:
    """Unpickling this would create a file: what an attacker's checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "x"))  # type: ignore[return-value]


def test_torchvision_weights_from_the_hub_cache_keep_all_but_the_classifier(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("SWEEP_OFFLINE", "1")
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18()  # 1000 classes, as the published weights
    torch.save(imagenet.state_dict(), hub_file(tmp_path))
    net = models.create("torchvision:resnet18", num_classes=10, input_size=32)
    fresh_fc = net.body.fc.weight.detach().clone()
    load_initial_weights(net, RESNET18)
    assert torch.equal(net.body.conv1.weight, imagenet.conv1.weight)
    assert torch.equal(net.body.layer4[1].bn2.running_var, imagenet.layer4[1].bn2.running_var)
    assert torch.equal(net.body.fc.weight, fresh_fc) and net.body.fc.weight.shape == (10, 512)
    assert "'fc.weight', 'fc.bias' start fresh (another class count)" in capsys.readouterr().out


def test_a_pickle_in_the_hub_cache_is_not_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    marker = tmp_path / MARKER
    hub_file(tmp_path).write_bytes(pickle.dumps({"conv1.weight": Planted(marker)}))
    out = tmp_path / "out"
    argv = ["train", "torchvision:resnet18", "--dataset", "cifar10", "--init", RESNET18, "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the weights cannot be read" in err, err
    assert not marker.exists() and not out.exists()


def test_zoo_weights_offline_and_unknown_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("SWEEP_OFFLINE", "1")
    cases = {
        ("torchvision:resnet18", RESNET18): "torch hub's cache has no resnet18-",
        ("torchvision:resnet18", "torchvision:ResNet18_Weights.NOPE"): "torchvision has no such weights",
    }
    if HAS_TIMM:
        cases[("timm:resnet18", "timm:resnet18.a1_in1k")] = "downloads are off (SWEEP_OFFLINE=1)"
        cases[("timm:resnet18", "timm:resnet18.a1_in1kk")] = "close: resnet18.a1_in1k"
    for (model, init), message in cases.items():
        out = tmp_path / "out"
        assert main(["train", model, "--dataset", "cifar10", "--init", init, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (init, err)
        assert not out.exists()


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT
    )


@needs_timm
def test_timm_weights_from_the_hugging_face_cache_fit_other_classes_and_channels(tmp_path):
    from safetensors.torch import save_file

    repo = tmp_path / "hub" / "models--timm--resnet18.a1_in1k"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    import timm

    torch.manual_seed(3)
    save_file(
        timm.create_model("resnet18", num_classes=1000).state_dict(), str(snapshot / "model.safetensors")
    )
    # Hugging Face's hub reads where its cache is when it is imported: a process of its own
    code = f"""
import torch, timm
from sweep import models
from sweep.train import load_initial_weights
net = models.create("timm:resnet18", num_classes=10, in_channels=1, input_size=32)
load_initial_weights(net, "timm:resnet18.a1_in1k")
torch.manual_seed(3)
ref = timm.create_model("resnet18", num_classes=1000)
assert torch.equal(net.body.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
assert net.body.conv1.weight.shape == (64, 1, 7, 7) and net.body.fc.weight.shape == (10, 512)
print("{MARKER}")
"""
    done = run_python(code, HF_HUB_CACHE=str(tmp_path / "hub"), SWEEP_OFFLINE="1")
    assert done.returncode == 0 and MARKER in done.stdout, done.stderr[-2000:]
    assert "'fc.weight', 'fc.bias' start fresh" in done.stdout


def test_timm_weights_without_timm_are_one_line(tmp_path):
    code = """
import sys
sys.modules["timm"] = None  # as if the extra were not installed
from sweep.cli import main
sys.exit(main(["train", "lenet", "--init", "timm:resnet18.a1_in1k", "--out", sys.argv[1]]))
"""
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "timm is not installed" in done.stderr and "timm==" in done.stderr
    assert not (tmp_path / "out").exists()
