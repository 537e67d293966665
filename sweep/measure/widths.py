"""The one way per-layer widths are written as text (training's epoch lines, ``sweep pareto``, the
dashboards, the export card). Needs no torch: the dashboards and ``sweep pareto`` import it."""

from __future__ import annotations

from collections.abc import Mapping


def widths_text(
    widths: Mapping[str, int],
    other: Mapping[str, int | None],
    *,
    between: str = "/",
    sep: str = ", ",
    notes: Mapping[str, str] | None = None,
) -> str:
    """Per-layer widths in ``widths``' order: ``name width<between>other`` (``conv1 12/20``), or
    ``name width`` where ``other`` has none for the layer, each followed by its ``notes`` entry."""
    parts = []
    for name, width in widths.items():
        second = other.get(name)
        text = f"{name} {width}" if second is None else f"{name} {width}{between}{second}"
        parts.append(text + (notes or {}).get(name, ""))
    return sep.join(parts)
