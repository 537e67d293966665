"""Dashboard figures computed from a real SQLite study, the HTML page, and the live server."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
from plotly.offline import get_plotlyjs
from sample_study import COMPLETE_NUMBERS, FRONT_NUMBERS, STUDY, make_study

from sweep.cli import main
from sweep.dashboards import (
    PAPER_TABLE1,
    StudyData,
    build_html,
    curves_info,
    draw_curves,
    draw_hypervolume,
    draw_lambda,
    draw_layer_widths,
    draw_pareto,
    hypervolume_info,
    lambda_info,
    layer_widths_info,
    load_study_data,
    make_server,
    paper_point,
    pareto_info,
)
from sweep.files import GENERATOR_META
from sweep.select import pareto

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_study(tmp_path_factory.mktemp("study") / "sweep.db")


@pytest.fixture(scope="module")
def data(url: str) -> StudyData:
    return load_study_data(STUDY, url)


def figure_json(page: str, div_id: str) -> dict:
    found = re.search(rf"<script type='application/json' id='{div_id}-json'>(.*?)</script>", page, re.S)
    assert found, f"no figure {div_id} in the page"
    return json.loads(found.group(1))


def visible_marker_points(fig: dict) -> int:
    return sum(
        len(t["x"])
        for t in fig["data"]
        if t.get("visible", True) is not False and "markers" in t.get("mode", "")
    )


def test_study_data_labels(data: StudyData) -> None:
    assert (data.name, data.model, data.dataset) == (STUDY, "lenet", "mnist")
    assert data.objectives == ["top1_error", "neurons"]
    assert data.counts == {"complete": 7, "failed": 1, "early_stopped": 1, "running": 0}
    assert data.size_axes == ["neurons", "params", "flops"]


def test_paper_points_are_the_papers_table1() -> None:
    assert (PAPER_TABLE1["lenet"].neurons, PAPER_TABLE1["lenet"].top1_error) == (81, 0.63)
    assert (PAPER_TABLE1["cifar10_quick"].neurons, PAPER_TABLE1["cifar10_quick"].top1_error) == (145, 25.25)
    assert paper_point("lenet", "fashion-mnist") is None
    assert paper_point("vgg13", "cifar10") is None


def test_pareto_info(data: StudyData) -> None:
    info = pareto_info(data)
    assert [a.column for a in info.axes] == ["neurons", "params", "flops"]
    neurons = info.axis("neurons")
    assert neurons.front_numbers == FRONT_NUMBERS
    assert neurons.front_x == [70, 83, 103, 300, 570]
    assert neurons.n_points == len(COMPLETE_NUMBERS) + 1  # plus the greyed early-stopped trial
    kinds = {s.kind: s for s in neurons.series}
    assert kinds["baseline"].numbers == [0] and kinds["early_stopped"].numbers == [7]
    assert not any(kinds["early_stopped"].on_front)
    group_lasso = next(s for s in neurons.series if s.name == "group_lasso")
    assert group_lasso.numbers == [5, 1, 2] and group_lasso.on_front == [True, True, True]
    assert "λ = 0.01" in group_lasso.hover[1] and "fc1 13/500" in group_lasso.hover[1]
    assert "α = 0.3" in next(s for s in neurons.series if s.name == "sparse_group_lasso").hover[0]
    assert neurons.paper is not None and neurons.paper.neurons == 81
    assert info.axis("params").paper is None
    assert pareto_info(data, show_early_stopped=False).axis("neurons").n_points == len(COMPLETE_NUMBERS)
    fig = draw_pareto(info)
    assert len(fig.layout.updatemenus[0].buttons) == 3
    assert any(t.line.shape == "hv" for t in fig.data if t.mode == "lines")


def test_hypervolume_info(data: StudyData) -> None:
    info = hypervolume_info(data)
    assert info.numbers == COMPLETE_NUMBERS
    assert (
        info.reference_error == 100.0
        and info.reference_size == pytest.approx(1.1 * 570)
        and info.column == "neurons"
    )
    assert np.all(np.diff(info.values) >= 0)
    # The baseline alone: (1 - 0.87/100) * (1 - 570/627) of the box.
    assert info.values[0] == pytest.approx((1 - 0.0087) * (1 - 570 / 627))
    pts = [(r.top1_error / 100, r.neurons / 627) for r in data.finished]
    assert info.values[-1] == pytest.approx(pareto.hypervolume(pts, (1, 1)))
    assert "570" in draw_hypervolume(info).layout.title.text


def test_layer_widths_info(data: StudyData) -> None:
    info = layer_widths_info(data)
    assert info.layers == ["conv1", "conv2", "fc1"] and info.full == [20, 50, 500]
    assert info.numbers == FRONT_NUMBERS
    assert info.alive[1] == [20, 50, 13]
    assert info.fraction()[0] == [1.0, 1.0, 0.0]
    assert draw_layer_widths(info).data[0].text[1][2] == "13/500"


def test_lambda_info(data: StudyData) -> None:
    info = lambda_info(data)
    assert info.left_out == 1  # the baseline: lambda 0
    by_penalty = {s.penalty: s for s in info.series}
    assert sorted(by_penalty) == ["group_lasso", "l1", "nuclear", "sparse_group_lasso"]
    assert by_penalty["group_lasso"].numbers == [2, 1, 5]
    assert by_penalty["group_lasso"].lam == [3e-3, 1e-2, 1e-1]
    fig = draw_lambda(info)
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"


def test_curves_info(data: StudyData) -> None:
    info = curves_info(data)
    assert [s.number for s in info.series] == FRONT_NUMBERS
    trial1 = info.series[1]
    assert trial1.epochs == list(range(1, 12)) and trial1.neurons[-1] == 83
    trial3 = next(s for s in info.series if s.number == 3)  # intermediate values only
    assert trial3.error[0] == pytest.approx(5.95) and all(v is None for v in trial3.neurons)
    assert info.has_neurons
    assert len(draw_curves(info).data) == 2 * len(FRONT_NUMBERS) - 1


def test_page_holds_every_figure_and_plotly_once(url: str) -> None:
    page = build_html(STUDY, url)
    assert page.count(get_plotlyjs()[:300]) == 1
    assert not re.search(r"<script[^>]*\bsrc=", page)  # nothing fetched: the page opens offline
    assert "http-equiv='refresh'" not in page
    assert f"sweep study {STUDY}" in page
    assert "7 complete · 1 failed · 1 early-stopped" in page and "model <b>lenet</b>" in page
    fig = figure_json(page, "fig-pareto")
    # + early-stopped + paper + the ring around export's default pick
    assert visible_marker_points(fig) == len(COMPLETE_NUMBERS) + 1 + 1 + 1
    for div_id in ("fig-hypervolume", "fig-layers", "fig-lambda", "fig-curves"):
        figure_json(page, div_id)
    front_table = page.split("<table class='front'>")[1].split("</table>")[0]
    assert front_table.count("<tr>") == 1 + len(FRONT_NUMBERS)
    assert "conv1 20/20, conv2 50/50, fc1 13/500" in front_table
    assert page.count("How to read this:") == 5
    assert "NaN loss at epoch 2" in page


def test_page_of_a_study_without_finished_trials(tmp_path: Path) -> None:
    url = make_study(tmp_path / "empty.db", name="empty", with_trials=False)
    page = build_html("empty", url)
    assert "No finished trials yet" in page and "<div id='fig-" not in page


def test_dashboard_command_writes_the_page(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["dashboard", STUDY, "--storage", url]) == 0
    assert capsys.readouterr().out.strip() == f"{STUDY}.html"
    assert (tmp_path / f"{STUDY}.html").read_text().startswith("<!DOCTYPE html>")
    out = tmp_path / "pages" / "d.html"
    assert main(["dashboard", STUDY, "--storage", url, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.is_file()


def test_dashboard_of_a_missing_study(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", "nope", "--storage", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"studies there: {STUDY}" in err[0]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    url = make_study(tmp_path / "live.db")
    server = make_server(STUDY, url, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_served_page_rereads_the_study(served: tuple[str, str]) -> None:
    address, url = served
    first = urllib.request.urlopen(f"{address}/", timeout=30).read().decode()
    assert "http-equiv='refresh' content='30'" in first and "7 complete" in first
    writer = optuna.load_study(study_name=STUDY, storage=url)
    writer.add_trial(
        optuna.trial.create_trial(
            values=[0.7, 60.0], user_attrs={"config": {"penalty": "l1", "lam": 0.02}, "widths": {"fc1": 60}}
        )
    )
    second = urllib.request.urlopen(f"{address}/", timeout=30).read().decode()
    assert "8 complete" in second
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{address}/other", timeout=30)
    assert missing.value.code == 404


def test_serve_on_a_port_in_use(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["dashboard", STUDY, "--storage", url, "--serve", "--port", str(port)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"port {port}" in err[0]


def test_study_searching_params_without_widths(tmp_path: Path) -> None:
    """A study whose size objective is params and that records no widths still gets its page."""
    url = f"sqlite:///{tmp_path / 'params.db'}"
    study = optuna.create_study(storage=url, study_name="by-params", directions=["minimize", "minimize"])
    study.set_user_attr("objectives", ["top1_error", "params"])
    for error, params in ((2.0, 1000.0), (1.0, 5000.0), (3.0, 6000.0)):
        config = {"model": "tiny", "penalty": "l1", "lam": 1e-3}
        study.add_trial(optuna.trial.create_trial(values=[error, params], user_attrs={"config": config}))
    data = load_study_data("by-params", url)
    assert data.size_axes == ["params"] and [r.number for r in data.front_rows()] == [0, 1]
    assert hypervolume_info(data).column == "params"
    page = build_html("by-params", url)
    assert visible_marker_points(figure_json(page, "fig-pareto")) == 3
    assert "<div id='fig-layers'" not in page  # no widths recorded: nothing to draw per layer


def test_an_idle_client_blocks_no_other_reader_and_a_hang_up_prints_nothing(
    served: tuple[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    address, _ = served
    host, port = address.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as idle:  # connects, then says nothing
        idle.sendall(b"GET / HT")
        page = urllib.request.urlopen(f"{address}/", timeout=10).read().decode()
        assert "7 complete" in page
    for _ in range(3):  # ask for the page and hang up before reading it
        with socket.create_connection((host, int(port))) as rude:
            rude.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert "7 complete" in urllib.request.urlopen(f"{address}/", timeout=10).read().decode()
    assert "Traceback" not in capfd.readouterr().err


def test_dashboard_on_a_full_disk_leaves_the_old_page_whole(
    url: str, tmpfs: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    tiny_disk = tmpfs("size=256k")  # smaller than a dashboard page (plotly.js alone is megabytes)
    old = tiny_disk / "d.html"
    yesterday = f"<!DOCTYPE html><head>{GENERATOR_META}</head><p>the page of yesterday</p>"  # sweep's own
    old.write_text(yesterday)
    assert main(["dashboard", STUDY, "--storage", url, "--out", str(old)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the dashboard to" in err[0] and "No space left" in err[0]
    assert old.read_text() == yesterday
    assert [p.name for p in tiny_disk.iterdir()] == ["d.html"]
