"""The study database and output paths are trust boundaries (issue 27): sweep writes only what is its own.

- No output path may be the study database (by resolved path, link or other name) or an existing file
  that sweep did not write; the dashboard replaces only a page carrying sweep's generator mark.
- ``sweep run`` refuses, before anything is written, another program's database, a read-only file, a
  study it did not create (no or a broken fingerprint) and one of another model, dataset, objectives
  or directions.
- Read-only commands leave the database file and its folder exactly as they were: no -wal, -shm or
  journal files, also on a WAL-mode database as ``sweep run`` leaves it.
- A trial attribute of the wrong type or range is reported in one warning line and skipped.
- A very long study name is one short line.

Every refusal: exit 2, exactly one line on stderr starting ``sweep: error:``, no traceback, and the
files below the test's folder unchanged byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from sample_study import STUDY, make_study

from sweep.cli import main
from sweep.errors import SweepError
from sweep.files import GENERATOR_META
from sweep.space import load_space
from sweep.study import create_or_resume, open_storage, optuna_tables

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and folder below ``folder`` (SQLite's -wal and -shm too): size, mtime, content hash."""
    seen: dict[str, tuple[int, int, str]] = {}

    def walk() -> Iterator[Path]:
        yield folder
        yield from folder.rglob("*")

    for path in walk():
        st = path.lstat()
        regular = path.is_file() and not path.is_symlink()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if regular else ""
        seen[str(path)] = (st.st_size, st.st_mtime_ns, digest)
    return seen


def _refused(args: list[str], capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    """Run the CLI, expect the one-line refusal; returns the line."""
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("sweep: error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in out + err
    assert len(err) < 700, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def _journal_mode(path: Path) -> str:
    """ "wal" or "delete", from the file's header (opening it, even read-only, could leave -wal files)."""
    return "wal" if path.read_bytes()[18] == 2 else "delete"


def _sweep_study(path: Path, name: str = "lenet-mnist", model: str = "lenet") -> str:
    """A study as ``sweep run`` leaves it: WAL mode, its fingerprint recorded, a finished trial, every
    connection closed (so no -wal or -shm file)."""
    url = f"sqlite:///{path}"
    storage = open_storage(url)
    opened = create_or_resume(storage, name, load_space(model).fingerprint("smoke"), {}, resume=False)
    opened.study.add_trial(
        optuna.trial.create_trial(
            values=[1.0, 83.0],
            params={"penalty": "l1", "lam": 1e-3},
            distributions={
                "penalty": optuna.distributions.CategoricalDistribution(["none", "l1"]),
                "lam": optuna.distributions.FloatDistribution(1e-6, 1.0, log=True),
            },
            user_attrs={"widths": {"conv1": 20, "conv2": 50, "fc1": 13}, "early_stopped": False},
        )
    )
    storage.engine.dispose()
    assert _journal_mode(path) == "wal"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    return url


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The test's folder as working directory, offline, without $SWEEP_STORAGE."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SWEEP_OFFLINE", "1")
    monkeypatch.delenv("SWEEP_STORAGE", raising=False)
    return tmp_path


def _run_args(url: str, *more: str, model: str = "lenet") -> list[str]:
    return ["run", model, "--storage", url, "--trials", "1", "--out", "runs", *more]


# ---------------------------------------------------------------------------------- never destroy


@pytest.mark.parametrize("how", ["absolute", "relative", "uri", "symlink", "hardlink", "wal"])
def test_dashboard_out_is_never_the_study_database(
    how: str, quiet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = quiet / "study.db"
    make_study(db)
    storage = {"relative": "sqlite:///study.db", "uri": f"sqlite:///file:{db}?mode=ro&uri=true"}.get(
        how, f"sqlite:///{db}"
    )
    out = {"absolute": str(db), "relative": "study.db", "uri": str(db), "wal": "study.db-wal"}.get(how, "")
    if how == "symlink":
        (quiet / "link.html").symlink_to(db)
        out = "link.html"
    if how == "hardlink":
        os.link(db, quiet / "same.html")
        out = "same.html"
    before = _snapshot(quiet)
    _refused(["dashboard", STUDY, "--storage", storage, "--out", out], capsys, "--out", "study database")
    assert _snapshot(quiet) == before


def test_dashboard_replaces_only_its_own_page(quiet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = make_study(quiet / "study.db")
    notes = quiet / "notes.html"
    notes.write_text("<!DOCTYPE html><p>my notes</p>")
    before = _snapshot(quiet)
    _refused(
        ["dashboard", STUDY, "--storage", url, "--out", "notes.html"],
        capsys,
        "--out notes.html",
        "exists and was not written by sweep",
    )
    assert _snapshot(quiet) == before

    fifo = quiet / "pipe.html"
    os.mkfifo(fifo)  # reading it to look for the mark would hang
    _refused(["dashboard", STUDY, "--storage", url, "--out", "pipe.html"], capsys, "not a regular file")
    fifo.unlink()

    assert main(["dashboard", STUDY, "--storage", url, "--out", "page.html"]) == 0
    page = (quiet / "page.html").read_text()
    assert GENERATOR_META in page.split("</head>")[0]
    (quiet / "page.html").write_text(page.replace("7 complete", "an older read"))
    assert main(["dashboard", STUDY, "--storage", url, "--out", "page.html"]) == 0, "its own page: replaced"
    assert "7 complete" in (quiet / "page.html").read_text()
    assert main(["dashboard", STUDY, "--storage", url]) == 0  # the default STUDY.html, new
    assert main(["dashboard", STUDY, "--storage", url]) == 0  # and again over its own page
    assert notes.read_text() == "<!DOCTYPE html><p>my notes</p>"
    capsys.readouterr()


# ---------------------------------------------------------------------------- never take over


def test_the_optuna_tables_come_from_optunas_models() -> None:
    tables = optuna_tables()
    assert {"studies", "trials", "trial_values", "study_directions", "version_info"} <= tables
    assert "users" not in tables


def test_run_refuses_another_programs_database_before_writing(
    quiet: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = quiet / "otherapp.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = _snapshot(quiet)
    _refused(_run_args("sqlite:///otherapp.db"), capsys, "holds tables that are not Optuna's (users)")
    assert _snapshot(quiet) == before
    assert _journal_mode(db) == "delete", "not switched to WAL"

    # The refusal comes before Optuna's storage is made (it creates the tables) or WAL mode is set.
    def no_storage(*args: object, **kwargs: object) -> None:
        raise AssertionError("RDBStorage made before the check")

    monkeypatch.setattr(optuna.storages, "RDBStorage", no_storage)
    with pytest.raises(SweepError, match="not Optuna's"):
        open_storage(f"sqlite:///{db}")
    assert _snapshot(quiet) == before


def test_run_refuses_a_read_only_database(quiet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = quiet / "sweep.db"
    url = _sweep_study(db)
    db.chmod(0o444)
    try:
        before = _snapshot(quiet)
        _refused(_run_args(url, "--study", "another"), capsys, "is read-only", "--storage")
        assert _snapshot(quiet) == before
    finally:
        db.chmod(0o644)


def _plain_study(db: Path) -> str:
    return make_study(db)  # plain Optuna: no fingerprint


def _broken_fingerprint(db: Path) -> str:
    url = _sweep_study(db)
    storage = optuna.storages.RDBStorage(url)
    optuna.load_study(study_name="lenet-mnist", storage=storage).set_user_attr(
        "fingerprint", ["not", "a", "map"]
    )
    storage.engine.dispose()  # the last connection: SQLite folds the -wal back and removes it
    return url


def _maximising(db: Path) -> str:
    url = f"sqlite:///{db}"
    fingerprint = load_space("lenet").fingerprint("smoke")
    study = optuna.create_study(storage=url, study_name="lenet-mnist", directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["top1_error", "neurons"])
    study.set_user_attr("fingerprint", fingerprint)
    return url


FOREIGN = [
    ("plain", _plain_study, "lenet", False, ["was not created by `sweep run`"]),
    ("plain-resume", _plain_study, "lenet", True, ["was not created by `sweep run`"]),
    ("broken-resume", _broken_fingerprint, "lenet", True, ["broken fingerprint", "not a mapping"]),
    (
        "other-model-resume",
        _sweep_study,
        "cifar10_quick",
        True,
        ["model 'lenet', this run 'cifar10_quick'", "dataset 'mnist', this run 'cifar10'"],
    ),
    ("maximise-resume", _maximising, "lenet", True, ["directions maximize, minimize"]),
]


@pytest.mark.parametrize(
    ("make", "model", "resume", "fragments"), [f[1:] for f in FOREIGN], ids=[f[0] for f in FOREIGN]
)
def test_run_refuses_a_study_it_did_not_create_or_of_another_kind(
    make, model: str, resume: bool, fragments: list[str], quiet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = quiet / "study.db"
    url = make(db)
    mode = _journal_mode(db)
    before = _snapshot(quiet)
    args = _run_args(url, "--study", "lenet-mnist", *(["--resume"] if resume else []), model=model)
    _refused(args, capsys, "study 'lenet-mnist'", *fragments)
    assert _snapshot(quiet) == before
    assert _journal_mode(db) == mode


# ---------------------------------------------------------------------------- read-only commands


READERS = [
    ["pareto", "lenet-mnist"],
    ["status"],
    ["status", "--study", "lenet-mnist"],
    ["dashboard", "lenet-mnist", "--out", "{OUT}/d.html"],
]


@pytest.mark.parametrize("wal", [True, False], ids=["wal-as-run-leaves-it", "rollback-journal"])
def test_reading_commands_leave_the_database_and_its_folder_as_they_were(
    wal: bool, quiet: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = quiet / "db"
    folder.mkdir()
    db = folder / "study.db"
    url = _sweep_study(db) if wal else make_study(db)
    out = tmp_path_factory.mktemp("pages")
    before = _snapshot(folder)
    for args in READERS:
        assert main([*(a.replace("{OUT}", str(out)) for a in args), "--storage", url]) == 0, args
        assert _snapshot(folder) == before, f"{args} left or changed a file"
    # export reads the study too (here it stops at the trial it is asked for, which does not exist)
    _refused(["export", "lenet-mnist", "--storage", url, "--trial", "99"], capsys, "has no trial 99")
    assert _snapshot(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == ["study.db"]
    assert _journal_mode(db) == ("wal" if wal else "delete")


def test_a_wal_database_with_a_live_writer_is_read_with_its_newest_trials(
    quiet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = quiet / "study.db"
    url = _sweep_study(db)
    writer = sqlite3.connect(db)  # a sweep at work: its -wal holds trials the main file does not yet
    try:
        writer.execute("BEGIN")
        writer.execute("UPDATE studies SET study_name = study_name")
        writer.execute("COMMIT")
        assert (quiet / "study.db-wal").exists()
        optuna.load_study(study_name="lenet-mnist", storage=url).add_trial(
            optuna.trial.create_trial(values=[0.9, 90.0])
        )
        assert main(["status", "--storage", url, "--study", "lenet-mnist"]) == 0
        assert "2 complete" in capsys.readouterr().out
    finally:
        writer.close()


# -------------------------------------------------------------------- attributes checked on the way in


BAD_ATTRS = {
    "widths": "abc",
    "widths_full": {"fc1": -3},
    "params": "many",
    "flops": float("inf"),
    "epochs": "eleven",
    "early_stopped": "yes",
    "checkpoint": 5,
    "config": ["lenet"],
    "dataset": {"name": "mnist"},
    "history": "none",
    "empty_layers": "fc1",
    "fail_reason": 3,
}


def test_bad_attributes_are_reported_once_each_and_the_rest_goes_on(
    quiet: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    db = quiet / "study.db"
    url = make_study(db)
    study = optuna.load_study(study_name=STUDY, storage=url)
    study.add_trial(
        optuna.trial.create_trial(
            values=[1.3, 77.0], user_attrs={k: v for k, v in BAD_ATTRS.items() if k != "config"}
        )
    )
    study.add_trial(
        optuna.trial.create_trial(
            values=[150.0, 60.0], user_attrs={"config": {"model": ["x"], "penalty": 7, "lam": "big"}}
        )
    )
    before = _snapshot(quiet)
    for args in (
        ["pareto", STUDY, "--storage", url],
        ["status", "--storage", url, "--study", STUDY],
        ["status", "--storage", url],
        ["dashboard", STUDY, "--storage", url, "--out", str(tmp_path_factory.mktemp("pages") / "d.html")],
    ):
        code = main(args)
        out, err = capsys.readouterr()
        assert code == 0, (args, err)
        assert "Traceback" not in out + err
        if "--study" not in args and args[0] == "status":
            continue  # the list of studies reads no trial attributes
        lines = err.splitlines()
        assert all(line.startswith("sweep: warning: trial ") for line in lines), lines
        for key in ("widths", "widths_full", "params", "flops", "epochs", "early_stopped", "checkpoint"):
            assert sum(f"trial 9: attribute {key} is not" in line for line in lines) == 1, (key, lines)
        assert any("trial 10: attribute config.model is not a model name" in line for line in lines), lines
        assert any("trial 10: attribute config.lam is not a finite number >= 0" in line for line in lines)
        assert any("trial 10: objective top1_error is not a percentage" in line for line in lines)
        assert not any("trial 1:" in line for line in lines), "good trials are not reported"
        if args[0] == "pareto":
            assert "6 of 9 complete trials on the front" in out
    assert _snapshot(quiet) == before


def test_a_malformed_objectives_attribute_is_reported_and_passed_over(
    quiet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_study(quiet / "study.db")
    optuna.load_study(study_name=STUDY, storage=url).set_user_attr("objectives", 5)
    for args in (["pareto", STUDY], ["status"], ["status", "--study", STUDY]):
        assert main([*args, "--storage", url]) == 0, args
        out, err = capsys.readouterr()
        assert "study attribute objectives is not a list of 2 objective names (got 5)" in err, (args, err)
        assert "Traceback" not in out + err


# ------------------------------------------------------------------------------------ long names


LONG = "s" * 5000


@pytest.mark.parametrize(
    "args",
    [
        ["run", "lenet", "--study", LONG, "--trials", "1"],
        ["status", "--study", LONG],
        ["pareto", LONG],
        ["dashboard", LONG],
        ["export", LONG],
    ],
    ids=["run", "status", "pareto", "dashboard", "export"],
)
def test_a_very_long_study_name_is_one_short_line(
    args: list[str], quiet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_study(quiet / "study.db")
    before = _snapshot(quiet)
    _refused([*args, "--storage", url], capsys, "study name must be", "5000 characters")
    assert _snapshot(quiet) == before
