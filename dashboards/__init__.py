"""Plotly dashboards of a study: each figure is an info dataclass (computed, tested) and a draw function.

``build_html(study, storage)`` returns the whole page; ``sweep dashboard STUDY`` writes or serves it.
"""

from dashboards.curves_plot import CurvesInfo, curves_info, draw_curves
from dashboards.data import PAPER_TABLE1, PaperPoint, StudyData, load_study_data, read_study
from dashboards.hypervolume_plot import HypervolumeInfo, draw_hypervolume, hypervolume_info
from dashboards.lambda_plot import LambdaInfo, draw_lambda, lambda_info
from dashboards.layers_plot import LayerWidthsInfo, draw_layer_widths, layer_widths_info
from dashboards.page import build_html, dashboard_command, render_html
from dashboards.pareto_plot import ParetoInfo, draw_pareto, pareto_info

__all__ = [
    "PAPER_TABLE1",
    "CurvesInfo",
    "HypervolumeInfo",
    "LambdaInfo",
    "LayerWidthsInfo",
    "PaperPoint",
    "ParetoInfo",
    "StudyData",
    "build_html",
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
    "pareto_info",
    "read_study",
    "render_html",
]
