"""Running the ``paper`` sweeps for bench/paper.py and exporting the networks its table reports: where each
study lives, ``python -m sweep run`` with its wall time recorded, ``python -m sweep export`` per row."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.paper_results import Choice, ModelResult
from sweep.errors import SweepError
from sweep.select import TrialRow
from sweep.study import close_study, load_study_readonly

ROOT = Path(__file__).resolve().parent.parent


def study_name(model: str, budget: str = "paper") -> str:
    return f"paper-{model}" if budget == "paper" else f"paper-{model}-{budget}"


def output_dir(storage_dir: Path, model: str, budget: str) -> Path:
    """Where a study's exports go: results/MODEL for the paper budget, results/MODEL/BUDGET else."""
    return storage_dir / model if budget == "paper" else storage_dir / model / budget


def database_path(storage_dir: Path, model: str) -> Path:
    return storage_dir / model / "study.db"


def storage_url(storage_dir: Path, model: str) -> str:
    return f"sqlite:///{database_path(storage_dir, model).resolve()}"


def record_path(storage_dir: Path, model: str) -> Path:
    return storage_dir / model / "sweep.json"


def read_record(storage_dir: Path, model: str) -> dict[str, Any]:
    path = record_path(storage_dir, model)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def machine() -> str:
    """CPUs and GPUs of this machine, for the wall-time note."""
    import torch

    gpus = (
        f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
        if torch.cuda.is_available()
        else "no GPU"
    )
    return f"{os.cpu_count() or 1} CPUs, {gpus} ({platform.machine()})"


def sweep_command(*args: str) -> list[str]:
    """``python -m sweep ARGS`` with this interpreter."""
    return [sys.executable, "-m", "sweep", *args]


def study_exists(storage_dir: Path, model: str, budget: str) -> bool:
    if not database_path(storage_dir, model).is_file():
        return False
    try:
        close_study(load_study_readonly(study_name(model, budget), storage_url(storage_dir, model)))
    except SweepError:
        return False
    return True


def run_sweep(
    model: str,
    storage_dir: Path,
    budget: str,
    trials: int | None,
    data_dir: str | None,
    ray_dir: Path,
    extra: Sequence[str] = (),
) -> int:
    """Run the model's sweep as ``python -m sweep run`` and append its wall time to sweep.json.

    An existing study is resumed: the sweep runs until it holds the asked number of complete trials."""
    database_path(storage_dir, model).parent.mkdir(parents=True, exist_ok=True)
    name, url = study_name(model, budget), storage_url(storage_dir, model)
    command = sweep_command("run", model, "--budget", budget, "--study", name, "--storage", url)
    command += ["--out", str(ray_dir / model), *extra]
    if trials is not None:
        command += ["--trials", str(trials)]
    if data_dir:
        command += ["--data-dir", data_dir]
    if study_exists(storage_dir, model, budget):
        command.append("--resume")
    print("$ " + " ".join(["python", *command[1:]]), flush=True)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    code = subprocess.run(command, cwd=ROOT, check=False).returncode
    wall = time.perf_counter() - started
    record = read_record(storage_dir, model)
    record.setdefault("runs", []).append(
        {
            "study": name,
            "started": started_at,
            "wall_seconds": round(wall, 1),
            "budget": budget,
            "trials": trials,
            "exit_code": code,
            "machine": machine(),
            "command": " ".join(["python", *command[1:]]),
        }
    )
    record_path(storage_dir, model).write_text(json.dumps(record, indent=2) + "\n")
    print(f"{model}: sweep took {duration(wall)} (exit {code})", flush=True)
    return code


def export_choice(
    result: ModelResult, choice: Choice, storage_dir: Path, data_dir: str | None
) -> tuple[str, str]:
    """Export one row's trial with ``sweep export`` to STORAGE_DIR/MODEL/KEY; (folder or "failed: ...",
    what happened to the card's baseline)."""
    assert choice.row is not None
    target = output_dir(storage_dir, result.paper.model, result.budget) / choice.key
    command = sweep_command("export", result.study, "--storage", result.storage, "--out", str(target))
    command += ["--trial", str(choice.row.number), "--force", *(["--data-dir", data_dir] if data_dir else [])]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"export failed: {lines[-1] if lines else f'exit {done.returncode}'}", ""
    return str(target), ensure_card_baseline(target / "card.json", result.baseline)


def export_rows(result: ModelResult, storage_dir: Path, data_dir: str | None) -> None:
    """Export the study's unconstrained baseline to ``baseline`` (what the rows are measured against),
    then each row's trial once; rows that chose the same trial share its folder."""
    done: dict[int, str] = {}
    baseline = [Choice("baseline", "baseline", result.baseline)] if result.baseline else []
    for choice in [*baseline, *result.choices]:
        if choice.row is None:
            continue
        number = choice.row.number
        if number not in done:
            done[number], card = export_choice(result, choice, storage_dir, data_dir)
            note = {"added": "; card.json: baseline added", "none": "; no baseline in the study"}.get(
                card, ""
            )
            print(
                f"export {result.paper.model} {choice.key} (trial {number}): {done[number]}{note}", flush=True
            )
        result.exports[choice.key] = done[number]


def ensure_card_baseline(card_path: Path, baseline: TrialRow | None) -> str:
    """Make the exported card state the study's unconstrained baseline errors (held-out and test).
    Returns "present", "added" or "none" (the study has no baseline)."""
    card = json.loads(card_path.read_text())
    if isinstance(card.get("baseline"), dict) and card["baseline"].get("top1_error") is not None:
        return "present"
    if baseline is None:
        return "none"
    card["baseline"] = {
        "trial": baseline.number,
        "top1_error": baseline.top1_error,
        "test_top1_error": baseline.test_top1_error,
    }
    card_path.write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
    return "added"


def write_dashboard(result: ModelResult, storage_dir: Path) -> Path:
    from sweep.dashboards import build_html

    suffix = "" if result.budget == "paper" else f"-{result.budget}"
    path = storage_dir / result.paper.model / f"dashboard{suffix}.html"
    path.write_text(build_html(result.study, result.storage), encoding="utf-8")
    return path
