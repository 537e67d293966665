"""Reading a study back: trial rows, its Pareto front, picking one trial, and the ``pareto`` command.

Everything here only reads the study database. A dashboard or ``pareto`` may run while a sweep writes to
the same SQLite file: connections are opened read-only and a read that meets "database is locked" is
retried a few times after a short pause instead of failing or holding the writer up.
"""

from __future__ import annotations

import json as json_lib
import math
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import numpy as np
import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from sweep import pareto
from sweep.errors import SweepError, first_line
from sweep.study import trial_params

DEFAULT_STORAGE = "sqlite:///sweep.db"
DEFAULT_OBJECTIVES = ("top1_error", "neurons")
# Numeric columns a row can be compared on (objectives or recorded user attributes).
COLUMNS = ("top1_error", "test_top1_error", "neurons", "params", "flops", "latency_ms", "memory_mb")
COLUMN_LABELS = {
    "top1_error": "top-1 error (%)",
    "test_top1_error": "test top-1 error (%)",
    "neurons": "alive neurons",
    "params": "parameters",
    "flops": "FLOPs",
    "latency_ms": "latency (ms)",
    "memory_mb": "memory (MB)",
}

_LOCK_RETRIES = 8
_SQLITE_BUSY_TIMEOUT_S = 1.0
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


def _readonly_engine(url: str) -> tuple[str, dict[str, Any]]:
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
            return url, {"connect_args": {"timeout": _SQLITE_BUSY_TIMEOUT_S}}
        path = Path(database).expanduser().resolve()
        if not path.is_file():
            raise SweepError(
                f"no study database at {path} (storage {url}); run a sweep first or pass --storage"
            )
        # mode=ro: SQLite itself refuses any write, so reading can never create or alter tables. The
        # connection is made here because SQLAlchemy unquotes URL paths, and a '#' or '?' in a file
        # name would then cut the URI short and drop mode=ro.
        uri = f"file:{quote(str(path))}?mode=ro"

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(uri, uri=True, timeout=_SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)

        return f"sqlite:///{path}", {"creator": connect}
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


def open_storage_readonly(url: str) -> optuna.storages.RDBStorage:
    """The study database at ``url`` opened for reading only (SQLite ``mode=ro``, PostgreSQL read-only
    transactions); SweepError when it is missing, unreachable or holds no Optuna tables."""
    engine_url, engine_kwargs = _readonly_engine(url)
    shown = redact(url)
    try:
        engine = sqlalchemy.create_engine(engine_url, **engine_kwargs)
        try:
            tables = with_lock_retries(lambda: set(sqlalchemy.inspect(engine).get_table_names()))
        finally:
            engine.dispose()
    except SweepError:
        raise
    except ImportError as err:
        raise SweepError(f"cannot open storage {shown}: missing database driver ({err})") from err
    except Exception as err:
        raise SweepError(f"cannot open storage {shown}: {first_line(err)}") from err
    if not {"studies", "trials", "version_info"} <= tables:
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
    url = storage or default_storage()
    rdb = open_storage_readonly(url)
    try:
        return with_lock_retries(lambda: optuna.load_study(study_name=study, storage=rdb))
    except KeyError:
        names = sorted(s.study_name for s in with_lock_retries(rdb.get_all_studies))
        rdb.engine.dispose()
        there = f"studies there: {', '.join(names)}" if names else "it holds no studies"
        raise SweepError(f"no study named {study!r} in {redact(url)}; {there}") from None
    except SweepError:
        rdb.engine.dispose()
        raise
    except Exception as err:
        rdb.engine.dispose()
        raise SweepError(f"cannot read study {study!r} from {redact(url)}: {first_line(err)}") from err


def close_study(study: optuna.Study) -> None:
    """Release the database connections a study read with ``load_study_readonly`` holds."""
    # Optuna wraps the RDBStorage in a cache; the engine lives on the storage underneath.
    storage = study._storage
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is not None:
        engine.dispose()


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


@dataclass
class TrialRow:
    """One trial as the front, the picks and the dashboards see it. Missing numbers are None."""

    number: int
    state: str  # Optuna's state name: COMPLETE, FAIL, PRUNED, RUNNING, WAITING
    penalty: str | None
    lam: float | None
    alpha: float | None  # only for sparse_group_lasso, where it means something
    top1_error: float | None  # percent, held-out split
    test_top1_error: float | None
    neurons: float | None
    params: float | None
    flops: float | None
    latency_ms: float | None
    memory_mb: float | None
    widths: dict[str, int] = field(default_factory=dict)
    widths_full: dict[str, int] = field(default_factory=dict)
    early_stopped: bool = False
    checkpoint: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    fail_reason: str | None = None
    params_full: float | None = None
    flops_full: float | None = None
    epochs: int | None = None
    dataset: str | None = None

    def value(self, column: str) -> float:
        """The column as a float; NaN when this trial did not record it."""
        if column not in COLUMNS:
            raise SweepError(f"column must be one of {', '.join(COLUMNS)}, got {column!r}")
        number = getattr(self, column)
        return math.nan if number is None else float(number)

    @property
    def model(self) -> str | None:
        return self.config.get("model")

    @property
    def is_baseline(self) -> bool:
        return self.penalty == "none"

    def full_size(self, column: str) -> float | None:
        """The unpruned network's size in ``column`` (neurons, params or flops), when recorded."""
        if column == "neurons":
            return float(sum(self.widths_full.values())) if self.widths_full else None
        return {"params": self.params_full, "flops": self.flops_full}.get(column)

    @property
    def has_empty_layer(self) -> bool:
        return any(int(count) == 0 for count in self.widths.values())

    def widths_text(self) -> str:
        """Alive/full width per layer in forward order, e.g. ``conv1 12/20, conv2 30/50, fc1 11/500``."""
        parts = []
        for name, alive in self.widths.items():
            full = self.widths_full.get(name)
            parts.append(f"{name} {alive}/{full}" if full is not None else f"{name} {alive}")
        return ", ".join(parts)

    def widths_brief(self, most: int = 12, narrowest: int = 4) -> str:
        """``widths_text`` for up to ``most`` layers; past that (a deep network) the totals and the
        ``narrowest`` layers (the largest share of their width lost), so a ResNet-56's 30 groups fit on a
        line."""
        if len(self.widths) <= most:
            return self.widths_text()
        alive, full = sum(self.widths.values()), sum(self.widths_full.values())
        narrowed = sorted(
            (n for n in self.widths if self.widths[n] < self.widths_full.get(n, self.widths[n])),
            key=lambda n: self.widths[n] / max(self.widths_full[n], 1),
        )
        shown = ", ".join(f"{n} {self.widths[n]}/{self.widths_full[n]}" for n in narrowed[:narrowest])
        more = f" (+{len(narrowed) - narrowest} more)" if len(narrowed) > narrowest else ""
        return f"{alive:,}/{full:,} alive in {len(self.widths)} layers" + (
            f"; narrowest: {shown}{more}" if narrowed else ""
        )

    def summary(self) -> dict[str, Any]:
        """The row as JSON-ready values (no config or history)."""
        keys = ("number", "state", "penalty", "lam", "alpha", *COLUMNS)
        out: dict[str, Any] = {key: getattr(self, key) for key in keys}
        out.update(
            widths=dict(self.widths),
            widths_full=dict(self.widths_full),
            early_stopped=self.early_stopped,
            checkpoint=self.checkpoint,
        )
        return out


def study_objectives(study: optuna.Study) -> list[str]:
    """Objective names in the study's value order (user attr ``objectives``; default error, neurons)."""
    names = with_lock_retries(lambda: study.user_attrs.get("objectives"))
    if not names:
        names = getattr(study, "metric_names", None)
    return list(names) if names else list(DEFAULT_OBJECTIVES)


def _history(trial: FrozenTrial) -> list[dict[str, Any]]:
    recorded = trial.user_attrs.get("history")
    if isinstance(recorded, list) and recorded:
        return [dict(entry) for entry in recorded if isinstance(entry, dict)]
    return [{"epoch": step, "top1_error": value} for step, value in sorted(trial.intermediate_values.items())]


def row_from_trial(trial: FrozenTrial, objectives: Sequence[str] = DEFAULT_OBJECTIVES) -> TrialRow:
    """Turn one Optuna trial into a TrialRow (objective values first, then user attributes)."""
    attrs = trial.user_attrs
    config = attrs.get("config") if isinstance(attrs.get("config"), dict) else {}
    values = dict(zip(objectives, trial.values or [], strict=False))

    def number(name: str) -> float | None:
        return _float(values[name]) if name in values else _float(attrs.get(name))

    widths = {str(k): int(v) for k, v in (attrs.get("widths") or {}).items()}
    neurons = number("neurons")
    if neurons is None and widths:
        neurons = float(sum(widths.values()))
    history = _history(trial)
    error = number("top1_error")
    if error is None and trial.state == TrialState.PRUNED and trial.intermediate_values:
        error = _float(trial.intermediate_values[max(trial.intermediate_values)])
    penalty = config.get("penalty", trial_params(trial).get("penalty"))
    alpha = (
        _float(config.get("alpha", trial.params.get("alpha"))) if penalty == "sparse_group_lasso" else None
    )
    epochs = attrs.get("epochs")
    return TrialRow(
        number=trial.number,
        state=trial.state.name,
        penalty=penalty,
        lam=0.0 if penalty == "none" else _float(config.get("lam", trial.params.get("lam"))),
        alpha=alpha,
        top1_error=error,
        test_top1_error=number("test_top1_error"),
        neurons=neurons,
        params=number("params"),
        flops=number("flops"),
        latency_ms=number("latency_ms"),
        memory_mb=number("memory_mb"),
        widths=widths,
        widths_full={str(k): int(v) for k, v in (attrs.get("widths_full") or {}).items()},
        early_stopped=bool(attrs.get("early_stopped")) or trial.state == TrialState.PRUNED,
        checkpoint=attrs.get("checkpoint"),
        config=dict(config),
        history=history,
        fail_reason=attrs.get("fail_reason"),
        params_full=_float(attrs.get("params_full")),
        flops_full=_float(attrs.get("flops_full")),
        epochs=int(epochs) if isinstance(epochs, int | float) else None,
        dataset=attrs.get("dataset", config.get("dataset")),
    )


def all_rows(study: optuna.Study) -> list[TrialRow]:
    """Every trial of the study, whatever its state, by trial number."""
    objectives = study_objectives(study)
    trials = with_lock_retries(lambda: study.get_trials(deepcopy=False))
    return [row_from_trial(t, objectives) for t in sorted(trials, key=lambda t: t.number)]


def select_rows(
    rows: Sequence[TrialRow], include_early_stopped: bool = False, include_failed: bool = False
) -> list[TrialRow]:
    """Complete, fully trained rows, plus early-stopped and failed ones when asked."""
    keep = []
    for row in rows:
        if row.state == "FAIL":
            ok = include_failed
        elif row.early_stopped:
            ok = include_early_stopped and row.state in ("COMPLETE", "PRUNED")
        else:
            ok = row.state == "COMPLETE"
        if ok:
            keep.append(row)
    return keep


def trial_rows(
    study: optuna.Study, include_early_stopped: bool = False, include_failed: bool = False
) -> list[TrialRow]:
    """The study's complete, fully trained trials as rows (by number); early-stopped/failed on request."""
    return select_rows(all_rows(study), include_early_stopped, include_failed)


def count_states(rows: Sequence[TrialRow]) -> dict[str, int]:
    """How many trials are complete (fully trained), failed, early-stopped and still running."""
    counts = {"complete": 0, "failed": 0, "early_stopped": 0, "running": 0}
    for row in rows:
        if row.state == "FAIL":
            counts["failed"] += 1
        elif row.early_stopped:
            counts["early_stopped"] += 1
        elif row.state == "COMPLETE":
            counts["complete"] += 1
        elif row.state in ("RUNNING", "WAITING"):
            counts["running"] += 1
    return counts


def recorded_columns(rows: Sequence[TrialRow]) -> list[str]:
    """Columns that at least one row holds a number for."""
    return [c for c in COLUMNS if any(getattr(r, c) is not None for r in rows)]


def check_columns(rows: Sequence[TrialRow], columns: Sequence[str]) -> None:
    """SweepError naming a column that is unknown or that no row records, and the ones that are."""
    recorded = recorded_columns(rows)
    for column in columns:
        if column not in COLUMNS or column not in recorded:
            have = ", ".join(recorded) or "none"
            raise SweepError(f"no trial records {column!r}; recorded columns: {have}")


def _is_candidate(row: TrialRow) -> bool:
    return row.state == "COMPLETE" and not row.early_stopped


def front(
    rows: Sequence[TrialRow], x: str = "neurons", y: str = "top1_error", z: str | None = None
) -> list[TrialRow]:
    """The non-dominated rows over columns x, y (and z), all minimised, sorted by x then y.

    Only complete, fully trained rows take part: an early-stopped trial never enters the front. Rows
    missing one of the columns are left out; equal rows are all kept.
    """
    columns = [x, y] if z is None else [x, y, z]
    if not rows:
        return []
    check_columns(rows, columns)
    candidates = [r for r in rows if _is_candidate(r)]
    points = np.array([[r.value(c) for c in columns] for r in candidates], dtype=float)
    mask = pareto.pareto_mask(points.reshape(len(candidates), len(columns)))
    chosen = [r for r, on in zip(candidates, mask, strict=True) if on]
    return sorted(chosen, key=lambda r: (r.value(x), r.value(y), r.number))


def _describe(row: TrialRow, size: str) -> str:
    return (
        f"trial {row.number}, {row.value('top1_error'):.2f}% error, {format_number(row.value(size))} {size}"
    )


def pick(
    rows: Sequence[TrialRow],
    max_error: float | None = None,
    max_neurons: float | None = None,
    max_params: float | None = None,
    knee: bool = False,
    *,
    size: str = "neurons",
) -> TrialRow:
    """Choose one complete, fully trained trial with every layer alive.

    Limits (``max_error`` in percent, ``max_neurons``, ``max_params``) filter first. Then: ``knee`` takes
    the knee of the (error, ``size``) front of what is left; else with ``max_error`` the smallest network
    by ``size`` (ties: lower error); else the lowest error (ties: smaller). A trial with an empty layer is
    never picked: it cannot be used as a network. SweepError, saying what was asked and the best
    achievable, when nothing qualifies.
    """
    if max_error is None and max_neurons is None and max_params is None and not knee:
        raise SweepError("say what to pick: a maximum error, a maximum size or the knee")
    check_columns(rows, ["top1_error", size])
    usable = [r for r in rows if _is_candidate(r) and not r.has_empty_layer and r.top1_error is not None]
    if not usable:
        raise SweepError("no complete, fully trained trial with every layer alive to pick from")
    limits = [
        ("top1_error", max_error, "% error"),
        ("neurons", max_neurons, " neurons"),
        ("params", max_params, " params"),
    ]
    qualifying = [
        r for r in usable if all(limit is None or r.value(col) <= limit for col, limit, _ in limits)
    ]
    if not qualifying:
        asked = " and ".join(
            f"at most {format_number(limit)}{unit}" for _, limit, unit in limits if limit is not None
        )
        best = []
        for col, limit, unit in limits:
            if limit is not None:
                row = min(usable, key=lambda r, c=col: (r.value(c), r.value("top1_error"), r.number))
                best.append(f"the lowest is {format_number(row.value(col))}{unit} ({_describe(row, size)})")
        raise SweepError(f"no usable trial has {asked}; {'; '.join(best)}")
    errors = np.array([r.value("top1_error") for r in qualifying])
    sizes = np.array([r.value(size) for r in qualifying])
    if knee:
        index = pareto.knee_index(np.column_stack([errors, sizes]))
    elif max_error is not None:
        index = pareto.pick_max_error(errors, sizes, max_error)
    else:
        index = pareto.pick_max_size(errors, sizes, math.inf)
    if index is None:  # every qualifying row lacks the size column
        raise SweepError(f"no qualifying trial records {size!r}")
    return qualifying[index]


def format_number(value: float | None) -> str:
    """Short human form: 570, 9999, 431080 -> 431k, 2290000 -> 2.29M, 0.63 (None/NaN -> '-')."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if float(value).is_integer():
        number = abs(value)
        for limit, scale, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
            if number >= limit:
                return f"{value / scale:.3g}{suffix}"
        return f"{int(value)}"
    return f"{value:.4g}"


def format_lam(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def front_table(rows: Sequence[TrialRow], x: str, chosen: TrialRow | None = None) -> str:
    """The front as an aligned text table, one line per trial."""
    header = ["trial", "penalty", "lambda", "error %", "neurons", "params", "FLOPs"]
    if x == "latency_ms":
        header.append("latency ms")
    header.append("widths (alive/full)")
    lines = [header]
    for row in rows:
        mark = "*" if chosen is not None and row.number == chosen.number else ""
        cells = [
            f"{row.number}{mark}",
            str(row.penalty or "-"),
            format_lam(row.lam),
            "-" if row.top1_error is None else f"{row.top1_error:.2f}",
            format_number(row.neurons),
            format_number(row.params),
            format_number(row.flops),
        ]
        if x == "latency_ms":
            cells.append(format_number(row.latency_ms))
        cells.append(
            (row.widths_brief() or "-") + (" (empty layer: not usable)" if row.has_empty_layer else "")
        )
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True)), line[-1]]).rstrip()
        for line in lines
    )


def pareto_command(study: str, storage: str | None, x: str, max_error: float | None, json: bool) -> int:
    """``sweep pareto STUDY``: print the error/x front; with --max-error the chosen trial; --json last."""
    opened = load_study_readonly(study, storage)
    try:
        everything = all_rows(opened)
    finally:
        close_study(opened)
    rows = select_rows(everything)
    counts = count_states(everything)
    if not rows:
        raise SweepError(
            f"study {study!r} has no complete trials yet ({counts['failed']} failed, "
            f"{counts['early_stopped']} early-stopped, {counts['running']} running)"
        )
    front_rows = front(rows, x=x)
    chosen = pick(rows, max_error=max_error, size=x) if max_error is not None else None
    print(f"Pareto front of study {study!r}: top-1 error (held-out) against {x}")
    print(front_table(front_rows, x, chosen))
    print(
        f"{len(front_rows)} of {counts['complete']} complete trials on the front "
        f"(not counted: {counts['early_stopped']} early-stopped, {counts['failed']} failed, "
        f"{counts['running']} running)"
    )
    if chosen is not None:
        print(
            f"chosen, the smallest network by {x} with at most {max_error}% error: {_describe(chosen, x)}, "
            f"penalty {chosen.penalty}, lambda {format_lam(chosen.lam)}, widths {chosen.widths_text()}"
        )
    if json:
        entries = [
            dict(r.summary(), chosen=chosen is not None and r.number == chosen.number) for r in front_rows
        ]
        print(json_lib.dumps(entries, allow_nan=False))
    return 0
