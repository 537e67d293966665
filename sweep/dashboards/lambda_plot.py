"""Penalty strength lambda (log axis) against alive neurons and against error, one colour per penalty."""

from __future__ import annotations

from dataclasses import dataclass, field

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sweep.dashboards.data import StudyData, hover_text, penalty_color


@dataclass
class LambdaSeries:
    penalty: str
    color: str
    numbers: list[int]
    lam: list[float]
    neurons: list[float]
    error: list[float]
    hover: list[str]


@dataclass
class LambdaInfo:
    series: list[LambdaSeries] = field(default_factory=list)
    left_out: int = 0  # finished trials with lambda <= 0 or unknown (the baseline): no place on a log axis


def lambda_info(data: StudyData) -> LambdaInfo:
    info = LambdaInfo()
    rows = [r for r in data.finished if r.top1_error is not None and r.neurons is not None]
    drawable = [r for r in rows if r.lam is not None and r.lam > 0 and not r.is_baseline]
    info.left_out = len(rows) - len(drawable)
    penalties = sorted({r.penalty or "unknown" for r in drawable})
    for penalty in penalties:
        picked = sorted(
            (r for r in drawable if (r.penalty or "unknown") == penalty), key=lambda r: r.lam or 0
        )
        info.series.append(
            LambdaSeries(
                penalty=penalty,
                color=penalty_color(penalty, penalties),
                numbers=[r.number for r in picked],
                lam=[float(r.lam or 0) for r in picked],
                neurons=[r.value("neurons") for r in picked],
                error=[r.value("top1_error") for r in picked],
                hover=[hover_text(r) for r in picked],
            )
        )
    return info


def draw_lambda(info: LambdaInfo) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("alive neurons", "top-1 error, % (held-out)"))
    for s in info.series:
        for col, y in ((1, s.neurons), (2, s.error)):
            fig.add_trace(
                go.Scatter(
                    x=s.lam,
                    y=y,
                    mode="markers",
                    name=s.penalty,
                    legendgroup=s.penalty,
                    showlegend=col == 1,
                    marker={"color": s.color, "size": 9},
                    text=s.hover,
                    hovertemplate="%{text}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    note = f" ({info.left_out} trial(s) with λ = 0 not shown)" if info.left_out else ""
    fig.update_xaxes(type="log", title_text="λ (log scale)")
    errors = [e for s in info.series for e in s.error]
    if errors and min(errors) > 0:
        fig.update_yaxes(type="log", row=1, col=2)
    fig.update_layout(
        title=f"Penalty strength λ against size and error, per penalty type{note}",
        height=440,
        margin={"t": 80, "r": 20},
        legend={"title": {"text": "penalty"}},
    )
    return fig
