"""How much of the error/size box the front covers, after each finished trial."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go

from sweep.dashboards.data import StudyData, axis_label
from sweep.select import pareto

REFERENCE_ERROR = 100.0  # percent: a network that is always wrong
REFERENCE_SIZE_MARGIN = 1.1  # the reference size is 10% above the full network, so the baseline counts


@dataclass
class HypervolumeInfo:
    """Hypervolume of (error / ref error, size / ref size) after each finished trial, in [0, 1]."""

    column: str = "neurons"
    numbers: list[int] = field(default_factory=list)  # finished trials, by number
    values: list[float] = field(default_factory=list)
    reference_error: float = REFERENCE_ERROR
    reference_size: float = 0.0
    full_size: float = 0.0  # the unpruned network's size (or the largest trial's, when not recorded)


def hypervolume_info(data: StudyData) -> HypervolumeInfo:
    """Over the study's front axis; reference point 100% error and 1.1 times the full network's size."""
    column = data.front_axis
    if column is None:
        return HypervolumeInfo()
    rows = [r for r in data.finished if r.top1_error is not None and r.value(column) == r.value(column)]
    info = HypervolumeInfo(column=column)
    if not rows:
        return info
    full = max((r.full_size(column) or 0.0 for r in rows), default=0.0)
    info.full_size = full or max(r.value(column) for r in rows)
    info.reference_size = REFERENCE_SIZE_MARGIN * info.full_size
    points = np.array(
        [[r.value("top1_error") / REFERENCE_ERROR, r.value(column) / info.reference_size] for r in rows]
    )
    for i, row in enumerate(rows):
        info.numbers.append(row.number)
        info.values.append(pareto.hypervolume(points[: i + 1], [1.0, 1.0]))
    return info


def draw_hypervolume(info: HypervolumeInfo) -> go.Figure:
    fig = go.Figure(
        go.Scatter(
            x=info.numbers,
            y=info.values,
            mode="lines+markers",
            line={"shape": "hv", "color": "#1f77b4"},
            name="hypervolume",
            hovertemplate="after trial %{x}: %{y:.4f}<extra></extra>",
        )
    )
    size = axis_label(info.column)
    ref = f"reference point: {info.reference_error:g}% error and {info.reference_size:.4g} {size} "
    ref += f"(1.1 × the full network's {info.full_size:.4g})"
    fig.update_layout(
        title=f"Hypervolume of the error/{info.column} front as trials finish<br><sup>{ref}; 1 = the whole box</sup>",
        xaxis_title="trial number (finished, fully trained trials)",
        yaxis_title="dominated share of the box",
        height=420,
        margin={"t": 80, "r": 20},
    )
    span = (max(info.numbers) - min(info.numbers)) if info.numbers else 0
    fig.update_xaxes(tick0=0, dtick=max(1, math.ceil(span / 10)))  # trial numbers are integers
    return fig
