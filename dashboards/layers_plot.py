"""Alive neurons per layer of every trial on the front, against the layer's full width (a heatmap)."""

from __future__ import annotations

from dataclasses import dataclass, field

import plotly.graph_objects as go

from dashboards.data import StudyData
from sweep.picks import format_lam


@dataclass
class LayerWidthsInfo:
    layers: list[str] = field(default_factory=list)  # forward order
    full: list[int | None] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)  # front trials, smallest first
    labels: list[str] = field(default_factory=list)
    alive: list[list[int | None]] = field(default_factory=list)  # [trial][layer]

    def fraction(self) -> list[list[float | None]]:
        """Alive share of each layer (None where a width is unknown)."""
        return [
            [a / f if a is not None and f else None for a, f in zip(row, self.full, strict=True)]
            for row in self.alive
        ]


def layer_widths_info(data: StudyData) -> LayerWidthsInfo:
    front_rows = data.front_rows()
    info = LayerWidthsInfo()
    for row in front_rows:
        for name in [*row.widths_full, *row.widths]:
            if name not in info.layers:
                info.layers.append(name)
    for name in info.layers:
        info.full.append(next((r.widths_full[name] for r in front_rows if name in r.widths_full), None))
    for row in front_rows:
        info.numbers.append(row.number)
        info.labels.append(
            f"trial {row.number} · {row.penalty} λ {format_lam(row.lam)} · {row.top1_error:.2f}%"
        )
        info.alive.append([row.widths.get(name) for name in info.layers])
    return info


def draw_layer_widths(info: LayerWidthsInfo) -> go.Figure:
    columns = [
        f"{name} ({full})" if full is not None else name
        for name, full in zip(info.layers, info.full, strict=True)
    ]
    text = [
        [
            "-" if a is None else (f"{a}/{f}" if f is not None else str(a))
            for a, f in zip(row, info.full, strict=True)
        ]
        for row in info.alive
    ]
    fig = go.Figure(
        go.Heatmap(
            z=info.fraction(),
            x=columns,
            y=info.labels,
            text=text,
            texttemplate="%{text}",
            colorscale="Viridis",
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": {"text": "alive share"}},
            hovertemplate="%{y}<br>%{x}: %{text} alive<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    fig.update_layout(
        title="Alive neurons per layer of the front's trials (cell: alive/full width)",
        xaxis_title="layer (full width)",
        yaxis={"title": "", "autorange": "reversed"},
        height=max(300, 90 + 34 * len(info.labels)),
        margin={"t": 60, "l": 20, "r": 20},
    )
    return fig
