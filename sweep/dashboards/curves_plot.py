"""Per-epoch held-out error and alive neurons of the front's trials (from `history`, else Optuna's reports)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from sweep.dashboards.data import StudyData
from sweep.select import format_lam


@dataclass
class CurveSeries:
    number: int
    label: str
    epochs: list[float]
    error: list[float | None]
    neurons: list[float | None]
    phases: list[str] = field(default_factory=list)  # "sparse"/"debias" per epoch when recorded, else ""


@dataclass
class CurvesInfo:
    series: list[CurveSeries] = field(default_factory=list)

    @property
    def has_neurons(self) -> bool:
        return any(v is not None for s in self.series for v in s.neurons)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def curves_info(data: StudyData) -> CurvesInfo:
    info = CurvesInfo()
    for row in data.front_rows():
        entries = [e for e in row.history if _number(e.get("epoch")) is not None]
        if not entries:
            continue
        entries.sort(key=lambda e: e["epoch"])
        info.series.append(
            CurveSeries(
                number=row.number,
                label=f"trial {row.number} ({row.penalty_label} λ {format_lam(row.lam)})",
                epochs=[float(e["epoch"]) for e in entries],
                error=[_number(e.get("top1_error")) for e in entries],
                neurons=[_number(e.get("neurons")) for e in entries],
                phases=[str(e.get("phase") or "") for e in entries],
            )
        )
    return info


def draw_curves(info: CurvesInfo) -> go.Figure:
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("top-1 error, % (held-out)", "alive neurons"), horizontal_spacing=0.08
    )
    palette = qualitative.Plotly
    for i, s in enumerate(info.series):
        color = palette[i % len(palette)]
        for col, y in ((1, s.error), (2, s.neurons)):
            if all(v is None for v in y):
                continue
            fig.add_trace(
                go.Scatter(
                    x=s.epochs,
                    y=y,
                    mode="lines",
                    name=s.label,
                    legendgroup=s.label,
                    showlegend=col == 1,
                    line={"color": color, "width": 2},
                    customdata=s.phases,
                    hovertemplate=f"{s.label}<br>epoch %{{x}}: %{{y}} %{{customdata}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="epoch")
    errors = [e for s in info.series for e in s.error if e is not None]
    if errors and min(errors) > 0:
        fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(
        title="Training curves of the front's trials",
        height=440,
        margin={"t": 80, "r": 20},
        legend={"title": {"text": "trial"}},
    )
    return fig
