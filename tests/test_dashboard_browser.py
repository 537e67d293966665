"""The dashboard page in Debian's headless chromium: plots drawn, the right points, no JS errors."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import optuna
import pytest
from sample_study import COMPLETE_NUMBERS, STUDY, deep_study, make_study

from sweep.dashboards import CHROMEDRIVER, CHROMIUM, build_html, chromium_driver, screenshot, wait_for_plots

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()), reason="no chromium"),
]
optuna.logging.set_verbosity(optuna.logging.WARNING)

COUNT_DATA_POINTS = """
const gd = document.getElementById(arguments[0]);
return gd.data.filter(t => t.visible !== false && (t.mode || '').includes('markers'))
              .reduce((n, t) => n + t.x.length, 0);
"""
COUNT_DRAWN_POINTS = "return document.querySelectorAll('#' + arguments[0] + ' .scatterlayer .point').length;"
SWITCH_AXIS = """
const gd = document.getElementById('fig-pareto');
const button = gd.layout.updatemenus[0].buttons.find(b => b.label.includes(arguments[0]));
return Plotly.update(gd, button.args[0], button.args[1]).then(() => gd.layout.xaxis.title.text);
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("page")
    url = make_study(folder / "sweep.db")
    path = folder / f"{STUDY}.html"
    path.write_text(build_html(STUDY, url), encoding="utf-8")
    return path


def test_pareto_plot_draws_every_trial_without_js_errors(page: Path) -> None:
    with chromium_driver() as driver:
        driver.get(page.as_uri())
        wait_for_plots(driver)
        # finished trials, the early-stopped one, the paper's point, and the ring on export's default pick
        expected = len(COMPLETE_NUMBERS) + 1 + 1 + 1
        assert driver.execute_script(COUNT_DATA_POINTS, "fig-pareto") == expected
        assert driver.execute_script(COUNT_DRAWN_POINTS, "fig-pareto") == expected
        drawn = driver.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length")
        assert drawn >= 5
        # The dropdown's params view: the same trials, no paper point (the paper reports neurons only).
        assert driver.execute_script(SWITCH_AXIS, "parameters") == "parameters"
        assert driver.execute_script(COUNT_DRAWN_POINTS, "fig-pareto") == expected - 1
        severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert severe == []


def test_screenshot_of_the_whole_page(page: Path, tmp_path: Path) -> None:
    png = screenshot(page, tmp_path / "page.png")
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert width == 1400 and height > 2000  # five figures, the table and headings: taller than a screen


def test_a_56_layer_networks_widths_stay_readable(tmp_path: Path) -> None:
    """resnet56's 30 group names: one heatmap row per group, each named on the axis; the front table folds
    each trial's widths into one summary line."""
    url = deep_study(tmp_path / "deep.db")
    page = tmp_path / "deep.html"
    page.write_text(build_html("deep", url), encoding="utf-8")
    assert "<details><summary>" in page.read_text() and "alive in 30 layers" in page.read_text()
    with chromium_driver(width=1400, height=1000) as driver:
        driver.get(page.as_uri())
        wait_for_plots(driver)
        ticks = driver.execute_script(
            "return Array.from(document.querySelectorAll('#fig-layers .ytick text')).map(t => t.textContent);"
        )
        assert (
            len(ticks) == 30
            and any(t.startswith("conv1 (16)") for t in ticks)
            and any("layer3.8" in t for t in ticks)
        )
        boxes = driver.execute_script(
            "return Array.from(document.querySelectorAll('#fig-layers .ytick text'))"
            ".map(t => t.getBoundingClientRect()).map(r => [r.top, r.bottom]);"
        )
        tops = sorted(b[0] for b in boxes)
        assert min(b - a for a, b in itertools.pairwise(tops)) >= 12, "tick labels overlap"
