"""CPU latency: a figure printed is a figure measured. Networks are timed side by side, taking turns run
by run (so that load from elsewhere on the machine hits them alike), on a stated number of torch threads.

``latency_ms`` / ``timed_runs`` time any networks; ``compact_latency_ms`` is a trial's ``latency_ms`` (its
network without the dead channels); ``measure_latency`` is the export card's: dense and compact on one
thread, each reported as the median of its runs with the fastest and slowest, the speed-up the ratio of
the two medians. What cannot be measured well enough is left out, with the reason, never guessed."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from sweep.models import Net
from sweep.sparsity import alive_masks, compact_network

THREADS = 1  # a stated count: on a shared machine more threads measure the neighbours too
BATCHES = (1, 64)
MIN_RUNS = 10  # runs of each network per batch size at least: fewer fit in LIMIT_S, it is left out
MAX_RUNS = 200  # runs of each network per batch size at most
BUDGET_S = 1.0  # seconds of timing per batch size (both networks) after which no run starts past MIN_RUNS
LIMIT_S = 20.0  # the most seconds the MIN_RUNS runs of a batch size may take, by estimate
DISAGREE = 0.25  # the speed-ups of the two halves of the runs differ by more than this share: left out


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def latency_ms(
    named: dict[str, nn.Module],
    input_size: Sequence[int],
    batch: int,
    min_runs: int = 3,
    max_runs: int = 50,
    budget_s: float = 2.0,
) -> dict[str, float]:
    """Median CPU milliseconds per forward pass of each model at ``batch``, measured side by side: runs
    alternate between the models so that load from elsewhere on the machine hits them alike."""
    times = timed_runs(named, input_size, batch, min_runs, max_runs, budget_s)
    return {k: statistics.median(v) for k, v in times.items()}


@torch.no_grad()
def timed_runs(
    named: dict[str, nn.Module],
    input_size: Sequence[int],
    batch: int,
    min_runs: int = 3,
    max_runs: int = 50,
    budget_s: float = 2.0,
) -> dict[str, list[float]]:
    """CPU milliseconds of each forward pass of each model at ``batch``, after one warm-up pass each: the
    models take turns, run by run, until ``max_runs`` runs, or ``budget_s`` once ``min_runs`` are done."""
    x = torch.randn(batch, *input_size)
    for m in named.values():
        m.eval()(x)  # warm-up: allocator, kernels
    times: dict[str, list[float]] = {k: [] for k in named}
    started = time.perf_counter()
    for run in range(max_runs):
        for key, m in named.items():
            t0 = time.perf_counter()
            m(x)
            times[key].append(1000 * (time.perf_counter() - t0))
        if run + 1 >= min_runs and time.perf_counter() - started > budget_s:
            break
    return times


def compact_latency_ms(model: Net) -> float:
    """Median CPU milliseconds of one forward pass, batch 1, one thread, of the network without its dead
    channels (rebuilt as export would write a chain, pruned by sweep.structure otherwise); 0.0 when a
    group has none left (nothing to run)."""
    masks = {name: mask.cpu() for name, mask in alive_masks(model).items()}
    if not all(mask.any() for mask in masks.values()):
        return 0.0
    small = compact_network(model, masks).cpu().eval()
    with torch_threads(1):
        return round(latency_ms({"compact": small}, model.input_size, 1, budget_s=1.0)["compact"], 4)


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
