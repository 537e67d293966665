"""The wheel as a user gets it: ``pip wheel .`` builds it, it is unpacked outside the checkout (on
``PYTHONPATH``, beside the environment's own torch, Optuna and Ray), and ``sweep run lenet --budget demo``
runs from an empty folder: the shipped search spaces are package data, found from anywhere."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # what the wheel is built from, copied so the build leaves the checkout alone
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(CHECKOUT / name, source / name)
    shutil.copytree(CHECKOUT / "sweep", source / "sweep", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=out,
    )
    (wheel,) = out.glob("sweep-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    assert "sweep/space/shipped/lenet.yaml" in names
    assert not any(n.startswith(("dashboards/", "tests/", "bench/")) for n in names), names
    return site


def _env(site: Path, data_dir: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "SWEEP_STORAGE"}}
    env.update(PYTHONPATH=str(site), SWEEP_OFFLINE="1")
    if data_dir:
        env["SWEEP_DATA_DIR"] = data_dir
    return env


def test_the_wheel_knows_its_version_and_its_spaces(unpacked_wheel: Path, tmp_path: Path) -> None:
    env = _env(unpacked_wheel, None)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sweep, sweep.space as s; print(sweep.__file__); print(s.space_path('vgg13'))",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    module, space = done.stdout.split()
    assert Path(module).is_relative_to(unpacked_wheel) and Path(space).is_relative_to(unpacked_wheel)
    version = subprocess.run(
        [sys.executable, "-m", "sweep", "--version"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert version.returncode == 0 and version.stdout.startswith("sweep "), version


def test_sweep_run_lenet_demo_from_an_empty_folder(unpacked_wheel: Path, tmp_path: Path) -> None:
    data_dir = os.environ.get("SWEEP_DATA_DIR")
    if not data_dir or not (Path(data_dir) / "mnist").is_dir():
        pytest.skip("needs the real MNIST under $SWEEP_DATA_DIR")
    done = subprocess.run(
        [sys.executable, "-m", "sweep", "run", "lenet", "--budget", "demo", "--trials", "2"],
        cwd=tmp_path,
        env=_env(unpacked_wheel, data_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    with sqlite3.connect(tmp_path / "sweep.db") as db:
        states = [s for (s,) in db.execute("SELECT state FROM trials")]
    assert states == ["COMPLETE", "COMPLETE"], states
