"""Top-1 error against network size (neurons, params, FLOPs, latency; one dropdown), coloured by penalty."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import plotly.graph_objects as go

from sweep.dashboards.data import (
    EARLY_STOPPED_COLOR,
    PaperPoint,
    StudyData,
    axis_label,
    hover_text,
    paper_point,
    penalty_color,
)
from sweep.select import TrialRow, front

BASELINE = "unconstrained baseline"
EXPORT_PICK = "export's default pick"
BAND_COLOR = "rgba(44, 160, 44, 0.12)"
EARLY_STOPPED = "early-stopped (not on the front)"


@dataclass
class ParetoSeries:
    """One legend entry of markers: a penalty type, the baseline, or the early-stopped trials."""

    name: str
    kind: str  # "penalty", "baseline" or "early_stopped"
    color: str
    numbers: list[int]
    x: list[float]
    y: list[float]
    hover: list[str]
    on_front: list[bool]


@dataclass
class ParetoAxis:
    """Everything drawn when ``column`` is the x axis."""

    column: str
    series: list[ParetoSeries]
    front_numbers: list[int]  # sorted by x
    front_x: list[float]
    front_y: list[float]
    paper: PaperPoint | None = None
    pick_x: float | None = None  # export's default pick on this axis (None: no pick)
    pick_y: float | None = None

    @property
    def n_points(self) -> int:
        """Trial markers drawn on this axis (the paper's point not included)."""
        return sum(len(s.numbers) for s in self.series)


@dataclass
class ParetoInfo:
    axes: list[ParetoAxis] = field(default_factory=list)  # the first is shown first
    log_y: bool = True
    band: tuple[float, float] | None = None  # held-out error of the baseline, and that + export's D
    pick: int | None = None  # export's default pick (sweep.select.default_pick), a trial number
    pick_text: str = ""  # the pick and its band in one line, or why there is no pick

    def axis(self, column: str) -> ParetoAxis:
        return next(a for a in self.axes if a.column == column)


def _series(
    name: str, kind: str, color: str, rows: list[TrialRow], x: str, front_set: set[int]
) -> ParetoSeries:
    rows = sorted(rows, key=lambda r: (r.value(x), r.number))
    return ParetoSeries(
        name=name,
        kind=kind,
        color=color,
        numbers=[r.number for r in rows],
        x=[r.value(x) for r in rows],
        y=[r.value("top1_error") for r in rows],
        hover=[hover_text(r) for r in rows],
        on_front=[r.number in front_set for r in rows],
    )


def pareto_info(data: StudyData, show_early_stopped: bool = True) -> ParetoInfo:
    """Series per x axis: one per penalty, the baseline, early-stopped trials; the front; the paper."""
    finished = [r for r in data.finished if r.top1_error is not None]
    early = [r for r in data.early_stopped if r.top1_error is not None] if show_early_stopped else []
    penalties = sorted({r.penalty or "unknown" for r in finished if not r.is_baseline})
    chosen = data.default_pick()
    info = ParetoInfo(pick=chosen.chosen.number if chosen.chosen else None, pick_text=chosen.describe())
    if chosen.baseline is not None and chosen.limit is not None:
        info.band = (float(chosen.baseline.top1_error), chosen.limit)
    for column in data.size_axes:
        usable = [r for r in finished if not math.isnan(r.value(column))]
        front_rows = front(usable, x=column) if usable else []
        front_set = {r.number for r in front_rows}
        series = [
            _series(
                p,
                "penalty",
                penalty_color(p, penalties),
                [r for r in usable if (r.penalty or "unknown") == p and not r.is_baseline],
                column,
                front_set,
            )
            for p in penalties
        ]
        baseline = [r for r in usable if r.is_baseline]
        if baseline:
            series.append(_series(BASELINE, "baseline", penalty_color("none"), baseline, column, front_set))
        stopped = [r for r in early if not math.isnan(r.value(column))]
        if stopped:
            series.append(
                _series(EARLY_STOPPED, "early_stopped", EARLY_STOPPED_COLOR, stopped, column, set())
            )
        info.axes.append(
            ParetoAxis(
                column=column,
                series=[s for s in series if s.numbers],
                front_numbers=[r.number for r in front_rows],
                front_x=[r.value(column) for r in front_rows],
                front_y=[r.value("top1_error") for r in front_rows],
                paper=paper_point(data.model, data.dataset) if column == "neurons" else None,
            )
        )
        if chosen.chosen is not None and not math.isnan(chosen.chosen.value(column)):
            info.axes[-1].pick_x = chosen.chosen.value(column)
            info.axes[-1].pick_y = chosen.chosen.value("top1_error")
    errors = [r.top1_error for r in finished + early if r.top1_error is not None]
    info.log_y = bool(errors) and min(errors) > 0
    return info


def _axis_traces(axis: ParetoAxis, visible: bool) -> list[go.Scatter]:
    traces: list[go.Scatter] = []
    for s in axis.series:
        if s.kind == "baseline":
            marker = {"symbol": "star", "size": 17, "color": s.color, "line": {"color": "white", "width": 1}}
        elif s.kind == "early_stopped":
            marker = {"symbol": "circle-open", "size": 9, "color": s.color, "line": {"width": 2}}
        else:
            marker = {
                "symbol": "circle",
                "size": [12 if f else 8 for f in s.on_front],
                "color": s.color,
                "line": {"color": "black", "width": [1.5 if f else 0 for f in s.on_front]},
                "opacity": 0.9,
            }
        traces.append(
            go.Scatter(
                x=s.x,
                y=s.y,
                mode="markers",
                name=s.name,
                marker=marker,
                text=s.hover,
                customdata=s.numbers,
                hovertemplate="%{text}<extra></extra>",
                visible=visible,
                legendgroup=s.name,
            )
        )
    if axis.front_x:
        traces.append(
            go.Scatter(
                x=axis.front_x,
                y=axis.front_y,
                mode="lines",
                line={"shape": "hv", "color": "black", "width": 1.5},
                name="Pareto front",
                hoverinfo="skip",
                visible=visible,
                legendgroup="front",
            )
        )
    if axis.pick_x is not None:
        traces.append(
            go.Scatter(
                x=[axis.pick_x],
                y=[axis.pick_y],
                mode="markers+text",
                name=EXPORT_PICK,
                marker={"symbol": "circle-open", "size": 22, "color": "#2ca02c", "line": {"width": 3}},
                text=["pick"],
                textposition="bottom center",
                hoverinfo="skip",
                visible=visible,
                legendgroup="pick",
            )
        )
    if axis.paper is not None:
        p = axis.paper
        traces.append(
            go.Scatter(
                x=[p.neurons],
                y=[p.top1_error],
                mode="markers+text",
                name="Zhou et al. 2016, Table 1",
                marker={
                    "symbol": "diamond",
                    "size": 13,
                    "color": "#ff7f0e",
                    "line": {"color": "black", "width": 1},
                },
                text=["paper"],
                textposition="top center",
                hovertemplate=f"<b>paper, Table 1</b><br>{p.note}<br>{p.neurons} neurons in all<extra></extra>",
                visible=visible,
            )
        )
    return traces


def draw_pareto(info: ParetoInfo) -> go.Figure:
    """Markers per penalty, the front as a step line, a dropdown to switch the x axis."""
    fig = go.Figure()
    spans: list[tuple[int, int]] = []
    for i, axis in enumerate(info.axes):
        start = len(fig.data)
        fig.add_traces(_axis_traces(axis, visible=i == 0))
        spans.append((start, len(fig.data)))
    first = info.axes[0].column if info.axes else "neurons"
    if info.band is not None:  # the baseline's error + D: export's default picks the smallest inside it
        low, high = info.band
        # a shape on a log axis is placed in log10 units (plotly.js), unlike the traces' data
        y0, y1 = (math.log10(max(low, 1e-6)), math.log10(high)) if info.log_y else (low, high)
        fig.add_hrect(
            y0=y0,
            y1=y1,
            fillcolor=BAND_COLOR,
            line_width=0,
            layer="below",
            annotation_text=f"baseline + {high - low:g} point(s): export's band",
            annotation_position="top left",
        )
    fig.update_layout(
        title="Top-1 error (held-out) against network size; the line is the Pareto front",
        xaxis_title=axis_label(first),
        yaxis_title="top-1 error, % (held-out" + (", log scale)" if info.log_y else ")"),
        yaxis_type="log" if info.log_y else "linear",
        hovermode="closest",
        legend={"title": {"text": "penalty"}},
        margin={"t": 60, "r": 20},
        height=560,
    )
    if info.log_y:  # the band's shape would stretch a log axis's autorange: range it on the markers
        ys = [y for t in fig.data for y in (t.y or ()) if isinstance(y, int | float) and y > 0]
        ys += list(info.band or ())
        if ys:
            fig.update_yaxes(range=[math.log10(min(ys)) - 0.05, math.log10(max(ys)) + 0.05])
    if len(info.axes) > 1:
        buttons = []
        for axis, (start, stop) in zip(info.axes, spans, strict=True):
            visible = [start <= k < stop for k in range(len(fig.data))]
            buttons.append(
                {
                    "label": f"x: {axis_label(axis.column)}",
                    "method": "update",
                    "args": [{"visible": visible}, {"xaxis.title.text": axis_label(axis.column)}],
                }
            )
        fig.update_layout(
            updatemenus=[{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.12, "yanchor": "top"}]
        )
    return fig
