"""What a trial's Ray worker process imports: each module it loads costs every worker that time again
before its first trial starts (bench/sweep_overhead.py measures the whole of it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ray import cloudpickle

from sweep.search import make_trainable
from sweep.space import load_space
from sweep.train import torchvision_version, versions


def _modules_after(code: str, tmp_path: Path, payload: bytes | None = None) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` (``payload``: bytes in a file)."""
    if payload is not None:
        (tmp_path / "payload").write_bytes(payload)
    script = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


def test_the_trainable_unpickles_without_the_study_modules(tmp_path: Path) -> None:
    """Ray ships the trainable by value; it must not drag Optuna and SQLAlchemy into every worker."""
    space = load_space("lenet")
    budget = space.budget("smoke")
    trainable = make_trainable(space.for_budget(budget), budget, {"seed": 0})
    loaded = _modules_after(
        "from ray import cloudpickle\ncloudpickle.loads(open('payload', 'rb').read())",
        tmp_path,
        cloudpickle.dumps(trainable),
    )
    assert "sweep.config.trial" in loaded
    assert not loaded & {"optuna", "sqlalchemy", "sweep.study.create", "sweep.search.driver"}


def test_training_imports_no_torchvision(tmp_path: Path) -> None:
    loaded = _modules_after("import sweep.train.trial\nsweep.train.versions()", tmp_path)
    assert "torch" in loaded and "torchvision" not in loaded


def test_the_recorded_torchvision_version_is_its_own() -> None:
    import torchvision

    torchvision_version.cache_clear()
    assert torchvision_version() == torchvision.__version__ == versions()["torchvision"]
