"""Alive neurons per layer of every trial on the front, against the layer's full width (a heatmap)."""

from __future__ import annotations

from dataclasses import dataclass, field

import plotly.graph_objects as go

from sweep.dashboards.data import StudyData
from sweep.select import format_lam


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
            f"trial {row.number} · {row.penalty_label} λ {format_lam(row.lam)} · {row.top1_error:.2f}%"
        )
        info.alive.append([row.widths.get(name) for name in info.layers])
    return info


DEEP = 12  # more layers than this: one row per layer, so that every name stays readable
CELL_TEXT_MAX = 400  # cells beyond this carry their numbers in the hover only


def draw_layer_widths(info: LayerWidthsInfo) -> go.Figure:
    """A column per layer for shallow networks; for deep ones (a ResNet-56 has 30 groups) a row per layer
    and a column per trial, the height growing with the layers."""
    names = [
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
    z = info.fraction()
    deep = len(info.layers) > DEEP
    if deep:  # transpose: layers down, trials across
        z = [list(col) for col in zip(*z, strict=True)]
        text = [list(col) for col in zip(*text, strict=True)]
        x, y = [f"trial {n}" for n in info.numbers], names
        hover = "%{x}<br>%{y}: %{text} alive<extra></extra>"
    else:
        x, y = names, info.labels
        hover = "%{y}<br>%{x}: %{text} alive<extra></extra>"
    show_text = len(info.layers) * len(info.numbers) <= CELL_TEXT_MAX
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=y,
            text=text,
            texttemplate="%{text}" if show_text else None,
            colorscale="Viridis",
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": {"text": "alive share"}},
            hovertemplate=hover,
            xgap=2,
            ygap=2,
        )
    )
    rows = len(info.layers) if deep else len(info.labels)
    fig.update_layout(
        title="Alive neurons per layer of the front's trials (cell: alive/full width)",
        xaxis_title="trial on the front" if deep else "layer (full width)",
        yaxis={"title": "layer (full width)" if deep else "", "autorange": "reversed", "automargin": True},
        height=max(300, 110 + (22 if deep else 34) * rows),
        margin={"t": 60, "l": 20, "r": 20},
    )
    return fig
