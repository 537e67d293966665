"""Opening the study database: ``open_storage(url, readonly=...)``, the one opener for writing (``run``)
and for reading only (``pareto``, ``status``, ``dashboard``, ``export`` and the checks ``run`` makes
before it writes anything). One busy timeout, one PostgreSQL driver rule, one set of engine settings.

Writing: SQLite runs in WAL mode and waits ``SQLITE_BUSY_TIMEOUT_S`` for another writer's lock, so a
dashboard reading it never blocks the sweep writing it; nothing is written before
``check_storage_for_writing`` has found the database one sweep may write.

Reading: SQLite is opened with ``mode=ro``, so SQLite itself refuses any write. A database in WAL mode
(the mode ``sweep run`` leaves it in) that no connection has open has no ``-wal`` file; a read-only
connection would create ``-wal`` and ``-shm`` files and, unable to check-point, leave them behind. Such a
file is therefore opened ``immutable=1`` (no locks, no side files): nothing else has it open, and a writer
that starts meanwhile writes into its own ``-wal``, not into the main file, until it check-points. Every
connection decides afresh (no pool), so a dashboard that re-reads a study sees a sweep that started
after it. A reader does not sit in SQLite's busy wait: a read that meets "database is locked" is retried
a few times after a short pause (``with_lock_retries``), so a dashboard answers within seconds.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import optuna
import sqlalchemy
from sqlalchemy.pool import NullPool

from sweep.errors import SweepError, first_line
from sweep.errors import quote as quoted
from sweep.study import _optuna
from sweep.study.drivers import HEARTBEAT_GRACE_S, HEARTBEAT_INTERVAL_S

STORAGE_ENV = "SWEEP_STORAGE"
DEFAULT_STORAGE = "sqlite:///sweep.db"
STUDY_NAME_MAX = 512  # Optuna's column: no study has a longer name
SQLITE_BUSY_TIMEOUT_S = 60.0  # a writer waits this long for another writer instead of failing
CONNECT_TIMEOUT_S = 10  # seconds to reach a database server
# A reader's connection waits a second at most, then with_lock_retries pauses and tries again: 8 tries,
# over 10 s in all, and a dashboard request never hangs a whole busy timeout.
_READ_ATTEMPT_S = 1.0
_LOCK_RETRIES = 8
_SQLITE_HEADER = b"SQLite format 3\x00"
# The tables without which a database holds no Optuna study.
CORE_TABLES = frozenset({"studies", "trials", "version_info"})
T = TypeVar("T")


def default_storage() -> str:
    """The storage URL used when none is given: ``$SWEEP_STORAGE``, then ``sqlite:///sweep.db``."""
    return os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def resolve_storage(url: str | None) -> str:
    """The storage URL: ``url``, else ``$SWEEP_STORAGE``, else ``sqlite:///sweep.db`` in the working
    directory. A relative SQLite path is made absolute, so every process means the same file."""
    url = url or default_storage()
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise SweepError(
            f"storage must be a database URL like {DEFAULT_STORAGE} or "
            f"postgresql://USER:PASSWORD@HOST:PORT/DB, got {url!r}"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database).expanduser()
        if not path.is_absolute():
            return parsed.set(database=str(Path.cwd() / path)).render_as_string(hide_password=False)
    return url


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


def optuna_tables() -> frozenset[str]:
    """The tables Optuna's RDBStorage creates (its models' metadata), plus Alembic's version table."""
    return _optuna.table_names() | {"alembic_version"}


def check_storage_for_writing(url: str) -> set[str]:
    """Before anything is written: an existing SQLite file must be writable, in a writable folder, and
    every table of the database must be Optuna's. Returns the tables there are (none for a new file)."""
    shown = redact(url)
    path = sqlite_file(url)
    if path is not None:
        if not path.exists():
            return set()
        if not path.is_file():
            raise SweepError(
                f"storage {shown}: {path} is not a database file; give a file, e.g. sqlite:///sweep.db"
            )
        mode = path.stat().st_mode
        if not os.access(path, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise SweepError(
                f"storage {shown}: the database file {path} is read-only ({stat.filemode(mode)}); "
                "`sweep run` writes its trials there: make it writable or give another --storage"
            )
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise SweepError(
                f"storage {shown}: the folder {path.parent} is not writable, and SQLite keeps its journal "
                "beside the database; give a --storage in a folder this user can write"
            )
    tables = table_names(url)
    foreign = sorted(tables - optuna_tables())
    if foreign:
        more = f" and {len(foreign) - 6} more" if len(foreign) > 6 else ""
        raise SweepError(
            f"storage {shown} holds tables that are not Optuna's ({', '.join(foreign[:6])}{more}): it is "
            "another program's database, and sweep writes only into a database of its own studies; give "
            "another --storage"
        )
    return tables


# ------------------------------------------------------------------------------------ engine settings


def _postgres(parsed: sqlalchemy.engine.URL, readonly: bool) -> tuple[str, dict[str, Any]]:
    """The one PostgreSQL rule, for writing and reading alike: a bare ``postgresql://`` goes through
    psycopg2 (the ``postgres`` extra, what sweep is tested with; SQLAlchemy's default, psycopg 3, only
    where psycopg2 is not installed), connections are checked before use and give up after
    ``CONNECT_TIMEOUT_S``; a reader's transactions are read-only."""
    if parsed.drivername == "postgresql":
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            pass
        else:
            parsed = parsed.set(drivername="postgresql+psycopg2")
    args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
    if readonly:
        args["options"] = "-c default_transaction_read_only=on"
    return parsed.render_as_string(hide_password=False), {"pool_pre_ping": True, "connect_args": args}


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
            return url, {"connect_args": {"timeout": _READ_ATTEMPT_S}, "poolclass": NullPool}
        path = Path(database).expanduser().resolve()
        if not path.is_file():
            raise SweepError(
                f"no study database at {path} (storage {redact(url)}); run a sweep first or pass --storage"
            )

        # Made here, not by SQLAlchemy: it unquotes URL paths, and a '#' or '?' in a file name would
        # then cut the URI short and drop mode=ro.
        def connect() -> sqlite3.Connection:
            uri = sqlite_readonly_uri(path)
            return sqlite3.connect(uri, uri=True, timeout=_READ_ATTEMPT_S, check_same_thread=False)

        return f"sqlite:///{path}", {"creator": connect, "poolclass": NullPool}
    if backend == "postgresql":
        return _postgres(parsed, readonly=True)
    return url, {}


def _writing_engine(url: str, create: bool) -> tuple[str, dict[str, Any]]:
    """URL and engine options that open the (resolved) ``url`` for writing; SweepError for an in-memory
    database, a missing folder or (``create=False``) a missing file."""
    shown = redact(url)
    parsed = sqlalchemy.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise SweepError(f"storage {shown} is in memory; a sweep needs a file, e.g. {DEFAULT_STORAGE}")
        path = Path(database)
        if not path.parent.is_dir():
            raise SweepError(f"cannot open storage {shown}: folder {path.parent} does not exist")
        if not create and not path.is_file():
            raise SweepError(
                f"no study database at {path} (storage {shown}); run a sweep first or pass --storage"
            )
        return url, {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if backend == "postgresql":
        return _postgres(parsed, readonly=False)
    return url, {"pool_pre_ping": True}


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


# ------------------------------------------------------------------------------------------ the opener


def open_storage(
    url: str | None = None, readonly: bool = False, *, create: bool = True
) -> optuna.storages.RDBStorage:
    """Open the study database at ``url`` (default ``$SWEEP_STORAGE``, then ``sqlite:///sweep.db``).

    ``readonly``: SQLite ``mode=ro`` (``immutable=1`` for an unopened WAL file), PostgreSQL read-only
    transactions; SweepError when it is missing, unreachable or holds no Optuna tables.

    Otherwise for writing: SQLite in WAL mode with a busy timeout, heartbeats recorded for the trials
    of a live driver. An unreachable or malformed URL, a read-only file and another program's database
    (tables that are not Optuna's) are a one-line SweepError and nothing is written; with
    ``create=False`` a missing SQLite file is an error instead of a new empty database."""
    if readonly:
        return _open_readonly(url or default_storage())
    url = given = resolve_storage(url)
    engine_url, engine_kwargs = _writing_engine(url, create)
    # Heartbeats: a live sweep driver records one for each of its trials, so that any other driver can
    # tell its RUNNING trials from those of a driver that is gone (sweep.study.drivers.reconcile).
    heartbeat = {"heartbeat_interval": HEARTBEAT_INTERVAL_S, "grace_period": HEARTBEAT_GRACE_S}
    check_storage_for_writing(given)  # read-only: before any table is created or WAL mode set
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(engine_url, engine_kwargs=engine_kwargs, **heartbeat)
        if sqlite_file(engine_url) is not None:
            with storage.engine.connect() as conn:  # persistent: every later connection uses WAL
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, OSError, ValueError, RuntimeError) as err:
        raise SweepError(f"cannot open storage {redact(url)}: {first_line(err)}") from None
    return storage


def _open_readonly(url: str) -> optuna.storages.RDBStorage:
    engine_url, engine_kwargs = readonly_engine(url)
    shown = redact(url)
    if not table_names(url) >= CORE_TABLES:
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
    rdb = open_storage(url, readonly=True)
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
    engine = getattr(_optuna.rdb_backend(_optuna.study_storage(study)), "engine", None)
    if engine is not None:
        engine.dispose()
