"""What bench/paper.py and bench/paper_run.py share: one model's result, our rows, and their numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.paper_floors import FloorResult
from sweep.measure import PaperResult
from sweep.select import TrialRow

__all__ = ["Choice", "Measured", "ModelResult", "PaperResult"]


@dataclass(frozen=True)
class Choice:
    """One of our rows: which trial, and why (or why there is none)."""

    key: str  # folder name of its export: paper-match, within-0.1, within-0.5
    label: str
    row: TrialRow | None
    missing: str = ""  # why no trial qualifies


@dataclass(frozen=True)
class Measured:
    """The table's numbers for one trial of ours."""

    trial: int
    fc1_before: int | None
    fc1_after: int | None
    fc1_removed: float | None  # percent
    units_removed: float | None  # percent, over every layer that can lose units
    params_removed: float | None  # percent
    memory_saved_mb: float | None  # float32 MiB
    test_error: float | None
    holdout_error: float | None


@dataclass
class ModelResult:
    """What the table shows for one model: the paper's row, our baseline and our chosen rows."""

    paper: PaperResult
    study: str
    storage: str
    budget: str = "paper"
    epochs: int | None = None  # per trial, as the study's fingerprint records it
    available: bool = False
    note: str = ""  # why there are no rows of ours
    trials: int = 0  # complete, fully trained
    baseline: TrialRow | None = None
    choices: list[Choice] = field(default_factory=list)
    wall_seconds: float | None = None
    machine: str = ""
    exports: dict[str, str] = field(default_factory=dict)  # choice key -> folder, or "failed: why"
    floors: list[FloorResult] = field(default_factory=list)  # bench/paper_floors.py
