"""What a network costs and how well it does: params, FLOPs, memory, latency, top-1 error; the paper's
Table 1; widths as text.

Table 1 and ``widths_text`` need no torch and load with the face (``sweep pareto`` and the dashboards
read them without torch); the rest loads from its module on first use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sweep.measure.paper import PAPER_TABLE1, PaperResult
from sweep.measure.widths import widths_text

if TYPE_CHECKING:
    from sweep.measure.error import (
        EVAL_BATCH,
        EVAL_BATCH_CPU,
        cpu_max_pool_channels_last,
        measure_error,
        top1_error,
    )
    from sweep.measure.latency import (
        MIN_RUNS,
        compact_latency_ms,
        latency_lines,
        latency_ms,
        measure_latency,
        timed_runs,
        torch_threads,
    )
    from sweep.measure.size import BYTES_PER_PARAM, NetworkSize, measure, size_at, sparsity_metrics

_MODULES = {
    "sweep.measure.error": (
        "EVAL_BATCH",
        "EVAL_BATCH_CPU",
        "cpu_max_pool_channels_last",
        "measure_error",
        "top1_error",
    ),
    "sweep.measure.latency": (
        "MIN_RUNS",
        "compact_latency_ms",
        "latency_lines",
        "latency_ms",
        "measure_latency",
        "timed_runs",
        "torch_threads",
    ),
    "sweep.measure.size": ("BYTES_PER_PARAM", "NetworkSize", "measure", "size_at", "sparsity_metrics"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BYTES_PER_PARAM",
    "EVAL_BATCH",
    "EVAL_BATCH_CPU",
    "MIN_RUNS",
    "PAPER_TABLE1",
    "NetworkSize",
    "PaperResult",
    "compact_latency_ms",
    "cpu_max_pool_channels_last",
    "latency_lines",
    "latency_ms",
    "measure",
    "measure_error",
    "measure_latency",
    "size_at",
    "sparsity_metrics",
    "timed_runs",
    "top1_error",
    "torch_threads",
    "widths_text",
]
