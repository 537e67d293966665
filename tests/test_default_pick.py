"""Export's default pick made visible: one computation (sweep.select.default_pick) behind ``export``,
``pareto`` and the dashboard; ``export`` refuses (exit 1, one line) when nothing compact lies in the band."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from sample_study import DISTRIBUTIONS, STUDY, TRIALS, _attrs, make_study

from sweep.cli import main
from sweep.dashboards import load_study_data, pareto_info, render_html
from sweep.dashboards.pareto_plot import EXPORT_PICK, draw_pareto
from sweep.select import all_rows, default_pick
from sweep.study import close_study, load_study_readonly

optuna.logging.set_verbosity(optuna.logging.WARNING)


def only_baseline_study(path: Path) -> str:
    """Trial 0: the baseline (0.87%); trial 1: nuclear at 1.05%, inside the band but unpruned (570 of
    570 neurons); trial 2: group lasso at 88.65% with an empty layer. Nothing compact lies within 1 point."""
    storage = f"sqlite:///{path}"
    study = optuna.create_study(storage=storage, study_name=STUDY, directions=["minimize", "minimize"])
    study.set_user_attr("objectives", ["top1_error", "neurons"])
    for number in (0, 8, 5):
        penalty, lam, _, error, widths, _ = TRIALS[number]
        params: dict[str, Any] = {"penalty": penalty, "lam": max(lam, 1e-6)}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: DISTRIBUTIONS[k] for k in params},
                values=[error, float(sum(widths))],
                user_attrs=_attrs(number),
            )
        )
    return storage


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_study(tmp_path_factory.mktemp("sample") / "sweep.db")


@pytest.fixture(scope="module")
def lonely(tmp_path_factory: pytest.TempPathFactory) -> str:
    return only_baseline_study(tmp_path_factory.mktemp("lonely") / "sweep.db")


def rows_of(url: str) -> list:
    study = load_study_readonly(STUDY, url)
    try:
        return all_rows(study)
    finally:
        close_study(study)


def test_the_pick_and_its_band(sample: str, lonely: str) -> None:
    chosen = default_pick(rows_of(sample))
    assert chosen.baseline is not None and chosen.baseline.number == 0
    assert chosen.chosen is not None and chosen.chosen.number == 1  # 1.11%, 83 neurons
    assert chosen.limit == pytest.approx(1.87)
    assert chosen.summary()["pick"] == 1 and chosen.summary()["band_top"] == pytest.approx(1.87)
    assert default_pick(rows_of(sample), 0.2).chosen.number == 2
    none = default_pick(rows_of(lonely))
    assert none.chosen is None and none.baseline.number == 0
    assert "no trial that removes anything lies within 1 point(s) of the baseline" in none.reason
    assert "\n" not in none.describe()


def test_export_refuses_when_only_the_baseline_lies_within_the_band(
    lonely: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    assert main(["export", STUDY, "--storage", lonely, "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "no trial that removes anything lies within 1 point(s)" in captured.err
    assert "--trial" in captured.err
    assert not out.exists()
    # no room at all (D = 0): the same refusal, still not bad input
    assert main(["export", STUDY, "--storage", lonely, "--max-increase", "0", "--out", str(out)]) == 1
    assert not out.exists()


def test_pareto_marks_the_pick_and_the_band(sample: str, lonely: str, capsys) -> None:
    assert main(["pareto", STUDY, "--storage", sample, "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(line for line in out if line.startswith("trial"))
    assert "export" in header
    assert any(line.startswith("1 ") and " pick " in line for line in out)
    assert any(line.startswith("0 ") and " baseline " in line for line in out)
    assert any(
        line.startswith("export's default pick: the smallest network within 1 point(s)") for line in out
    )
    entries = json.loads(out[-1])
    assert [e["number"] for e in entries if e["export_pick"]] == [1]
    assert [e["number"] for e in entries if e["baseline"]] == [0]
    assert entries[0]["export_band"]["band_top"] == pytest.approx(1.87)
    assert main(["pareto", STUDY, "--storage", lonely, "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("export's default pick: no trial that removes anything") for line in out)
    assert not any(e["export_pick"] for e in json.loads(out[-1]))


def test_dashboard_marks_the_pick_and_the_band(sample: str, lonely: str) -> None:
    data = load_study_data(STUDY, sample)
    info = pareto_info(data)
    assert info.pick == 1 and info.band == pytest.approx((0.87, 1.87))
    neurons = info.axis("neurons")
    assert (neurons.pick_x, neurons.pick_y) == (83, pytest.approx(1.11))
    fig = draw_pareto(info)
    assert any(t.name == EXPORT_PICK for t in fig.data)
    (band,) = fig.layout.shapes
    # a shape on a log axis is placed in log10 units; the axis is ranged on the markers and the band, so
    # the band cannot stretch it (it read 34.4-35.4 as 10^34-10^35 before)
    assert info.log_y and (band.y0, band.y1) == (
        pytest.approx(math.log10(0.87)),
        pytest.approx(math.log10(1.87)),
    )
    low, high = fig.layout.yaxis.range
    ys = [y for t in fig.data for y in (t.y or ()) if y]
    assert 10**low <= min(ys) and max(*ys, 1.87) <= 10**high < 2 * max(*ys, 1.87)
    page = render_html(data)
    table = page.split("<table class='front'>")[1].split("</table>")[0]
    assert "<th>export</th>" in table and "<td>pick</td>" in table and "<td>baseline</td>" in table
    empty = pareto_info(load_study_data(STUDY, lonely))
    assert empty.pick is None and empty.band is not None
    assert all(a.pick_x is None for a in empty.axes)
    assert "no trial that removes anything" in empty.pick_text
