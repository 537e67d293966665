"""The export card's CPU latency: a figure printed is a figure measured. Dense and compact networks are
timed on one torch thread, taking turns run by run (so that load from elsewhere hits both alike), and
each is reported as the median of its runs with the fastest and slowest; the speed-up is the ratio of
the two medians. What cannot be measured well enough is left out, with the reason, never guessed."""

from __future__ import annotations

import statistics
from typing import Any

from torch import nn

from sweep.sparsity import timed_runs, torch_threads

THREADS = 1  # a stated count: on a shared machine more threads measure the neighbours too
BATCHES = (1, 64)
MIN_RUNS = 10  # runs of each network per batch size at least: fewer fit in LIMIT_S, it is left out
MAX_RUNS = 200  # runs of each network per batch size at most
BUDGET_S = 1.0  # seconds of timing per batch size (both networks) after which no run starts past MIN_RUNS
LIMIT_S = 20.0  # the most seconds the MIN_RUNS runs of a batch size may take, by estimate
DISAGREE = 0.25  # the speed-ups of the two halves of the runs differ by more than this share: left out


def measure_latency(dense: nn.Module, small: nn.Module, input_size: Any) -> dict[str, Any]:
    """The card's ``latency_ms``: per batch size ``dense``, ``compact`` (medians, ms), ``speedup``, and
    their ``*_range`` (fastest, slowest run) and ``runs``; or ``left_out`` with the reason."""
    card: dict[str, Any] = {
        "device": "cpu",
        "threads": THREADS,
        "statistic": "median of interleaved runs; range: fastest and slowest run",
    }
    pair_ms: float | None = None  # one run of both networks at batch 1
    with torch_threads(THREADS):
        for batch in BATCHES:
            guess = None if pair_ms is None else pair_ms * batch  # more images cost at most that much
            if guess is not None and guess * MIN_RUNS > 1000 * LIMIT_S:
                card[f"batch{batch}"] = _left_out(
                    f"one run of both networks at batch {batch} takes about {guess / 1000:.1f} s on "
                    f"{THREADS} thread, too long to time {MIN_RUNS} runs in {LIMIT_S:g} s"
                )
                continue
            times = timed_runs(
                {"dense": dense, "compact": small},
                input_size,
                batch,
                min_runs=MIN_RUNS,
                max_runs=MAX_RUNS,
                budget_s=BUDGET_S,
            )
            card[f"batch{batch}"] = _figures(times["dense"], times["compact"])
            if batch == 1:
                pair_ms = statistics.median(times["dense"]) + statistics.median(times["compact"])
    return card


def _left_out(reason: str) -> dict[str, Any]:
    return {"dense": None, "compact": None, "speedup": None, "left_out": reason}


def _figures(dense: list[float], compact: list[float]) -> dict[str, Any]:
    d, c = statistics.median(dense), statistics.median(compact)
    figures: dict[str, Any] = {
        "dense": d,
        "compact": c,
        "speedup": None,
        "runs": len(dense),
        "dense_range": [min(dense), max(dense)],
        "compact_range": [min(compact), max(compact)],
    }
    if c <= 0:
        figures["speedup_left_out"] = "the compact network's runs took no measurable time"
        return figures
    half = len(dense) // 2  # the runs in two halves: the speed-up must come out alike in both
    first, second = _ratio(dense[:half], compact[:half]), _ratio(dense[half:], compact[half:])
    if first is None or second is None or abs(first - second) > DISAGREE * min(first, second):
        shown = "?" if first is None or second is None else f"{first:.2f}x and {second:.2f}x"
        figures["speedup_left_out"] = (
            f"the two halves of the runs give {shown} (a busy machine); measure again on a quiet one"
        )
        return figures
    figures["speedup"] = d / c
    return figures


def _ratio(dense: list[float], compact: list[float]) -> float | None:
    if not dense or not compact or statistics.median(compact) <= 0:
        return None
    return statistics.median(dense) / statistics.median(compact)


def _ms(value: float) -> str:
    return f"{value:.3f}"


def latency_lines(lat: dict[str, Any]) -> list[str]:
    """The card's latency as summary lines; a card written before the ranges were recorded too."""
    lines = []
    for batch in BATCHES:
        t = lat.get(f"batch{batch}")
        if not isinstance(t, dict):
            continue
        head = f"CPU latency batch {batch}"
        if t.get("left_out"):
            lines.append(f"{head}: left out ({t['left_out']})")
            continue
        if "runs" not in t:  # an earlier card: medians only, on the machine's threads
            lines.append(
                f"{head} ({lat['threads']} threads): {_ms(t['dense'])} -> {_ms(t['compact'])} ms "
                f"(speed-up {t['speedup']:.2f}x)"
            )
            continue
        thread = f"{lat['threads']} thread{'s' if lat['threads'] != 1 else ''}"
        (dlo, dhi), (clo, chi) = t["dense_range"], t["compact_range"]
        speedup = (
            f"speed-up {t['speedup']:.2f}x (ratio of the medians)"
            if t.get("speedup") is not None
            else f"speed-up left out ({t.get('speedup_left_out', 'not measured')})"
        )
        lines.append(
            f"{head}, dense -> compact: {_ms(t['dense'])} ms ({_ms(dlo)}-{_ms(dhi)} over {t['runs']} runs, "
            f"{thread}) -> {_ms(t['compact'])} ms ({_ms(clo)}-{_ms(chi)}); {speedup}"
        )
    return lines
