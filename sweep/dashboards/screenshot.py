"""Headless Debian chromium: a driver set up the way the browser tests use it, and a PNG of a page."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sweep.errors import SweepError

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# True once every plotly div on the page has drawn its SVG (or there are none).
PLOTS_DRAWN_JS = """
const divs = Array.from(document.querySelectorAll('div.figure'));
return typeof Plotly !== 'undefined' && divs.every(d => d._fullLayout && d.querySelector('.main-svg'));
"""


@contextmanager
def chromium_driver(width: int = 1400, height: int = 1000) -> Iterator[object]:
    """A headless chromium WebDriver with a fresh profile and the browser console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        raise SweepError(f"need {CHROMIUM} and {CHROMEDRIVER} (Debian packages chromium, chromium-driver)")
    profile = tempfile.mkdtemp(prefix="sweep-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_plots(driver: object, timeout_s: float = 30.0) -> None:
    """Wait until plotly has drawn every figure of the page; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if driver.execute_script(PLOTS_DRAWN_JS):  # type: ignore[attr-defined]
            return
        time.sleep(0.1)
    raise TimeoutError(f"plotly figures not drawn within {timeout_s:g} s")


def screenshot(
    html_path: str | Path, png_path: str | Path, width: int = 1400, height: int | None = None
) -> Path:
    """Open the page in headless chromium and save a PNG; height None captures the whole page."""
    html_file = Path(html_path).resolve()
    png = Path(png_path)
    with chromium_driver(width, height or 1000) as driver:
        driver.get(html_file.as_uri())  # type: ignore[attr-defined]
        wait_for_plots(driver)
        shot_height = height or int(driver.execute_script("return document.documentElement.scrollHeight"))  # type: ignore[attr-defined]
        # The viewport itself is set, not the window: a window's own frame would cut the page short.
        metrics = {"width": width, "height": shot_height, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # type: ignore[attr-defined]
        time.sleep(0.5)  # responsive plots redraw after the resize
        wait_for_plots(driver)
        png.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(png))  # type: ignore[attr-defined]
    return png
