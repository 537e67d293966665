"""Hostile and nonsense input to every command: one line on stderr, exit code 2, no traceback, and nothing
created or changed (no database, no output file, the sample study's database byte for byte).

Each row is (command line, a fragment its error line must hold). Placeholders: {DB} the sample study's
storage URL, {EMPTY} an empty folder, {FILE} a plain file, {MISSING} a path that does not exist, {SPACES}
the folder of hostile search-space files written below. $SWEEP_DATA_DIR holds a small MNIST, so a row
can tell "the data is elsewhere" from "the data is nowhere"."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from conftest import mnist_like_arrays, write_idx, write_image_folder
from safetensors.torch import save as safetensors_save
from sample_study import STUDY, make_study

from sweep import models
from sweep.cli import main
from sweep.config import TrialConfig
from sweep.train import save_checkpoint

optuna.logging.set_verbosity(optuna.logging.WARNING)

VALID = "model: lenet\nsearch: {penalty: {choices: [l1]}}\n"
GPUS = torch.cuda.device_count()  # rows about GPUs ask for one more than there are


def _billion_laughs() -> str:
    """Under 500 bytes that expand to 9^9 strings; PyYAML shares the nodes, printing them does not."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "fixed:\n" + "".join(f"  {line}\n" for line in lines) + "model: *a8\nsearch: {}\n"


def _alias_chain_deep() -> str:
    """Each anchor nests the previous one 10 levels down: shallow text, 60 levels once expanded."""
    lines = ["a0: &a0 " + "[" * 10 + "1" + "]" * 10]
    lines += [f"a{i}: &a{i} " + "[" * 10 + f"*a{i - 1}" + "]" * 10 for i in range(1, 6)]
    return "fixed:\n" + "".join(f"  {line}\n" for line in lines) + "model: lenet\nsearch: {}\n"


# Models from outside the package (sweep.models.external) that cannot be used, each for its own reason.
OUTSIDE_NETS = """\
import torch
from torch import nn


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * x

    @staticmethod
    def backward(ctx, grad):
        return grad


class Small(nn.Module):
    def __init__(self, num_classes, in_channels, gate=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 4, 3)
        self.fc = nn.Linear(4, num_classes)
        self.gate = gate

    def forward(self, x):
        x = self.conv1(x)
        x = Square.apply(x) if self.gate == "square" else torch.sigmoid(x) if self.gate else torch.relu(x)
        return self.fc(x.mean((2, 3)))


def good(num_classes, in_channels):
    return Small(num_classes, in_channels)


def returns_int():
    return 5


def raises(num_classes):
    raise ValueError("no such width")


def custom_function(**kwargs):
    return Small(kwargs["num_classes"], kwargs["in_channels"], "square")


def sigmoid_gate(num_classes, in_channels):
    return Small(num_classes, in_channels, "sigmoid")


def wrong_classes(in_channels):
    return Small(1000, in_channels)
"""

SPACES: dict[str, str | bytes] = {
    "valid.yaml": VALID,
    "bomb.yaml": _billion_laughs(),
    "bomb_in_choices.yaml": _billion_laughs().replace(
        "model: *a8\nsearch: {}", "model: lenet\nsearch: {penalty: {choices: *a8}}"
    ),
    "deep.yaml": "model: lenet\nsearch: " + "[" * 600 + "]" * 600 + "\n",
    "deep_block.yaml": "model: lenet\nfixed:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(600)),
    "alias_deep.yaml": _alias_chain_deep(),
    "recursive.yaml": "model: lenet\nsearch: &a [*a]\n",
    "binary.yaml": bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8)) + b"\xff\xfe",
    "latin1.yaml": "model: lenet\n# caf\xe9\nsearch: {}\n".encode("latin-1"),
    "nul.yaml": "model: lenet\x00\nsearch: {}\n",
    "huge.yaml": VALID + "#" * (1 << 20) + "\n",
    "long_value.yaml": 'model: "' + "x" * 200_000 + '"\nsearch: {}\n',
    "long_key.yaml": VALID + "fixed: {" + "k" * 1000 + ": 1}\n",
    "duplicate.yaml": "model: lenet\nmodel: lenet\nsearch: {}\n",
    "unhashable_key.yaml": "model: lenet\n? [a, b]\n: 1\n",
    "big_int.yaml": VALID + "fixed: {batch_size: " + "9" * 5000 + "}\n",
    "bad_date.yaml": "model: 2024-99-99\nsearch: {}\n",
    "momentum.yaml": VALID + "fixed: {momentum: 7.5}\n",
    "weight_decay.yaml": VALID + "fixed: {weight_decay: -3}\n",
    "batch_size.yaml": VALID + "fixed: {batch_size: 1e23}\n",
    "lr_inf.yaml": VALID + "fixed: {lr: .inf}\n",
    "lr_nan.yaml": VALID + "fixed: {lr: .nan}\n",
    "lr_zero.yaml": VALID + "fixed: {lr: 0}\n",
    "shift.yaml": VALID + "fixed: {random_shift: 1000}\n",
    "layers_empty.yaml": VALID + "fixed: {layers: []}\n",
    "milestones.yaml": VALID + "fixed: {lr_milestones: [-1]}\n",
    "big_step.yaml": "model: lenet\nsearch: {penalty: {choices: [l1]}, batch_size: {low: 1, high: 2, step: 5}}\n",
    "scale.yaml": VALID + "fixed: {layer_scales: {fc1: -2}}\n",
    "override.yaml": VALID + "budgets: {smoke: {trials: 1, epochs: 1, overrides: {momentum: -1}}}\n",
    "search_momentum.yaml": "model: lenet\nsearch: {penalty: {choices: [l1]}, momentum: {low: 0.5, high: 7.5}}\n",
    "search_lr.yaml": "model: lenet\nsearch: {penalty: {choices: [l1]}, lr: {low: 0, high: 0.1}}\n",
    "search_batch.yaml": "model: lenet\nsearch: {penalty: {choices: [l1]}, batch_size: {low: 1, high: 1e23}}\n",
    "lam_nan.yaml": "model: lenet\nsearch: {penalty: {choices: [l1]}, lam: {low: .nan, high: 1}}\n",
    "outside_broken.py": "import no_such_module_xyz\n",
    "outside_nets.py": OUTSIDE_NETS,
    "outside.yaml": "model: no_such_package_xyz.nets:make_net\nsearch: {penalty: {choices: [l1]}}\n",
    # cifar10_quick's first conv, not lenet's: weights that do not fit the model
    "misfit.safetensors": safetensors_save({"conv1.weight": torch.zeros(32, 3, 5, 5)}),
}

TRAIN: list[tuple[list[str], str]] = [
    (["train", "resnet"], "unknown model 'resnet'; known: alexnet, cifar10_quick, lenet"),
    (["train", ""], "argument model: must not be empty"),
    (["train", "lenet", "--lam", "inf"], "argument --lam: must be a finite number, got 'inf'"),
    (["train", "lenet", "--lam", "nan"], "argument --lam: must be a finite number, got 'nan'"),
    (["train", "lenet", "--lam", "-1"], "lam must be a number >= 0, got -1.0"),
    (["train", "lenet", "--alpha", "1.5"], "alpha must be in [0, 1], got 1.5"),
    (["train", "lenet", "--alpha=-inf"], "argument --alpha: must be a finite number, got '-inf'"),
    (["train", "lenet", "--warmup-epochs", "nan"], "argument --warmup-epochs: must be a finite number"),
    (["train", "lenet", "--warmup-epochs", "-1"], "warmup_epochs must be a number >= 0, got -1.0"),
    (["train", "lenet", "--lr", "0"], "lr must be a number > 0, got 0.0"),
    (["train", "lenet", "--lr", "infinity"], "argument --lr: must be a finite number, got 'infinity'"),
    (["train", "lenet", "--lr", "fast"], "argument --lr: must be a number, got 'fast'"),
    (["train", "lenet", "--random-shift", "1000"], "random_shift must be an integer in [0, 14] (pixels"),
    (["train", "lenet", "--random-shift", "-1"], "random_shift must be an integer in [0, 1024], got -1"),
    (["train", "lenet", "--batch-size", "0"], "batch_size must be an integer in [1, 1048576], got 0"),
    (["train", "lenet", "--batch-size", str(10**23)], "batch_size must be an integer in [1, 1048576]"),
    (["train", "lenet", "--epochs", "0"], "epochs must be an integer in [1, 100000], got 0"),
    (["train", "lenet", "--epochs", str(10**6)], "epochs must be an integer in [1, 100000], got 1000000"),
    (["train", "lenet", "--batch-size", "1e23"], "argument --batch-size: invalid int value: '1e23'"),
    (["train", "lenet", "--epochs", "5", "--debias-epochs", "5"], "debias_epochs must be in [0, epochs=5)"),
    (["train", "lenet", "--debias-epochs", "-1"], "debias_epochs must be an integer in [0, 100000]"),
    (["train", "lenet", "--seed", "-1"], "seed must be an integer in [0, 4294967295], got -1"),
    (["train", "lenet", "--seed", "1e3"], "argument --seed: invalid int value: '1e3'"),
    (["train", "lenet", "--subset", "1"], "subset must be an integer >= 2, got 1"),
    (["train", "lenet", "--penalty", "l0"], "penalty must be one of none, l1, group_lasso"),
    (["train", "lenet", "--layers", "fc2"], "--layers names 'fc2', not a layer that can lose units"),
    (["train", "lenet", "--layers", ","], "layers must be null (every layer that can lose units) or"),
    (["train", "lenet", "--layers", " "], "argument --layers: must not be empty"),
    (["train", "lenet", "--lr-policy", "step"], "argument --lr-policy: invalid choice: 'step'"),
    (["train", "lenet", "--dataset", "svhn"], "unknown dataset 'svhn'; known:"),
    (["train", "lenet", "--device", "tpu"], "device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["train", "lenet", "--data-dir", "{MISSING}"], "argument --data-dir: must be an existing folder"),
    (["train", "lenet", "--data-dir", "{FILE}"], "is not a folder"),
    (["train", "lenet", "--data-dir", "{EMPTY}"], "(the data folder given, {EMPTY}, and nowhere else)"),
    (["train", "lenet", "--out", ""], "argument --out: must not be empty"),
    (["train", "lenet", "--epochs", "1", "--bogus"], "unrecognized arguments: --bogus"),
    (
        ["train", "lenet", "--device", "cpu", "--precision", "fp16"],
        "precision fp16 needs a CUDA GPU, and this trial runs on cpu; use bf16 or fp32",
    ),
    (["train", "lenet", "--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
    (["train", "lenet", "--precision", ""], "argument --precision: invalid choice: ''"),
    (
        ["train", "lenet", "--device", f"cuda:{max(3, GPUS)}"],
        f"device 'cuda:{max(3, GPUS)}' asked for, but "
        + ("no CUDA GPU is visible" if GPUS == 0 else f"torch sees {GPUS} CUDA GPU(s)"),
    ),
    (["train", "lenet", "--device", "cuda:-1"], "device must be auto, cpu, cuda or cuda:N, got 'cuda:-1'"),
]

RUN: list[tuple[list[str], str]] = [
    (["run", "lenet", "--study", ""], "argument --study: must not be empty, got ''"),
    (["run", "lenet", "--study", "  "], "argument --study: must not be empty"),
    (["run", "lenet", "--space", "{SPACES}/bomb.yaml"], "expand it to more than 10000 YAML nodes"),
    (["run", "lenet", "--space", "{SPACES}/bomb_in_choices.yaml"], "a search space may hold at most 10000"),
    (["run", "lenet", "--space", "{SPACES}/deep.yaml"], "deep.yaml:2: nested deeper than 32 levels"),
    (["run", "lenet", "--space", "{SPACES}/deep_block.yaml"], "nested deeper than 32 levels"),
    (["run", "lenet", "--space", "{SPACES}/alias_deep.yaml"], "its aliases nest it deeper than 32 levels"),
    (["run", "lenet", "--space", "{SPACES}/recursive.yaml"], "a search space cannot be recursive"),
    # initial weights that do not fit the model
    (
        ["train", "lenet", "--init", "{SPACES}/misfit.safetensors"],
        "misfit.safetensors does not fit the model: 'conv1.weight' is 32x3x5x5 there, 20x1x5x5 in the",
    ),
    (
        ["run", "lenet", "--init", "{SPACES}/misfit.safetensors"],
        "misfit.safetensors does not fit the model: 'conv1.weight' is 32x3x5x5 there, 20x1x5x5 in the",
    ),
    (["run", "lenet", "--space", "{SPACES}/binary.yaml"], "binary.yaml: not UTF-8 text (byte 0x"),
    (["run", "lenet", "--space", "{SPACES}/latin1.yaml"], "a search space must be a UTF-8 YAML file"),
    (["run", "lenet", "--space", "{SPACES}/nul.yaml"], "nul.yaml: not YAML text (unacceptable character"),
    (["run", "lenet", "--space", "{SPACES}/huge.yaml"], "huge.yaml: larger than 1048576 bytes"),
    (["run", "lenet", "--space", "{SPACES}/long_value.yaml"], "model: unknown model 'xxxxxxxx"),
    (["run", "lenet", "--space", "{SPACES}/long_key.yaml"], "kkkk...: unknown key; allowed:"),
    (
        ["run", "lenet", "--space", "{SPACES}/duplicate.yaml"],
        "duplicate.yaml:2: malformed YAML: duplicate key",
    ),
    (["run", "lenet", "--space", "{SPACES}/unhashable_key.yaml"], "a key must be a plain value, not a list"),
    (["run", "lenet", "--space", "{SPACES}/big_int.yaml"], "malformed YAML: a value cannot be read"),
    (["run", "lenet", "--space", "{SPACES}/bad_date.yaml"], "malformed YAML: a value cannot be read"),
    (["run", "lenet", "--space", "{SPACES}/momentum.yaml"], "fixed: momentum must be in [0, 1], got 7.5"),
    (["run", "lenet", "--space", "{SPACES}/weight_decay.yaml"], "fixed: weight_decay must be a number >= 0"),
    (
        ["run", "lenet", "--space", "{SPACES}/batch_size.yaml"],
        "fixed: batch_size must be an integer in [1, 1048576]",
    ),
    (["run", "lenet", "--space", "{SPACES}/lr_inf.yaml"], "fixed.lr: must be a number, got inf"),
    (["run", "lenet", "--space", "{SPACES}/lr_nan.yaml"], "fixed.lr: must be a number, got nan"),
    (["run", "lenet", "--space", "{SPACES}/lr_zero.yaml"], "fixed: lr must be a number > 0, got 0.0"),
    (["run", "lenet", "--space", "{SPACES}/shift.yaml"], "fixed: random_shift must be an integer in [0, 14]"),
    (["run", "lenet", "--space", "{SPACES}/layers_empty.yaml"], "fixed: layers must be null"),
    (
        ["run", "lenet", "--space", "{SPACES}/milestones.yaml"],
        "fixed: lr_milestones[0] must be an integer in",
    ),
    (["run", "lenet", "--space", "{SPACES}/scale.yaml"], "fixed: layer_scales.fc1 must be a number >= 0"),
    (["run", "lenet", "--space", "{SPACES}/override.yaml"], "budgets.smoke: momentum must be in [0, 1]"),
    (["run", "lenet", "--space", "{SPACES}/search_momentum.yaml"], "range 0.5..7.5 must lie in [0, 1]"),
    (
        ["run", "lenet", "--space", "{SPACES}/search_lr.yaml"],
        "search.lr: range 0.0..0.1 must lie in (0, inf)",
    ),
    (["run", "lenet", "--space", "{SPACES}/search_batch.yaml"], "must lie in [1, 1048576]"),
    (["run", "lenet", "--space", "{SPACES}/lam_nan.yaml"], "search.lam.low: must be a number, got nan"),
    (["run", "lenet", "--space", "{MISSING}"], "cannot read search space {MISSING}: No such file"),
    (["run", "lenet", "--space", "{EMPTY}"], "cannot read search space {EMPTY}: Is a directory"),
    (["run", "lenet", "--space", ""], "argument --space: must not be empty"),
    (["run", "lenet", "--trials", "0"], "--trials must be at least 1, got 0"),
    (["run", "lenet", "--cpus-per-trial", "inf"], "argument --cpus-per-trial: must be a finite number"),
    (["run", "lenet", "--gpus-per-trial", "nan"], "argument --gpus-per-trial: must be a finite number"),
    (["run", "lenet", "--cpus-per-trial", "0"], "--cpus-per-trial must be > 0"),
    (["run", "lenet", "--concurrency", "0"], "--concurrency must be at least 1, got 0"),
    (["run", "lenet", "--sampler", "grid-ish"], "argument --sampler: invalid choice: 'grid-ish'"),
    (["run", "lenet", "--budget", "huge"], "unknown budget 'huge'"),
    (["run", "lenet", "--epochs", "0"], "epochs must be an integer in [1, 100000], got 0"),
    (["run", "lenet", "--seed", "-5"], "seed must be an integer in [0, 4294967295], got -5"),
    (["run", "lenet", "--data-dir", "{MISSING}"], "argument --data-dir: must be an existing folder"),
    (["run", "lenet", "--storage", ""], "argument --storage: must not be empty"),
    (["run", "lenet", "--storage", "not-a-url"], "storage must be a database URL like sqlite:///sweep.db"),
    (["run", "lenet", "--address", ""], "argument --address: must not be empty"),
    (["run", "lenet", "--resume", "--storage", "sqlite:///{MISSING}"], "no study database at {MISSING}"),
    (
        ["run", "lenet", "--resume", "--study", "nope", "--storage", "{DB}"],
        "no study 'nope' in this database",
    ),
    (
        ["run", "cifar10_quick", "--space", "{SPACES}/valid.yaml"],
        "this space is for 'lenet', not 'cifar10_quick'",
    ),
    (["run", "lenet", "--precision", "fp16"], "--precision fp16 needs a CUDA GPU per trial"),
    (["run", "lenet", "--precision", "half"], "argument --precision: invalid choice: 'half'"),
    (
        ["run", "lenet", "--gpus-per-trial", str(GPUS + 1)],
        f"--gpus-per-trial {GPUS + 1} is more than the {GPUS} CUDA GPU(s) torch sees on this machine",
    ),
    *(
        [(["run", "lenet", "--gpus-per-trial", "0.25"], "is more than the 0 CUDA GPU(s) torch sees")]
        if GPUS == 0
        else []
    ),
    (["run", "lenet", "--gpus-per-trial", "1.5"], "--gpus-per-trial 1.5: above 1 it must be a whole number"),
]

STATUS: list[tuple[list[str], str]] = [
    (["status"], "no study database at "),
    (["status", "--storage", ""], "argument --storage: must not be empty"),
    (["status", "--storage", "sqlite:///{MISSING}"], "no study database at {MISSING}"),
    (["status", "--storage", "{DB}", "--study", "nope"], "no study 'nope' in this database; studies there:"),
    (["status", "--storage", "{DB}", "--study", ""], "argument --study: must not be empty"),
    (
        ["status", "--storage", "sqlite:///{FILE}"],
        "cannot open storage sqlite:///{FILE}: file is not a database",
    ),
    (["status", "--storage", "sqlite:///{EMPTY}/../zero.db"], "holds no Optuna studies"),
]

PARETO: list[tuple[list[str], str]] = [
    (
        ["pareto", STUDY, "--storage", "{DB}", "--max-error", "nan"],
        "argument --max-error: must be a finite number in [0, 100], got 'nan'",
    ),
    (
        ["pareto", STUDY, "--storage", "{DB}", "--max-error", "inf"],
        "argument --max-error: must be a finite number",
    ),
    (["pareto", STUDY, "--storage", "{DB}", "--max-error", "-1"], "got '-1'"),
    (["pareto", STUDY, "--storage", "{DB}", "--max-error", "0.1"], "no usable trial has at most 0.1% error"),
    (["pareto", STUDY, "--storage", "{DB}", "--x", "weight"], "argument --x: invalid choice: 'weight'"),
    (["pareto", "nope", "--storage", "{DB}"], "no study named 'nope'"),
    (["pareto", "", "--storage", "{DB}"], "argument study: must not be empty"),
    (["pareto", STUDY, "--storage", "sqlite:///{MISSING}"], "{MISSING}"),
]

DASHBOARD: list[tuple[list[str], str]] = [
    (
        ["dashboard", STUDY, "--storage", "{DB}", "--serve", "--port", "99999"],
        "argument --port: must be an integer in [0, 65535], got '99999'",
    ),
    (
        ["dashboard", STUDY, "--storage", "{DB}", "--serve", "--port", "-1"],
        "argument --port: must be an integer in [0, 65535], got '-1'",
    ),
    (
        ["dashboard", STUDY, "--storage", "{DB}", "--serve", "--port", "http"],
        "argument --port: must be an integer, got 'http'",
    ),
    (
        ["dashboard", STUDY, "--storage", "{DB}", "--serve", "--host", ""],
        "argument --host: must not be empty",
    ),
    (["dashboard", "nope", "--storage", "{DB}"], "no study named 'nope'"),
    (["dashboard", "", "--storage", "{DB}"], "argument study: must not be empty"),
    (["dashboard", STUDY, "--storage", "{DB}", "--out", ""], "argument --out: must not be empty"),
    (["dashboard", STUDY, "--storage", "{DB}", "--out", "{EMPTY}"], "it is a folder"),
    (["dashboard", STUDY, "--storage", "{DB}", "--out", "{FILE}/page.html"], "cannot write the dashboard"),
]

EXPORT: list[tuple[list[str], str]] = [
    (
        ["export", STUDY, "--storage", "{DB}", "--max-error", "nan"],
        "argument --max-error: must be a finite number in [0, 100], got 'nan'",
    ),
    (
        ["export", STUDY, "--storage", "{DB}", "--max-error", "inf"],
        "argument --max-error: must be a finite number",
    ),
    (
        ["export", STUDY, "--storage", "{DB}", "--data-dir", "{MISSING}"],
        "argument --data-dir: must be an existing folder",
    ),
    (["export", STUDY, "--storage", "{DB}", "--data-dir", ""], "argument --data-dir: must not be empty"),
    (
        ["export", STUDY, "--storage", "{DB}", "--trial", "2", "--data-dir", "{EMPTY}"],
        "(the data folder given, {EMPTY}, and nowhere else)",
    ),
    (["export", STUDY, "--storage", "{DB}", "--trial", "99"], "has no trial 99"),
    (["export", STUDY, "--storage", "{DB}", "--trial", "6"], "trial 6 failed"),
    (["export", STUDY, "--storage", "{DB}", "--trial", "7"], "trial 7 was stopped early"),
    (["export", STUDY, "--storage", "{DB}", "--trial", "1"], "does not exist"),
    (["export", STUDY, "--storage", "{DB}", "--format", "pickle"], "--format must be a comma-separated list"),
    (["export", STUDY, "--storage", "{DB}", "--finetune", "-1"], "--finetune must be 0 or more epochs"),
    (["export", STUDY, "--storage", "{DB}", "--out", ""], "argument --out: must not be empty"),
    (["export", STUDY, "--storage", "{DB}", "--trial", "1", "--knee"], "not allowed with argument"),
    (
        ["export", STUDY, "--storage", "{DB}", "--max-increase", "-1"],
        "argument --max-increase: must be a finite number in [0, 100], got '-1'",
    ),
    (["export", "nope", "--storage", "{DB}"], "no study named 'nope'"),
]

# a model from outside the package (sweep.models.external) that does not import, build or analyse
OUTSIDE: list[tuple[list[str], str]] = [
    (
        ["run", "{SPACES}/outside_broken.py:make_net", "--dataset", "mnist"],
        "outside_broken.py:make_net': the file does not import: ModuleNotFoundError: No module named 'no_such",
    ),
    (
        ["train", "no_such_package_xyz.nets:make_net", "--dataset", "mnist"],
        "module 'no_such_package_xyz.nets' does not import: ModuleNotFoundError: No module named",
    ),
    (
        ["run", "lenet", "--space", "{SPACES}/outside.yaml", "--dataset", "mnist"],
        "outside.yaml: model: model 'no_such_package_xyz.nets:make_net': module 'no_such_package_xyz.nets'",
    ),
    (
        ["run", "{SPACES}/outside_nets.py:missing", "--dataset", "mnist"],
        "outside_nets.py:missing': the file has no function 'missing'; it defines: Small, Square, custom_f",
    ),
    (
        ["train", "{SPACES}/outside_nets.py:returns_int", "--dataset", "mnist"],
        "returns_int() returned int 5, not a torch.nn.Module",
    ),
    (
        ["run", "{SPACES}/outside_nets.py:raises", "--dataset", "mnist"],
        "raises(num_classes=10) raised ValueError: no such width",
    ),
    (
        ["run", "{SPACES}/outside_nets.py:wrong_classes", "--dataset", "mnist"],
        "gives logits of shape (1, 1000) for one 1x28x28 image; expected shape (1, 10)",
    ),
    (
        ["run", "{SPACES}/outside_nets.py:custom_function", "--dataset", "mnist"],
        "(the custom autograd function Square, which it cannot see into) after layer 'conv1' is not one",
    ),
    (
        ["train", "{SPACES}/outside_nets.py:sigmoid_gate", "--dataset", "mnist"],
        "op SigmoidBackward0 after layer 'conv1' is not one the channel analysis can follow",
    ),
    (
        ["run", "{SPACES}/outside_nets.py:good"],
        "outside_nets.py:good' comes from outside sweep and has no dataset of its own: give --dataset",
    ),
    (["train", "{SPACES}/outside_nets.py:good"], "has no dataset of its own: give --dataset (or dataset:"),
    (["run", "{MISSING}/nets.py:make_net", "--dataset", "mnist"], "nets.py:make_net': file '"),
    (["run", "nets:", "--dataset", "mnist"], "model 'nets:': expected MODULE:FUNCTION or FILE.py:FUNCTION"),
    (["train", "nets.py:make-net"], "model 'nets.py:make-net': expected MODULE:FUNCTION or FILE.py"),
    (
        ["run", "json:no_such_function", "--dataset", "mnist"],
        "model 'json:no_such_function': module 'json' has no function 'no_such_function'; it defines: ",
    ),
]

# The folder dataset: {FOLDERS}/NAME are the ImageFolders the world fixture writes, one fault each.
FOLDER_TRAIN = ["train", "cifar10_quick", "--dataset", "folder", "--epochs", "1", "--data-dir"]
FOLDER: list[tuple[list[str], str]] = [
    ([*FOLDER_TRAIN, "{MISSING}"], "argument --data-dir: must be an existing folder"),
    ([*FOLDER_TRAIN, "{FOLDERS}/no_train"], "no_train has no train/ folder; expected an ImageFolder: train/"),
    ([*FOLDER_TRAIN, "{FOLDERS}/no_classes"], "no_classes/train has no class folders; expected one"),
    ([*FOLDER_TRAIN, "{FOLDERS}/one_class"], "one_class/train has one class folder (ant); expected"),
    ([*FOLDER_TRAIN, "{FOLDERS}/empty_class"], "empty_class/train/cat holds no images; expected"),
    ([*FOLDER_TRAIN, "{FOLDERS}/corrupt"], "corrupt/train/bee/003.png: cannot read it as an image ("),
    ([*FOLDER_TRAIN, "{FOLDERS}/val_unknown"], "val_unknown/val has class folders not in train/: zebra"),
    (FOLDER_TRAIN[:-1], "has no train/ folder; expected an ImageFolder: train/ with one subfolder of images"),
    ([*FOLDER_TRAIN, "{FOLDERS}/good", "--input-size", "0"], "input_size must be an integer in [4, 4096]"),
    (["run", "lenet", "--input-size", "5000"], "input_size must be an integer in [4, 4096], got 5000"),
]

# What sweep must never destroy or take over, and limits that used to fail deep inside a library
# (docs/security.md). {DBFILE}: the sample study's database file; {OTHERAPP}: another program's SQLite
# database; {SPACES}/fifo: a named pipe.
LONG = "s" * 5000
TRUST: list[tuple[list[str], str]] = [
    (["dashboard", STUDY, "--storage", "{DB}", "--out", "{DBFILE}"], "is the study database"),
    (["dashboard", STUDY, "--storage", "{DB}", "--out", "{FILE}"], "not written by sweep"),
    (["run", "lenet", "--storage", "sqlite:///{OTHERAPP}"], "tables"),
    (["run", "lenet", "--study", STUDY, "--storage", "{DB}", "--resume"], "fingerprint"),
    (["run", "cifar10_quick", "--study", STUDY, "--storage", "{DB}", "--resume"], "fingerprint"),
    (["run", "lenet", "--cpus-per-trial", "0.00001"], "--cpus-per-trial"),
    (["run", "lenet", "--space", "{SPACES}/fifo"], "not a regular file"),
    (["run", "lenet", "--space", "{SPACES}/big_step.yaml"], "larger than the range"),
    (["status", "--study", LONG, "--storage", "{DB}"], "study name"),
    (["pareto", LONG, "--storage", "{DB}"], "study name"),
    (["dashboard", LONG, "--storage", "{DB}"], "study name"),
    (["export", LONG, "--storage", "{DB}"], "study name"),
]
ROWS = TRAIN + RUN + STATUS + PARETO + DASHBOARD + EXPORT + OUTSIDE + FOLDER + TRUST


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The sample study (with a real checkpoint for trial 2), hostile spaces, an MNIST for $SWEEP_DATA_DIR."""
    root = tmp_path_factory.mktemp("hostile")
    db = root / "study.db"
    storage = make_study(db)
    folder = root / "runs" / STUDY / "trial2"  # where the study says trial 2's checkpoint is, beside the db
    save_checkpoint(folder, models.create("lenet"), TrialConfig(model="lenet", dataset="mnist"), 11, {})
    (folder / "checkpoint.pt").rename(folder / "model.pt")
    spaces = root / "spaces"
    spaces.mkdir()
    for name, content in SPACES.items():
        path = spaces / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    for prefix, n in (("train", 60), ("t10k", 20)):
        images, labels = mnist_like_arrays(n, 0)
        write_idx(root / "env-data" / "mnist" / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / "env-data" / "mnist" / f"{prefix}-labels-idx1-ubyte.gz", labels)
    os.mkfifo(spaces / "fifo")
    with sqlite3.connect(root / "otherapp.db") as other:
        other.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    (root / "empty").mkdir()
    (root / "file.txt").write_text("not a folder")
    (root / "zero.db").touch()
    folders = root / "folders"
    (folders / "no_train" / "val" / "ant").mkdir(parents=True)
    (folders / "no_classes" / "train").mkdir(parents=True)
    write_image_folder(folders / "one_class", ("ant",), per_class=3, size=8)
    write_image_folder(folders / "empty_class", ("ant", "bee"), per_class=3, size=8)
    (folders / "empty_class" / "train" / "cat").mkdir()
    write_image_folder(folders / "corrupt", ("ant", "bee"), per_class=6, size=8)
    (folders / "corrupt" / "train" / "bee" / "003.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    write_image_folder(folders / "val_unknown", ("ant", "bee"), per_class=3, size=8, val_per_class=1)
    (folders / "val_unknown" / "val" / "zebra").mkdir()
    write_image_folder(folders / "good", ("ant", "bee"), per_class=3, size=8)
    return {
        "root": str(root),
        "DB": storage,
        "DBFILE": str(db),
        "OTHERAPP": str(root / "otherapp.db"),
        "EMPTY": str(root / "empty"),
        "FILE": str(root / "file.txt"),
        "MISSING": str(root / "missing"),
        "SPACES": str(spaces),
        "ENV_DATA": str(root / "env-data"),
        "FOLDERS": str(folders),
    }


def _fill(text: str, world: dict[str, str]) -> str:
    for key in ("DBFILE", "DB", "EMPTY", "FILE", "MISSING", "SPACES", "FOLDERS", "OTHERAPP"):
        text = text.replace("{" + key + "}", world[key])
    return text


def _snapshot(*folders: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and folder below ``folders``: size, mtime and (for files) a hash of the content."""
    seen: dict[str, tuple[int, int, str]] = {}

    def walk() -> Iterator[Path]:
        for folder in folders:
            yield folder
            yield from folder.rglob("*")

    for path in walk():
        if path.name.endswith(".db-shm"):  # SQLite's shared-memory index: every reader writes to it
            continue
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        seen[str(path)] = (st.st_size, st.st_mtime_ns, digest)
    return seen


def test_the_table_is_large_and_covers_every_command() -> None:
    assert len(ROWS) >= 60
    assert {args[0] for args, _ in ROWS} == {"train", "run", "status", "pareto", "dashboard", "export"}


@pytest.mark.parametrize(("args", "fragment"), ROWS, ids=[" ".join(a)[:70] for a, _ in ROWS])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    args: list[str],
    fragment: str,
    world: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # default outputs (sweep.db, STUDY.html, export/, runs/) would land here
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SWEEP_OFFLINE", "1")
    monkeypatch.setenv("SWEEP_DATA_DIR", world["ENV_DATA"])
    monkeypatch.delenv("SWEEP_STORAGE", raising=False)
    root = Path(world["root"])
    before = _snapshot(root, tmp_path)

    code = main([_fill(a, world) for a in args])

    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("sweep: error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err + out
    assert len(err) < 2100, f"an error line of {len(err)} characters"
    assert _fill(fragment, world) in err, err
    assert _snapshot(root, tmp_path) == before, "a file was created or changed"
    assert not os.listdir(tmp_path), os.listdir(tmp_path)
