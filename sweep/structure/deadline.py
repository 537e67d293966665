"""A time limit on the channel analysis: Torch-Pruning's search for coupled channels can run for many
minutes on some graphs (timm's ReXNet, whose blocks add a shortcut to a slice of their channels and
concatenate the rest), and a user waiting on ``sweep check`` or ``sweep run`` should get one line instead.

The limit is ``SWEEP_GRAPH_SECONDS`` (default 120; 0 turns it off). It is kept with a SIGALRM timer, so
only in the main thread of a process (the CLI's; a Ray worker's trial thread runs without it, after the
driver has analysed the same network under it)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from sweep.errors import SweepError

DEFAULT_SECONDS = 120.0
ENV = "SWEEP_GRAPH_SECONDS"


def graph_seconds() -> float:
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        raise SweepError(f"{ENV} must be a number of seconds (0: no limit), got {text!r}") from None
    if not seconds >= 0:  # also refuses nan
        raise SweepError(f"{ENV} must be a number of seconds >= 0 (0: no limit), got {text!r}")
    return seconds


@contextmanager
def deadline(what: str) -> Iterator[None]:
    """Raise SweepError naming ``what`` when the block runs past ``graph_seconds()``."""
    seconds = graph_seconds()
    if seconds == 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise SweepError(
            f"{what} did not finish in {seconds:g} s ({ENV}); the graph library's search for coupled "
            f"channels is too slow on this network: raise {ENV} (0: no limit) to wait longer"
        )

    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)  # a timer already set (pytest-timeout's, say)
    if 0 < outer_left <= seconds:
        yield  # it goes off first anyway
        return
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left > 0:  # the outer timer goes on with what it had left
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - started), 1e-3))
