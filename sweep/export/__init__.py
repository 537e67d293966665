"""Export: a chosen trial as a physically smaller network, its files, and the card that describes it."""

from sweep.export.command import choose_trial, export_command
from sweep.export.folder import EXPORT_FILES, check_target
from sweep.export.formats import (
    ARCH_FORMAT,
    load_compact,
    load_torchscript,
    save_onnx,
    save_torchscript,
    write_compact,
)
from sweep.measure import MIN_RUNS, latency_lines, measure_latency

__all__ = [
    "ARCH_FORMAT",
    "EXPORT_FILES",
    "MIN_RUNS",
    "check_target",
    "choose_trial",
    "export_command",
    "latency_lines",
    "load_compact",
    "load_torchscript",
    "measure_latency",
    "save_onnx",
    "save_torchscript",
    "write_compact",
]
