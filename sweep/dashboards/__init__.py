"""Plotly dashboards of a study: each figure is an info dataclass (computed, tested) and a draw function.

``build_html(study, storage)`` returns the whole page; ``sweep dashboard STUDY`` writes or serves it.
"""

from sweep.dashboards.curves_plot import CurvesInfo, curves_info, draw_curves
from sweep.dashboards.data import (
    PAPER_TABLE1,
    PaperPoint,
    StudyData,
    load_study_data,
    paper_point,
    read_study,
)
from sweep.dashboards.hypervolume_plot import HypervolumeInfo, draw_hypervolume, hypervolume_info
from sweep.dashboards.lambda_plot import LambdaInfo, draw_lambda, lambda_info
from sweep.dashboards.layers_plot import LayerWidthsInfo, draw_layer_widths, layer_widths_info
from sweep.dashboards.page import build_html, dashboard_command, make_server, render_html
from sweep.dashboards.pareto_plot import ParetoInfo, draw_pareto, pareto_info
from sweep.dashboards.screenshot import CHROMEDRIVER, CHROMIUM, chromium_driver, screenshot, wait_for_plots

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "PAPER_TABLE1",
    "CurvesInfo",
    "HypervolumeInfo",
    "LambdaInfo",
    "LayerWidthsInfo",
    "PaperPoint",
    "ParetoInfo",
    "StudyData",
    "build_html",
    "chromium_driver",
    "curves_info",
    "dashboard_command",
    "draw_curves",
    "draw_hypervolume",
    "draw_lambda",
    "draw_layer_widths",
    "draw_pareto",
    "hypervolume_info",
    "lambda_info",
    "layer_widths_info",
    "load_study_data",
    "make_server",
    "paper_point",
    "pareto_info",
    "read_study",
    "render_html",
    "screenshot",
    "wait_for_plots",
]
