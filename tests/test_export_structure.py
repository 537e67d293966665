"""``sweep export`` of a network that is not a chain: a resnet20 trial's dead channels are cut out of every
layer that holds them, the card's numbers are the trial's, and ``load_compact`` rebuilds the network from
its factory, the recorded removal and plain tensors (no pickle), in a fresh process too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import torch
from conftest import small_resnet20_trial
from optuna.trial import create_trial

from sweep import load_compact
from sweep.cli import main
from sweep.train import load_checkpoint, train_trial

STUDY = "resnet20-cifar10"


def test_export_of_a_resnet20_trial(shared_data_dir, tmp_path, capsys):
    cfg = small_resnet20_trial(shared_data_dir)
    run = tmp_path / "runs" / "t0"
    final = train_trial(cfg, None, str(run))
    widths, full = final["widths"], final["widths_full"]
    assert all(w > 0 for w in widths.values()) and widths != full
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name=STUDY, directions=["minimize", "minimize"])
    attrs = {k: v for k, v in final.items() if k != "done"}
    attrs.update(early_stopped=False, checkpoint=str(run))
    study.add_trial(create_trial(values=[attrs["top1_error"], attrs["neurons"]], user_attrs=attrs))

    out = tmp_path / "export"
    assert main(["export", STUDY, "--storage", storage, "--out", str(out), "--trial", "0"]) == 0
    assert "exported trial 0" in capsys.readouterr().out
    card = json.loads((out / "card.json").read_text())
    assert card["widths"] == {"before": full, "after": widths}
    assert card["params"]["after"] == final["params"] and card["flops"]["after"] == final["flops"]
    assert card["top1_error"]["test"] == final["test_top1_error"]
    assert card["equivalence"]["max_relative_logit_difference"] <= 1e-5
    arch = json.loads((out / "architecture.json").read_text())
    assert arch["model"] == "resnet20" and arch["widths"] == widths and arch["removal"]["version"] == 1

    dense = load_checkpoint(run).model.eval()
    loaded = load_compact(str(out))
    assert loaded.widths() == widths
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        want, got = dense(x), loaded(x)
    assert float((got - want).abs().max() / want.abs().max()) < 1e-5
    torch.save(x, tmp_path / "x.pt")
    torch.save(got, tmp_path / "y.pt")
    script = (
        "import sys, torch; from sweep import load_compact; "
        "x = torch.load(sys.argv[2], weights_only=True); y = torch.load(sys.argv[3], weights_only=True); "
        "ts = torch.jit.load(sys.argv[1] + '/model.ts'); m = load_compact(sys.argv[1]); "
        "assert torch.equal(m(x), y), 'load_compact'; "
        "assert float((ts(x) - y).abs().max() / y.abs().max()) < 1e-5, 'torchscript'"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(out), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(out / "model.safetensors").is_file()
