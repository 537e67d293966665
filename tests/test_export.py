"""``sweep export``: files that rebuild the compact network without pickle, TorchScript in a fresh process,
one-line refusals of bad input, and an end-to-end export of a real study whose trials trained LeNet."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from conftest import ENV_DATA_DIR, SHARED_DATA, mnist_like_arrays, write_idx
from optuna.trial import TrialState, create_trial
from safetensors.torch import load_file

from sweep import load_compact, models
from sweep.cli import main
from sweep.config import TrialConfig
from sweep.errors import SweepError
from sweep.export import save_torchscript, write_compact
from sweep.sparsity import compact, factorised_ranks, masked
from sweep.train import load_checkpoint, train_trial

STUDY = "lenet-mnist"


def compact_lenet() -> tuple[torch.nn.Module, torch.nn.Module]:
    """(dense, compact) LeNet with a third of fc1 dead and fc1 of rank 5 (factorised)."""
    torch.manual_seed(0)
    model = models.create("lenet").eval()
    with torch.no_grad():
        w = model.layer("fc1").weight
        w.copy_(torch.randn(500, 5) @ torch.randn(5, 800) / 800)
    dense = masked(model, {"fc1": torch.arange(500) % 3 != 0})
    return dense, compact(dense, low_rank=["fc1"])


def test_load_compact_rebuilds_the_network_from_json_and_safetensors(tmp_path: Path) -> None:
    dense, small = compact_lenet()
    write_compact(tmp_path, small)

    arch = json.loads((tmp_path / "architecture.json").read_text())
    assert arch["widths"] == {"conv1": 20, "conv2": 50, "fc1": 333} and arch["factorised"] == {"fc1": 5}
    assert all(isinstance(t, torch.Tensor) for t in load_file(tmp_path / "model.safetensors").values())
    loaded = load_compact(str(tmp_path))
    assert factorised_ranks(loaded) == {"fc1": 5}
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))
        torch.testing.assert_close(loaded(x), dense(x), rtol=1e-4, atol=1e-5)


def test_load_compact_refuses_a_folder_without_the_files(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match=r"architecture\.json does not exist"):
        load_compact(str(tmp_path))
    _, small = compact_lenet()
    write_compact(tmp_path, small)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SweepError, match=r"model\.safetensors does not hold"):
        load_compact(str(tmp_path))


def test_torchscript_runs_in_a_fresh_process_with_only_torch(tmp_path: Path) -> None:
    _, small = compact_lenet()
    x = torch.randn(8, 1, 28, 28)
    save_torchscript(small, tmp_path / "model.ts", x[:2])
    torch.save(x, tmp_path / "x.pt")
    script = (
        "import sys, torch\n"
        "model = torch.jit.load(sys.argv[1])\n"
        "x = torch.load(sys.argv[2], weights_only=True)\n"
        "torch.save(model(x).detach(), sys.argv[3])\n"
        "assert 'sweep' not in sys.modules\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            script,
            *(str(tmp_path / f) for f in ("model.ts", "x.pt", "y.pt")),
        ],
        check=True,
        cwd=tmp_path,
        timeout=120,
    )
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "y.pt", weights_only=True), small(x))


# ------------------------------------------------------------------------------------ real studies


def record(study: optuna.Study, metrics: dict[str, Any], checkpoint: str | None) -> None:
    """Record a trained trial as DESIGN.md says a sweep does: objectives (error, neurons), and the final
    metrics as user attributes; metrics without ``done`` are an early-stopped trial's last epoch."""
    attrs = {k: v for k, v in metrics.items() if k != "done"}
    attrs.update(early_stopped="done" not in metrics, checkpoint=checkpoint)
    study.add_trial(create_trial(values=[attrs["top1_error"], attrs["neurons"]], user_attrs=attrs))


def train(cfg: TrialConfig, folder: Path) -> dict[str, Any]:
    return train_trial(cfg, None, str(folder))


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A study on a small MNIST-like set: 0 fine, 1 failed, 2 early-stopped, 3 without checkpoint,
    4 truncated checkpoint, 5 an empty fc1 layer."""
    root = tmp_path_factory.mktemp("tiny")
    for prefix, n, seed in (("train", 160, 0), ("t10k", 40, 1)):
        images, labels = mnist_like_arrays(n, seed)
        write_idx(root / "data" / "mnist" / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / "data" / "mnist" / f"{prefix}-labels-idx1-ubyte.gz", labels)
    base = {"model": "lenet", "data_dir": str(root / "data"), "epochs": 1, "batch_size": 32, "holdout": 20}
    good = train(TrialConfig(penalty="group_lasso", lam=0.05, layers=["fc1"], **base), root / "runs" / "t0")
    empty = train(TrialConfig(penalty="group_lasso", lam=50.0, layers=["fc1"], **base), root / "runs" / "t5")
    assert good["widths"]["fc1"] > 0 and empty["widths"]["fc1"] == 0
    truncated = root / "runs" / "t4"
    truncated.mkdir()
    data = (root / "runs" / "t0" / "checkpoint.pt").read_bytes()
    (truncated / "checkpoint.pt").write_bytes(data[: len(data) // 2])

    storage = f"sqlite:///{root / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name=STUDY, directions=["minimize", "minimize"])
    record(study, good, str(root / "runs" / "t0"))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "NaN loss at epoch 1"}))
    record(study, {k: v for k, v in good.items() if k != "done"}, str(root / "runs" / "t0"))  # early-stopped
    record(study, good, None)
    record(study, good, str(truncated))
    record(study, empty, str(root / "runs" / "t5"))
    return {"storage": storage, "root": root, "good": good}


BAD_INPUT = [
    (["--trial", "42"], "has no trial 42; its trials are 0-5"),
    (["--trial", "1"], r"trial 1 failed \(NaN loss at epoch 1\)"),
    (["--trial", "2"], "stopped early.*--allow-early-stopped"),
    (["--trial", "3"], "trial 3 recorded no checkpoint"),
    (["--trial", "4"], "checkpoint .*t4.* is corrupt"),
    (["--trial", "5"], "layer fc1 has no alive neurons: the network is empty"),
    (["--max-error", "0.001"], "no usable trial has at most 0.001% error"),
    (["--format", "torchscript,pickle"], "--format must be a comma-separated list of torchscript"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(
    tiny_study: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    out = tmp_path / "exported"
    code = main(["export", STUDY, "--storage", tiny_study["storage"], "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("sweep: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert list(tmp_path.iterdir()) == []  # nothing half-written, no temporary folder left


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in root.rglob("*")}


def test_unknown_study_is_refused(tiny_study: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "nope", "--storage", tiny_study["storage"]]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("force", [[], ["--force"]])
@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("folder with a user file", "is not an earlier export (it holds 'keep.txt')"),
        ("export plus a user file", "is not an earlier export (it holds 'notes.txt')"),
        ("file", "is a file or a link, not a folder"),
        ("link to a folder", "is a file or a link, not a folder"),
        ("working directory", "is the working directory or above it"),
        ("parent of the working directory", "is the working directory or above it"),
    ],
)
def test_export_never_deletes_what_it_did_not_write(
    tiny_study: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make: str,
    message: str,
    force: list[str],
) -> None:
    """--out naming a user's folder, a file, a link or "." is refused, --force or not, and nothing changes."""
    root = tmp_path / "user"
    work = root / "work"
    work.mkdir(parents=True)
    (work / "data.bin").write_bytes(b"days of training")
    monkeypatch.chdir(work)
    out = {
        "folder with a user file": root / "exported",
        "export plus a user file": root / "exported",
        "file": root / "model.txt",
        "link to a folder": root / "link",
        "working directory": Path("."),
        "parent of the working directory": Path(".."),
    }[make]
    if make == "file":
        out.write_text("mine")
    elif make == "link to a folder":
        (root / "other").mkdir()
        (root / "other" / "keep.txt").write_text("mine")
        out.symlink_to(root / "other", target_is_directory=True)
    elif make != "working directory" and make != "parent of the working directory":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        if make == "export plus a user file":
            (out / "keep.txt").unlink()
            (out / "card.json").write_text('{"source": {}, "files": []}')
            (out / "notes.txt").write_text("mine")
    before = _tree(root)
    args = ["export", STUDY, "--storage", tiny_study["storage"], "--trial", "0", "--out", str(out), *force]
    assert main([*args, "--format", "safetensors"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert _tree(root) == before  # nothing deleted, nothing replaced, no stray folder


def test_an_earlier_export_is_replaced_only_with_force_and_an_empty_folder_is_used(
    tiny_study: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exported"
    out.mkdir()  # empty: nothing to lose, so no --force needed
    args = ["export", STUDY, "--storage", tiny_study["storage"], "--trial", "0", "--out", str(out)]
    assert main([*args, "--format", "safetensors"]) == 0
    first = _tree(out)
    assert main([*args, "--format", "safetensors"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert _tree(out) == first
    assert main([*args, "--format", "safetensors", "--force"]) == 0
    assert sorted(_tree(out)) == sorted(first) and list(tmp_path.iterdir()) == [out]


def test_early_stopped_trial_exports_when_allowed(
    tiny_study: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exported"
    args = ["export", STUDY, "--storage", tiny_study["storage"], "--trial", "2", "--out", str(out)]
    assert main([*args, "--allow-early-stopped", "--format", "safetensors"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["source"]["trial"] == 2 and card["source"]["early_stopped"] is True
    assert card["widths"]["after"] == tiny_study["good"]["widths"]
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "architecture.json",
        "card.json",
        "model.safetensors",
    ]


# ------------------------------------------------------------------------- end to end, real MNIST


def mnist_root() -> Path:
    for folder in [Path(ENV_DATA_DIR)] if ENV_DATA_DIR else [SHARED_DATA]:
        if (folder / "mnist").is_dir():
            return folder
    pytest.skip(f"real MNIST not found in {SHARED_DATA} or $SWEEP_DATA_DIR")


@pytest.fixture(scope="module")
def mnist_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Trial 0: group lasso on fc1, trial 1: the unconstrained baseline; one epoch on 1,700 images."""
    data_dir = mnist_root()
    root = tmp_path_factory.mktemp("mnist")
    base = {
        "model": "lenet",
        "data_dir": str(data_dir),
        "subset": 2000,
        "holdout": 300,
        "layers": ["fc1"],
        "epochs": 1,
        "lr": 0.05,
    }
    sparse = train(TrialConfig(penalty="group_lasso", lam=0.02, **base), root / "runs" / "t0")
    baseline = train(TrialConfig(penalty="none", lam=0.0, **base), root / "runs" / "t1")
    storage = f"sqlite:///{root / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name=STUDY, directions=["minimize", "minimize"])
    record(study, sparse, str(root / "runs" / "t0"))
    record(study, baseline, str(root / "runs" / "t1"))
    return {"storage": storage, "root": root, "sparse": sparse, "baseline": baseline}


def test_export_of_a_real_trial_matches_its_record(
    mnist_study: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sparse, baseline = mnist_study["sparse"], mnist_study["baseline"]
    assert 0 < sparse["widths"]["fc1"] < 500  # the penalty removed some fc1 neurons, not all
    out = tmp_path / "export" / "lenet"
    args = ["export", STUDY, "--storage", mnist_study["storage"], "--out", str(out)]

    assert main([*args, "--max-error", "60"]) == 0  # the smallest network under 60 %: trial 0

    printed = capsys.readouterr().out
    assert (
        f"exported trial 0 of study '{STUDY}'" in printed
        and f"fc1 500 -> {sparse['widths']['fc1']}" in printed
    )
    card = json.loads((out / "card.json").read_text())
    assert card["source"]["trial"] == 0
    assert card["top1_error"]["test"] == pytest.approx(sparse["test_top1_error"], abs=1e-9)
    assert card["top1_error"]["test_recorded"] == sparse["test_top1_error"]
    assert card["top1_error"]["test_images"] == 2000  # the trial's subset caps the test split too
    assert card["widths"]["before"] == sparse["widths_full"] and card["widths"]["after"] == sparse["widths"]
    assert card["params"]["before"] == sparse["params_full"] and card["params"]["after"] == sparse["params"]
    assert card["flops"]["before"] == sparse["flops_full"] and card["flops"]["after"] == sparse["flops"]
    assert card["baseline"] == {
        "trial": 1,
        "top1_error": baseline["top1_error"],
        "test_top1_error": baseline["test_top1_error"],
    }
    assert card["input"]["mean"] == [0.1307] and card["input"]["classes"][:2] == ["0", "1"]
    assert card["training"]["penalty"] == "group_lasso" and card["training"]["lam"] == 0.02
    for batch in ("batch1", "batch64"):
        assert card["latency_ms"][batch]["dense"] > 0 and card["latency_ms"][batch]["compact"] > 0
    assert card["equivalence"]["max_relative_logit_difference"] <= 1e-5
    assert {"model.safetensors", "architecture.json", "model.ts", "card.json", "README.md"} <= set(
        os.listdir(out)
    )
    assert list((tmp_path / "export").iterdir()) == [out]  # no temporary folder left beside it

    # The files rebuild the network without pickle and give the trained network's logits.
    dense = load_checkpoint(mnist_study["root"] / "runs" / "t0").model  # torch.load(weights_only=True)
    loaded = load_compact(str(out))
    assert sum(p.numel() for p in loaded.parameters()) == sparse["params"]
    x = torch.randn(32, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), dense(x), rtol=1e-4, atol=1e-4)
    if "onnx" in card["files"] or (out / "model.onnx").exists():
        import onnx

        onnx.checker.check_model(onnx.load(str(out / "model.onnx")))

    # An existing folder is replaced only with --force, and then wholly. No choice given: the knee.
    assert main([*args, "--trial", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--force", "--format", "safetensors"]) == 0
    card = json.loads((out / "card.json").read_text())
    chosen = [sparse, baseline][card["source"]["trial"]]
    assert card["top1_error"]["test"] == pytest.approx(chosen["test_top1_error"], abs=1e-9)
    assert not (out / "model.ts").exists() and list((tmp_path / "export").iterdir()) == [out]


@pytest.mark.parametrize("mount", ["ro,size=1m", "size=64k"])
def test_export_onto_a_read_only_or_full_disk_is_one_line_and_leaves_nothing(
    tiny_study: dict[str, Any],
    tmpfs: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    mount: str,
) -> None:
    disk = tmpfs(mount)
    out = disk / "exports" / "lenet"
    args = ["export", STUDY, "--storage", tiny_study["storage"], "--trial", "0", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    expected = "is not a folder this user can write" if mount.startswith("ro") else "No space left"
    assert expected in err, err
    assert list(disk.iterdir()) == []
