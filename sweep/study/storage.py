"""Opening the study database for reading only (``pareto``, ``status``, ``dashboard``, ``export`` and the
checks ``run`` makes before it writes anything).

SQLite is opened with ``mode=ro``, so SQLite itself refuses any write. A database in WAL mode (the mode
``sweep run`` leaves it in) that no connection has open has no ``-wal`` file; a read-only connection
would create ``-wal`` and ``-shm`` files and, unable to check-point, leave them behind. Such a file is
therefore opened ``immutable=1`` (no locks, no side files): nothing else has it open, and a writer that
starts meanwhile writes into its own ``-wal``, not into the main file, until it check-points. Every
connection decides afresh (no pool), so a dashboard that re-reads a study sees a sweep that started
after it. A read that meets "database is locked" is retried a few times after a short pause.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import optuna
import sqlalchemy
from sqlalchemy.pool import NullPool

from sweep.errors import SweepError, first_line
from sweep.errors import quote as quoted

DEFAULT_STORAGE = "sqlite:///sweep.db"
STUDY_NAME_MAX = 512  # Optuna's column: no study has a longer name
_LOCK_RETRIES = 8
_SQLITE_BUSY_TIMEOUT_S = 1.0
_SQLITE_HEADER = b"SQLite format 3\x00"
T = TypeVar("T")


def default_storage() -> str:
    """The storage URL used when none is given: ``$SWEEP_STORAGE``, then ``sqlite:///sweep.db``."""
    return os.environ.get("SWEEP_STORAGE") or DEFAULT_STORAGE


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``, for messages."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def check_read_name(name: str) -> str:
    """Refuse a study name no study can have (longer than Optuna's column) in one short line."""
    if len(name) > STUDY_NAME_MAX:
        raise SweepError(
            f"study name must be at most {STUDY_NAME_MAX} characters (Optuna's limit), got one of "
            f"{len(name)} characters: {quoted(name, 40)}"
        )
    return name


def sqlite_file(url: str) -> Path | None:
    """The absolute file of a SQLite URL (``sqlite:///PATH`` or ``sqlite:///file:PATH?...&uri=true``);
    None for another backend, an in-memory database or a URL that does not parse."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
        if database.startswith("//"):  # file://localhost/PATH or file:///PATH
            database = "/" + database[2:].split("/", 1)[-1]
        if database in ("", ":memory:"):
            return None
    return Path(database).expanduser().resolve()


def _is_locked(err: BaseException) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        if "database is locked" in str(seen) or "database table is locked" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def with_lock_retries(read: Callable[[], T]) -> T:
    """Run ``read``; on SQLite's "database is locked" wait a little and retry (over 10 s in all).

    Any other database error, or a lock that outlasts the retries, becomes a one-line SweepError.
    """
    for attempt in range(_LOCK_RETRIES):
        try:
            return read()
        except (sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError) as err:
            if not _is_locked(err):
                cause = err.__cause__ if isinstance(err, optuna.exceptions.StorageInternalError) else err
                raise SweepError(f"cannot read the study database: {first_line(cause or err)}") from err
            if attempt == _LOCK_RETRIES - 1:
                raise SweepError(
                    "the study database stayed locked by a writer for over 10 s; try again"
                ) from err
            time.sleep(min(0.05 * 2**attempt, 2.0))
    raise AssertionError("unreachable")


def _unopened_wal(path: Path) -> bool:
    """Whether ``path`` is a WAL-mode SQLite file that no connection has open (it has no ``-wal``)."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError:
        return False
    wal = len(header) == 100 and header.startswith(_SQLITE_HEADER) and header[18] == 2
    return wal and not os.path.lexists(f"{path}-wal")


def sqlite_readonly_uri(path: Path) -> str:
    """The ``file:`` URI that opens ``path`` read-only without leaving files beside it (see the module)."""
    query = "mode=ro&immutable=1" if _unopened_wal(path) else "mode=ro"
    return f"file:{quote(str(path))}?{query}"


def readonly_engine(url: str) -> tuple[str, dict[str, Any]]:
    """URL and engine options that open ``url`` for reading only; SweepError when it cannot be read."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception as err:
        raise SweepError(f"storage must be a database URL like {DEFAULT_STORAGE}, got {url!r}") from err
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise SweepError(f"storage {url!r} is an in-memory SQLite database: it holds no studies to read")
        if parsed.query.get("uri"):
            return url, {"connect_args": {"timeout": _SQLITE_BUSY_TIMEOUT_S}, "poolclass": NullPool}
        path = Path(database).expanduser().resolve()
        if not path.is_file():
            raise SweepError(
                f"no study database at {path} (storage {redact(url)}); run a sweep first or pass --storage"
            )

        # Made here, not by SQLAlchemy: it unquotes URL paths, and a '#' or '?' in a file name would
        # then cut the URI short and drop mode=ro.
        def connect() -> sqlite3.Connection:
            uri = sqlite_readonly_uri(path)
            return sqlite3.connect(uri, uri=True, timeout=_SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)

        return f"sqlite:///{path}", {"creator": connect, "poolclass": NullPool}
    if backend == "postgresql":
        args = {"connect_timeout": 10, "options": "-c default_transaction_read_only=on"}
        return _postgres_driver(parsed).render_as_string(hide_password=False), {"connect_args": args}
    return url, {}


def _postgres_driver(parsed: sqlalchemy.engine.URL) -> sqlalchemy.engine.URL:
    """A bare postgresql:// URL with the psycopg2 driver when psycopg (3), SQLAlchemy's default, is absent."""
    if parsed.drivername != "postgresql":
        return parsed
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return parsed.set(drivername="postgresql+psycopg2")
    return parsed


def table_names(url: str) -> set[str]:
    """The tables of the database at ``url``, read read-only; SweepError when it cannot be read."""
    engine_url, engine_kwargs = readonly_engine(url)
    shown = redact(url)
    try:
        engine = sqlalchemy.create_engine(engine_url, **engine_kwargs)
        try:
            return with_lock_retries(lambda: set(sqlalchemy.inspect(engine).get_table_names()))
        finally:
            engine.dispose()
    except SweepError as err:
        cause = err.__cause__
        if cause is not None and not _is_locked(cause):  # the first connection: the storage is not there
            raise SweepError(f"cannot open storage {shown}: {first_line(cause)}") from None
        raise
    except ImportError as err:
        raise SweepError(f"cannot open storage {shown}: missing database driver ({err})") from err
    except Exception as err:
        raise SweepError(f"cannot open storage {shown}: {first_line(err)}") from err


def open_storage_readonly(url: str) -> optuna.storages.RDBStorage:
    """The study database at ``url`` opened for reading only (SQLite ``mode=ro``, PostgreSQL read-only
    transactions); SweepError when it is missing, unreachable or holds no Optuna tables."""
    engine_url, engine_kwargs = readonly_engine(url)
    shown = redact(url)
    if not {"studies", "trials", "version_info"} <= table_names(url):
        raise SweepError(f"storage {shown} holds no Optuna studies (it has no study tables)")
    try:
        return with_lock_retries(
            lambda: optuna.storages.RDBStorage(
                engine_url, engine_kwargs=engine_kwargs, skip_table_creation=True
            )
        )
    except SweepError:
        raise
    except Exception as err:
        raise SweepError(f"cannot read storage {shown}: {first_line(err)}") from err


def load_study_readonly(study: str, storage: str | None = None) -> optuna.Study:
    """Open an existing study for reading.

    ``storage`` defaults to ``$SWEEP_STORAGE``, then ``sqlite:///sweep.db`` in the working directory. A
    missing SQLite file, an unreachable or invalid URL, or a study name that is not there raises
    SweepError (the last one lists the studies that do exist). Nothing is ever written.
    """
    check_read_name(study)
    url = storage or default_storage()
    rdb = open_storage_readonly(url)
    try:
        return with_lock_retries(lambda: optuna.load_study(study_name=study, storage=rdb))
    except KeyError:
        names = sorted(s.study_name for s in with_lock_retries(rdb.get_all_studies))
        rdb.engine.dispose()
        there = f"studies there: {', '.join(names)}" if names else "it holds no studies"
        raise SweepError(f"no study named {quoted(study)} in {redact(url)}; {there}"[:2000]) from None
    except SweepError:
        rdb.engine.dispose()
        raise
    except Exception as err:
        rdb.engine.dispose()
        raise SweepError(f"cannot read study {quoted(study)} from {redact(url)}: {first_line(err)}") from err


def close_study(study: optuna.Study) -> None:
    """Release the database connections a study read with ``load_study_readonly`` holds."""
    # Optuna wraps the RDBStorage in a cache; the engine lives on the storage underneath.
    storage = study._storage
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is not None:
        engine.dispose()
