"""Writing a file whole or not at all: a temporary file beside it, flushed, then renamed over it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from sweep.errors import SweepError


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
