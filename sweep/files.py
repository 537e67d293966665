"""Writing a file whole or not at all: a temporary file beside it, flushed, then renamed over it; and
which existing files sweep may replace (only its own outputs, never the study database)."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from sweep._version import __version__
from sweep.errors import SweepError

# The mark an HTML page sweep writes carries in its <head>: a page that has it may be written again.
GENERATOR_META = f"<meta name='generator' content='sweep {__version__}'>"
_GENERATOR = re.compile(rb"<meta\s+name=['\"]generator['\"]\s+content=['\"]sweep[\s'\"]", re.IGNORECASE)
_HEAD_BYTES = 16384  # the mark is in the page's head, before the title


def atomic_write_bytes(path: str | Path, data: bytes, what: str = "file") -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half of it.

    A full disk, a read-only folder or a path that is a folder ends in one SweepError naming ``what`` and
    the path; the temporary file is removed and an existing file at ``path`` is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise SweepError(f"cannot write the {what} to {path}: it is a folder")
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; give the usual mode
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise SweepError(f"cannot write the {what} to {path}: {err.strerror or err}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str, what: str = "file") -> None:
    atomic_write_bytes(path, text.encode("utf-8"), what)


def check_writable_folder(path: str | Path, flag: str) -> None:
    """Refuse, before any work, a ``flag`` folder that this process could not create or write into."""
    given = Path(path).expanduser().absolute()
    existing = next(p for p in (given, *given.parents) if p.exists())
    if not existing.is_dir():
        raise SweepError(f"{flag} {path}: {existing} is a file, not a folder; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SweepError(f"{flag} {path}: {existing} is not writable; give a folder this user can write")


def written_by_sweep(path: str | Path) -> bool:
    """Whether the regular file ``path`` is an HTML page sweep wrote (its head carries GENERATOR_META)."""
    try:
        with open(path, "rb") as f:
            return bool(_GENERATOR.search(f.read(_HEAD_BYTES)))
    except OSError:
        return False


def check_replaceable(path: str | Path, flag: str, databases: Iterable[Path] = ()) -> Path:
    """The file to write for ``flag PATH``, refused in one SweepError when writing it would destroy what
    is not sweep's: one of ``databases`` (the study database, or its -wal, -shm or -journal file, by
    resolved path or as the same file under another name) or any existing file that sweep did not write.
    A folder is returned as given (the writer then says so); a link is followed to the file it names."""
    given = Path(path).expanduser()
    try:
        target = given.resolve()
        for database in databases:
            database = database.resolve()
            family = [database, *(Path(f"{database}{end}") for end in ("-wal", "-shm", "-journal"))]
            if target in family or (
                target.exists() and database.exists() and os.path.samefile(target, database)
            ):
                raise SweepError(
                    f"{flag} {path} is the study database {database}: writing there would destroy the study; "
                    "give another file, e.g. STUDY.html"
                )
        if not target.exists():
            if given.is_symlink():
                raise SweepError(f"{flag} {path} is a link to {target}, which does not exist; give a file")
            return target
        if target.is_dir():
            return given
        mode = target.stat().st_mode
    except OSError as err:
        raise SweepError(f"{flag} {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        raise SweepError(
            f"{flag} {path} exists and is not a regular file; give the path of a new file or of a page "
            "sweep wrote"
        )
    if not written_by_sweep(target):
        raise SweepError(
            f"{flag} {path}: the file exists and was not written by sweep (it has no sweep generator mark), "
            "so it is left alone; give a new file, or move that one away first"
        )
    return target
