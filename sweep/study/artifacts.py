"""The study's baseline checkpoint, kept with the study.

Every trial of an ``init: baseline`` study fine-tunes from the baseline's final checkpoint, which Ray
writes under ``--out``. So that a trial can be re-run (``sweep train --from STUDY:TRIAL``) and a study
resumed once that folder is gone, the driver copies the checkpoint into an Optuna artifact store of the
study (``optuna.artifacts``): a ``FileSystemArtifactStore`` in ``<database>.artifacts/`` beside a SQLite
file (it moves with the database), in ``<out>/study-artifacts/`` for a database server. The study records
the artifact (its id and file name ``baseline-checkpoint.pt``) as Optuna does; the file is a checkpoint
like any other, read with ``weights_only=True``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact

from sweep.errors import SweepError, first_line
from sweep.study.storage import sqlite_file

BASELINE_FILE = "baseline-checkpoint.pt"


def artifact_folder(storage_url: str, out: str | None) -> Path | None:
    """Where the study's artifacts live: beside a SQLite database, else under ``out`` (None: nowhere, an
    in-memory database)."""
    db = sqlite_file(storage_url)
    if db is not None:
        return db.parent / f"{db.name}.artifacts"
    if storage_url.startswith("sqlite") or not out:
        return None
    return Path(out).expanduser().resolve() / "study-artifacts"


def kept_baseline(study: optuna.Study, storage_url: str, out: str | None = None) -> Path | None:
    """The study's kept baseline checkpoint, or None when it has none (or its file is gone)."""
    folder = artifact_folder(storage_url, out)
    if folder is None:
        return None
    for meta in get_all_artifact_meta(study):
        if meta.filename == BASELINE_FILE and (folder / meta.artifact_id).is_file():
            return folder / meta.artifact_id
    return None


def keep_baseline(study: optuna.Study, storage_url: str, out: str, checkpoint: str | Path) -> Path | None:
    """Copy the baseline's checkpoint into the study's artifact store once; returns the kept file. Where
    there is nowhere to keep it (an in-memory database), None; a copy that fails is one SweepError."""
    have = kept_baseline(study, storage_url, out)
    if have is not None:
        return have
    folder = artifact_folder(storage_url, out)
    if folder is None:
        return None
    source = Path(checkpoint)
    if source.is_dir():
        source = source / "checkpoint.pt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:  # the artifact takes the copy's file name
            named = Path(tmp) / BASELINE_FILE
            shutil.copyfile(source, named)
            artifact_id = upload_artifact(
                artifact_store=FileSystemArtifactStore(str(folder)),
                file_path=str(named),
                study_or_trial=study,
                mimetype="application/octet-stream",
            )
    except OSError as err:
        raise SweepError(f"cannot keep the baseline checkpoint in {folder}: {first_line(err)}") from None
    return folder / artifact_id
