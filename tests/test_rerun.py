"""``sweep train --from STUDY:TRIAL`` and ``--config FILE.json``: a trial re-run with its whole config."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import write_tiny_mnist
from optuna.trial import create_trial

from sweep.cli import main
from sweep.config import TrialConfig
from sweep.train import train_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)
STUDY = "lenet-rerun"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A study whose trial 0 trained a small lenet for 1 epoch with settings the command-line options
    cannot express (no debias restart, momentum, weight decay, flips, holdout, layer scales); trial 1
    recorded no config."""
    root = tmp_path_factory.mktemp("rerun")
    data_dir = write_tiny_mnist(root / "data")
    cfg = TrialConfig(
        model="lenet",
        dataset="mnist",
        data_dir=str(data_dir),
        holdout=24,
        penalty="group_lasso",
        lam=0.02,
        layers=["fc1"],
        layer_scales={"fc1": 1.5},
        epochs=1,
        debias_restart=False,
        momentum=0.8,
        weight_decay=1e-4,
        random_flip=True,
        batch_size=32,
        lr=0.02,
        lr_policy="cosine",
        seed=3,
        device="cpu",
        precision="fp32",
    )
    metrics = train_trial(cfg, None, str(root / "runs" / "t0"))
    storage = f"sqlite:///{root / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name=STUDY, directions=["minimize", "minimize"])
    attrs = {k: v for k, v in metrics.items() if k != "done"}
    attrs.update(early_stopped=False, checkpoint=str(root / "runs" / "t0"))
    study.add_trial(create_trial(values=[attrs["top1_error"], attrs["neurons"]], user_attrs=attrs))
    study.add_trial(create_trial(values=[1.0, 2.0], user_attrs={}))
    return {"storage": storage, "root": root, "config": metrics["config"], "metrics": metrics}


def test_a_trial_re_run_records_the_config_it_recorded(
    recorded: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "again"
    args = ["train", "--from", f"{STUDY}:0", "--storage", recorded["storage"], "--out", str(out), "--json"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"settings from trial 0 of study '{STUDY}'" in lines[0] and lines[0].count(", exactly") == 1
    final = json.loads(lines[-1])
    assert final["config"] == recorded["config"]
    assert final["neurons"] == recorded["metrics"]["neurons"]
    assert final["top1_error"] == pytest.approx(recorded["metrics"]["top1_error"])
    assert (out / "checkpoint.pt").is_file()


def test_the_export_card_carries_the_whole_config_and_train_takes_it_back(
    recorded: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported = tmp_path / "exported"
    args = ["export", STUDY, "--storage", recorded["storage"], "--trial", "0", "--out", str(exported)]
    assert main([*args, "--format", "safetensors"]) == 0
    card = json.loads((exported / "card.json").read_text())
    assert card["config"] == recorded["config"]
    assert set(card["config"]) == {f.name for f in dataclasses.fields(TrialConfig)}
    config = tmp_path / "trial.json"
    config.write_text(json.dumps(card["config"]))
    capsys.readouterr()
    out = tmp_path / "again"
    assert main(["train", "--config", str(config), "--lr", "0.05", "--out", str(out), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "settings from trial.json + the command line (lr)" in lines[0]
    assert json.loads(lines[-1])["config"] == {**recorded["config"], "lr": 0.05}


BAD = [
    (["--from", f"{STUDY}:7"], f"study '{STUDY}' has no trial 7; its trials: 0, 1"),
    (["--from", "nope:0"], "no study named 'nope'"),
    (["--from", f"{STUDY}:1"], "trial 1 of study .* recorded no training config"),
    (["--from", STUDY], "--from must be STUDY:TRIAL"),
    (["--config", "{missing}"], "no such file"),
    (["--config", "{malformed}"], "not valid JSON"),
    (["--config", "{unknown}"], "unknown trial setting\\(s\\) bogus"),
    (["--config", "{external}"], "code from outside sweep"),
    (["--config", "{unknown}", "--from", f"{STUDY}:0"], "not allowed with argument"),
    ([], "say what to train"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    recorded: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], args, message
) -> None:
    files = {
        "missing": tmp_path / "missing.json",
        "malformed": tmp_path / "malformed.json",
        "unknown": tmp_path / "unknown.json",
        "external": tmp_path / "external.json",
    }
    files["malformed"].write_text('{"model": "lenet",')
    files["unknown"].write_text(json.dumps({**recorded["config"], "bogus": 1}))
    files["external"].write_text(json.dumps({**recorded["config"], "model": "evil.py:make_net"}))
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    out = tmp_path / "out"
    assert main(["train", *args, "--storage", recorded["storage"], "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert re.search(message, captured.err), captured.err
    assert not out.exists()
