"""How a sweep stops before its end: a fault that every later trial would hit too (a full disk, a database
that cannot be written), Ctrl-C, or SIGTERM; and the line that sums up what this run did.

Ctrl-C during ``Tuner.fit`` is Ray Tune's: its SIGINT handler ends the run after the trials in flight are
stopped, and the driver then marks them FAIL. SIGTERM (``kill``, a batch scheduler, a container stop)
takes that same path while a sweep runs (``INTERRUPT``): without it, the handler ``ray.init`` installs
exits at once with a native stack dump, and the trials in flight stay RUNNING until a ``--resume``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from sweep.search.searcher import DATABASE_WRITE_FAILED

STOPPED = "the sweep stopped before this trial finished"
NO_SPACE = "No space left on device"  # strerror of ENOSPC, in a failed trial's reason


class Interrupt:
    """SIGTERM handled as Ctrl-C while ``handling()``: inside ``tune_run()`` it goes to the SIGINT handler
    Ray Tune set (the run ends as after Ctrl-C); elsewhere it raises KeyboardInterrupt, as Ctrl-C does.
    Only the main thread can hold signal handlers; elsewhere this does nothing."""

    def __init__(self) -> None:
        self.received: str | None = None  # "SIGTERM", once one arrived during handling()
        self._before: Any = None  # the SIGTERM handler before handling(), restored after it
        self._held = False
        self._deferred = False  # while the driver records the stop, a signal is noted, not raised

    @staticmethod
    def _main_thread() -> bool:
        return threading.current_thread() is threading.main_thread()

    @contextmanager
    def handling(self) -> Iterator[Interrupt]:
        self.received = None
        self.take()
        try:
            yield self
        finally:
            if self._held:
                signal.signal(signal.SIGTERM, self._before if self._before is not None else signal.SIG_DFL)
                self._held = False

    def take(self) -> None:
        """Install the handler (again: ``ray.init`` sets one of its own, which exits at once)."""
        if not self._main_thread():
            return
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        if not self._held:
            self._before, self._held = previous, True

    @contextmanager
    def tune_run(self) -> Iterator[None]:
        """Around ``Tuner.fit``: Tune leaves its SIGINT handler set after the run, which would swallow
        the next Ctrl-C (or SIGTERM); the handler from before is put back."""
        before = signal.getsignal(signal.SIGINT) if self._main_thread() else None
        try:
            yield
        finally:
            if before is not None:
                signal.signal(signal.SIGINT, before)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """While the driver marks the stopped trials: a SIGTERM is noted, not raised in the middle of it."""
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False

    def reason(self) -> str:
        """The fail reason of a trial the stop cut off."""
        return f"{STOPPED} (interrupted by {self.received})" if self.received else STOPPED

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        self.received = "SIGTERM"
        if self._deferred:
            return
        handler = signal.getsignal(signal.SIGINT)
        if first and callable(handler) and handler is not signal.default_int_handler:
            handler(signal.SIGINT, frame)  # Ray Tune's: stop the trials, end the run
            return
        raise KeyboardInterrupt  # outside Tune's run, or a second SIGTERM: as a (second) Ctrl-C


INTERRUPT = Interrupt()


def stop_on_fault(outcomes: dict[str, dict[str, Any]], fault: list[str], out: str) -> Any:
    """A Tune stopper that ends the run once a trial failed for want of disk space under --out, or its
    result could not be written to the study database: the trials after it would fail the same way."""
    from ray import tune

    def fault_of(outcome: dict[str, Any]) -> str | None:
        reason = str(outcome.get("reason") or "")
        if NO_SPACE in reason:
            return f"no space left on the device under --out {out} (trial {outcome['number']})"
        if reason.startswith(DATABASE_WRITE_FAILED):
            return reason
        return None

    class StopOnFault(tune.Stopper):
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            found = [f for f in map(fault_of, outcomes.values()) if f]
            if found and not fault:
                fault.append(found[0])
            return bool(found)

    return StopOnFault()


def was_cut(outcome: dict[str, Any]) -> bool:
    """Whether a trial's outcome is the stop's: FAIL because the sweep ended before it finished."""
    return str(outcome.get("reason") or "").startswith(STOPPED)


def print_run_line(outcomes: list[dict[str, Any]], started: float) -> None:
    failed = sum(o["state"] == "FAIL" for o in outcomes)
    early = sum(o["state"] == "COMPLETE" and bool(o.get("early_stopped")) for o in outcomes)
    own = sum(o.get("seconds") or 0.0 for o in outcomes)
    print(
        f"this run: {len(outcomes) - failed - early} complete, {early} early-stopped, {failed} failed in "
        f"{time.perf_counter() - started:.1f} s (the trials' own training: {own:.1f} s)",
        flush=True,
    )
