"""Starting from trained weights: ``init:`` / ``--init`` in every form, ``init: baseline`` in a sweep, and
export's default pick (the smallest network within ``--max-increase`` points of the baseline)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import optuna
import pytest
import torch
from conftest import write_mnist_like
from optuna.trial import TrialState
from safetensors.torch import save_file
from sample_study import make_study

from sweep import models
from sweep.cli import build_parser, main
from sweep.config import TrialConfig
from sweep.errors import SweepError
from sweep.export import choose_trial
from sweep.export.command import NothingCompact
from sweep.search import run_command
from sweep.select import all_rows
from sweep.study import close_study, is_baseline, load_study_readonly
from sweep.train import Teacher, load_checkpoint, load_initial_weights, save_checkpoint

TRAIN_IMAGES = 300
FINETUNE_SPACE = """\
model: lenet
dataset: mnist
fixed: {batch_size: 32, lr: 0.01, lr_policy: cosine}
search:
  penalty: {choices: [none, group_lasso]}
  lam: {low: 1.0e-2, high: 1.0e-1, log: true}
start:
  - {penalty: group_lasso, lam: 0.05}
budgets:
  smoke: {trials: 2, epochs: 1}
  finetune: {trials: 3, epochs: 1, baseline_epochs: 2, overrides: {init: baseline, distill: 0.5}}
"""


def trained_lenet(seed: int = 1) -> models.Net:
    torch.manual_seed(seed)
    model = models.create("lenet")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_weights_load_from_every_file_form(tmp_path):
    source = trained_lenet()
    body, net = source.body.state_dict(), source.state_dict()
    forms = {
        "bare.pt": lambda p: torch.save(body, p),  # the plain nn.Module's own keys
        "net.pt": lambda p: torch.save(net, p),  # sweep's Net keys (body.conv1.weight)
        "parallel.pt": lambda p: torch.save({f"module.{k}": v for k, v in body.items()}, p),
        "wrapped.pth": lambda p: torch.save({"state_dict": body, "epoch": 3}, p),
        "plain.safetensors": lambda p: save_file({k: v.contiguous() for k, v in body.items()}, str(p)),
    }
    for name, write in forms.items():
        write(tmp_path / name)
        fresh = models.create("lenet")
        assert not same_state(fresh, source)
        load_initial_weights(fresh, str(tmp_path / name))
        assert same_state(fresh, source), name
    ckpt = save_checkpoint(tmp_path / "trial", source, TrialConfig(model="lenet"), 1, {}).parent
    export = tmp_path / "export"
    export.mkdir()
    save_file({k: v.contiguous() for k, v in net.items()}, str(export / "model.safetensors"))
    for folder in (ckpt, export):  # a sweep checkpoint folder, an exported folder of the dense network
        fresh = models.create("lenet")
        load_initial_weights(fresh, str(folder))
        assert same_state(fresh, source), folder


def test_weights_that_do_not_fit_name_the_first_key(tmp_path):
    body = trained_lenet().body.state_dict()
    cases = {
        "shape.pt": ({**body, "fc1.weight": torch.zeros(10, 800)}, "'fc1.weight' is 10x800 there, 500x800"),
        "missing.pt": ({k: v for k, v in body.items() if k != "conv2.bias"}, "it has no 'conv2.bias'"),
        "extra.pt": ({**body, "fc9.weight": torch.zeros(1)}, "the model has no 'fc9.weight'"),
    }
    for name, (state, message) in cases.items():
        torch.save(state, tmp_path / name)
        with pytest.raises(SweepError, match=message):
            load_initial_weights(models.create("lenet"), str(tmp_path / name))


def test_bad_init_on_the_command_line_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SWEEP_OFFLINE", "1")
    torch.save(models.create("cifar10_quick").state_dict(), tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_text("not weights")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled module, not a state dict
    cases = {
        str(tmp_path / "other.pt"): "does not fit the model: 'conv1.weight' is 32x3x5x5 there, 20x1x5x5",
        str(tmp_path / "junk.pt"): "cannot be read as weights",
        str(tmp_path / "module.pt"): "a pickled module is not loaded: save its state_dict() instead",
        str(tmp_path / "nope.safetensors"): "no such file; init must be a .safetensors file",
        "baseline": "init: baseline is resolved by sweep run",
        "torchvision:ResNet18_Weights.IMAGENET1K_V1": "downloads are off (SWEEP_OFFLINE=1)",
        "torchvision:NoSuch_Weights.X": "torchvision has no such weights",
    }
    for init, message in cases.items():
        out = tmp_path / "out"
        assert main(["train", "lenet", "--init", init, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (init, err)
        assert not out.exists()
    db = tmp_path / "study.db"
    argv = ["run", "lenet", "--init", str(tmp_path / "other.pt"), "--storage", f"sqlite:///{db}"]
    assert main([*argv, "--out", str(tmp_path / "runs")]) == 2
    assert "does not fit the model" in capsys.readouterr().err and not db.exists()


def run_args(*argv: str) -> dict:
    args = vars(build_parser().parse_args(["run", "lenet", *argv]))
    del args["command"]
    return args


def test_init_baseline_trains_the_baseline_first_and_every_trial_starts_from_it(
    ray_session, tmp_path, capsys
):
    data_dir = write_mnist_like(tmp_path / "data", TRAIN_IMAGES)
    space = tmp_path / "lenet-finetune.yaml"
    space.write_text(FINETUNE_SPACE)
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    argv = [
        "--space",
        str(space),
        "--budget",
        "finetune",
        "--storage",
        url,
        "--data-dir",
        str(data_dir),
        "--subset",
        str(TRAIN_IMAGES),
        "--out",
        str(tmp_path / "runs"),
    ]
    assert run_command(**run_args(*argv)) == 0
    out = capsys.readouterr().out
    assert "init: baseline: training the study's baseline first (2 epoch(s))" in out
    trials = optuna.load_study(study_name="lenet-mnist", storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    baseline, rest = trials[0], trials[1:]
    assert is_baseline(baseline) and baseline.user_attrs["config"]["init"] is None
    assert baseline.user_attrs["epochs"] == 2
    # trained alone while the others wait, the baseline gets the whole node (2 CPUs), each trial after it 1
    assert baseline.user_attrs["node"]["threads"] == 2
    assert [t.user_attrs["node"]["threads"] for t in rest] == [1, 1]
    start = str(Path(baseline.user_attrs["checkpoint"]).resolve())
    for t in rest:  # penalised, one epoch each, all from the baseline's final checkpoint, distilled from it
        assert t.user_attrs["config"]["init"] == start and t.user_attrs["epochs"] == 1
        assert t.user_attrs["config"]["distill"] == 0.5
    assert baseline.user_attrs["config"]["distill"] == 0.0, "the baseline has no teacher"
    assert f"init: baseline: the trials fine-tune from {start}" in out

    assert run_command(**run_args(*argv, "--resume", "--trials", "4")) == 0  # no second baseline
    out = capsys.readouterr().out
    trials = optuna.load_study(study_name="lenet-mnist", storage=url).trials
    assert len(trials) == 4 and sum(is_baseline(t) for t in trials) == 1
    assert "training the study's baseline first" not in out
    assert trials[3].user_attrs["config"]["init"] == start

    # the baseline's checkpoint is kept with the study (an Optuna artifact beside the database), so Ray's
    # result folder can go: a resume and a re-run of a trial start from the kept copy
    kept = [p for p in (tmp_path / "sweep.db.artifacts").iterdir() if p.is_file()]
    assert len(kept) == 1 and kept[0].read_bytes() == Path(start).read_bytes()
    shutil.rmtree(tmp_path / "runs")
    assert run_command(**run_args(*argv, "--resume", "--trials", "5")) == 0
    out = capsys.readouterr().out
    assert f"init: baseline: the trials fine-tune from {kept[0]}" in out
    trials = optuna.load_study(study_name="lenet-mnist", storage=url).trials
    assert trials[4].state == TrialState.COMPLETE and trials[4].user_attrs["config"]["init"] == str(kept[0])
    again = ["train", "--from", "lenet-mnist:1", "--storage", url, "--out", str(tmp_path / "again")]
    assert main(again) == 0
    assert "from the baseline checkpoint kept with the study" in capsys.readouterr().out

    shutil.rmtree(tmp_path / "sweep.db.artifacts")  # neither copy left: one line, nothing run
    assert main(["run", "lenet", *argv, "--resume", "--trials", "6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "baseline checkpoint" in err[0] and "kept no copy" in err[0], err
    assert len(optuna.load_study(study_name="lenet-mnist", storage=url).trials) == 5


def sample_rows(tmp_path: Path) -> tuple[str, list]:
    url = make_study(tmp_path / "study.db")
    study = load_study_readonly("lenet-mnist", url)
    try:
        return url, all_rows(study)
    finally:
        close_study(study)


def test_export_picks_the_smallest_network_within_max_increase_of_the_baseline(tmp_path, capsys):
    # the sample study's baseline (trial 0) has 0.87% held-out error
    _, rows = sample_rows(tmp_path)
    assert choose_trial(rows, "lenet-mnist", None, None, False).number == 1  # 1.11%, 83 neurons: +0.24
    assert (
        "within 1 point(s) of the baseline (trial 0, 0.87% held-out error): trial 1"
        in capsys.readouterr().out
    )
    assert choose_trial(rows, "lenet-mnist", None, None, False, max_increase=0.2).number == 2  # 1.00%
    with pytest.raises(NothingCompact, match="no trial that removes anything lies within 0 point"):
        choose_trial(rows, "lenet-mnist", None, None, False, max_increase=0.0)  # only the baseline
    assert choose_trial(rows, "lenet-mnist", None, None, False, knee=True).number != 0
    with pytest.raises(SweepError, match="--max-increase must be a number of points >= 0, got -1"):
        choose_trial(rows, "lenet-mnist", None, None, False, max_increase=-1.0)
    no_baseline = [r for r in rows if not r.is_baseline]
    with pytest.raises(
        SweepError, match=r"no complete baseline trial .* pick with --max-error, --knee or --trial"
    ):
        choose_trial(no_baseline, "lenet-mnist", None, None, False)


def test_max_increase_on_the_command_line(tmp_path, capsys):
    url, _ = sample_rows(tmp_path)
    assert main(["export", "lenet-mnist", "--storage", url, "--max-increase", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-increase: must be a finite number in [0, 100], got '-1'" in err
    assert main(["export", "lenet-mnist", "--storage", url, "--max-increase", "1", "--knee"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_distillation_loss_is_zero_against_itself_and_trains_only_the_student():
    torch.manual_seed(0)
    teacher_net = models.create("lenet")
    student = copy.deepcopy(teacher_net)  # lenet has no dropout or batch norm: train mode is eval mode
    teacher = Teacher(teacher_net, share=1.0, temperature=4.0)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    assert teacher.loss(student(x), x, y).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        student.body.fc2.weight.mul_(-1.0)
    loss = teacher.loss(student(x), x, y)
    assert loss.item() > 1e-4
    loss.backward()
    assert student.body.fc2.weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in teacher_net.parameters())
    hard = Teacher(teacher_net, share=0.0, temperature=4.0).loss(student(x), x, y)
    assert hard.item() == pytest.approx(torch.nn.functional.cross_entropy(student(x), y).item())


def test_train_distills_from_init_and_records_it(tiny_mnist_dir, tmp_path, capsys):
    init = tmp_path / "trained.safetensors"
    save_file(models.create("lenet").state_dict(), str(init))
    out = tmp_path / "out"
    argv = ["train", "lenet", "--init", str(init), "--distill", "0.7", "--data-dir", str(tiny_mnist_dir)]
    assert main([*argv, "--epochs", "1", "--batch-size", "16", "--out", str(out)]) == 0
    assert "distilled from --init (share 0.7, T 1)" in capsys.readouterr().out
    assert load_checkpoint(out).config.distill == 0.7
    assert main(["train", "lenet", "--distill", "0.7", "--out", str(tmp_path / "no-init")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "distill must be 0 without init" in err
    assert not (tmp_path / "no-init").exists()
