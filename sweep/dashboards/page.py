"""One self-contained HTML page of a study (plotly.js embedded once, opens offline), and a live server."""

from __future__ import annotations

import errno
import html
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from sweep.dashboards.curves_plot import curves_info, draw_curves
from sweep.dashboards.data import StudyData, axis_label, load_study_data, read_study
from sweep.dashboards.hypervolume_plot import draw_hypervolume, hypervolume_info
from sweep.dashboards.lambda_plot import draw_lambda, lambda_info
from sweep.dashboards.layers_plot import DEEP, draw_layer_widths, layer_widths_info
from sweep.dashboards.pareto_plot import draw_pareto, pareto_info
from sweep.errors import SweepError, first_line, one_line
from sweep.files import GENERATOR_META, atomic_write_text, check_replaceable
from sweep.select import format_lam, format_number
from sweep.study import check_read_name, close_study, default_storage, load_study_readonly, sqlite_file

REFRESH_SECONDS = 30
REQUEST_TIMEOUT_S = 20  # a client that sends nothing for this long is dropped
LISTEN_BACKLOG = 512  # connections the kernel holds while every thread is busy (capped by somaxconn)
PLOT_CONFIG = {"responsive": True, "displaylogo": False}


@dataclass
class Section:
    div_id: str
    title: str
    how_to_read: str
    figure: go.Figure | None  # None: nothing to draw yet
    empty_note: str = ""


def sections(data: StudyData) -> list[Section]:
    """The page's figures, in order, each with a one-line reading guide."""
    has_rows = bool(data.finished)
    pareto = pareto_info(data)
    hv = hypervolume_info(data)
    layers = layer_widths_info(data)
    lam = lambda_info(data)
    curves = curves_info(data)
    return [
        Section(
            "fig-pareto",
            "Pareto front",
            "Each marker is a fully trained trial; lower and further left is better. The black staircase "
            "joins the trials no other trial beats on both error and size. The star is the unconstrained "
            "baseline, the diamond the paper's Table 1 result, grey rings trials stopped early (never on "
            "the front). Hover for λ, α and per-layer widths; the menu switches the x axis.",
            draw_pareto(pareto) if pareto.axes else None,
        ),
        Section(
            "fig-hypervolume",
            "Hypervolume as trials finish",
            "The share of the error/neurons box that the front dominates after each trial. It only rises; "
            "a long flat stretch means recent trials found nothing better.",
            draw_hypervolume(hv) if hv.numbers else None,
        ),
        Section(
            "fig-layers",
            "Alive neurons per layer on the front",
            (
                "One column per front trial and one row per layer"
                if len(layers.layers) > DEEP
                else "One row per front trial"
            )
            + ", smallest first; each cell is alive/full width of a layer and its colour the alive share. "
            "A 0 cell is a dead layer: such a network is not usable.",
            draw_layer_widths(layers) if layers.numbers and layers.layers else None,
            "the front's trials recorded no per-layer widths" if has_rows else "",
        ),
        Section(
            "fig-lambda",
            "Penalty strength λ",
            "Where each penalty type starts removing neurons (left) and where that starts to cost accuracy "
            "(right). The baseline (λ = 0) has no place on a log axis.",
            draw_lambda(lam) if lam.series else None,
            "no trial with λ > 0 has finished yet" if has_rows else "",
        ),
        Section(
            "fig-curves",
            "Training curves of the front's trials",
            "Held-out error and alive neurons per epoch. Neurons fall in the sparse phase and stay put in "
            "the debias phase, where the error should recover.",
            draw_curves(curves) if curves.series else None,
            "the front's trials recorded no per-epoch history" if has_rows else "",
        ),
    ]


def _figure_json(fig: go.Figure) -> str:
    # '<' escaped so that no string in the figure can close the <script> element holding it.
    return pio.to_json(fig, validate=False).replace("<", "\\u003c")


def _front_table(data: StudyData) -> str:
    front_rows = data.front_rows()
    if not front_rows:
        return "<p class='empty'>No finished trials yet.</p>"
    chosen = data.default_pick()
    marks = {}
    if chosen.baseline is not None:
        marks[chosen.baseline.number] = "baseline"
    if chosen.chosen is not None:
        marks[chosen.chosen.number] = "pick"
    head = ["trial", "penalty", "λ", "α", "error %", "test error %", "neurons", "params", "FLOPs", "export"]
    head.append("widths")
    lines = [
        "<table class='front'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
    ]
    for row in front_rows:
        cells = [
            str(row.number),
            row.penalty_label if row.penalty else "-",
            format_lam(row.lam),
            "-" if row.alpha is None else f"{row.alpha:.3g}",
            f"{row.top1_error:.2f}",
            "-" if row.test_top1_error is None else f"{row.test_top1_error:.2f}",
            format_number(row.neurons),
            format_number(row.params),
            format_number(row.flops),
            marks.get(row.number, ""),
        ]
        widths = html.escape(row.widths_text() or "-")
        if len(row.widths) > DEEP:  # a deep network's widths fold into one summary line
            alive, full = sum(row.widths.values()), sum(row.widths_full.values())
            widths = (
                f"<details><summary>{alive:,}/{full:,} alive in {len(row.widths)} layers</summary>"
                f"{widths}</details>"
            )
        empty = html.escape(" (an empty layer: not usable)") if row.has_empty_layer else ""
        lines.append(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + f"<td>{widths}{empty}</td></tr>"
        )
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _failed_list(data: StudyData) -> str:
    if not data.failed:
        return ""
    items = "".join(
        f"<li>trial {r.number} ({html.escape(r.penalty_label if r.penalty else '-')}, λ {format_lam(r.lam)}): "
        f"{html.escape(r.fail_reason or 'no reason recorded')}</li>"
        for r in data.failed
    )
    return f"<details><summary>{len(data.failed)} failed trial(s)</summary><ul>{items}</ul></details>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1300px; color: #222; }
h1 { margin-bottom: 4px; } .meta { color: #555; margin-top: 0; }
table.front { border-collapse: collapse; font-size: 14px; margin: 8px 0 16px; }
table.front th, table.front td { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }
p.how { color: #444; margin: 2px 0 6px; font-size: 14px; } p.empty { color: #888; font-style: italic; }
section { margin-top: 28px; }
"""


def render_html(data: StudyData, refresh_seconds: int | None = None) -> str:
    """The page for one read of the study; with refresh_seconds the browser reloads it that often."""
    counts = data.counts
    title = f"sweep study {data.name}"
    meta = [
        f"model <b>{html.escape(data.model or '?')}</b>",
        f"dataset <b>{html.escape(data.dataset or '?')}</b>",
        f"objectives {html.escape(', '.join(data.objectives))}",
        f"{counts['complete']} complete",
        f"{counts['failed']} failed",
        f"{counts['early_stopped']} early-stopped",
    ]
    if counts["running"]:
        meta.append(f"{counts['running']} running")
    meta.append(f"read {datetime.now().strftime('%Y-%m-%d %H:%M:%S')}")
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        GENERATOR_META,
        f"<title>{html.escape(title)}</title>",
        f"<meta http-equiv='refresh' content='{int(refresh_seconds)}'>" if refresh_seconds else "",
        f"<style>{STYLE}</style>",
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>",
        f"<script>{get_plotlyjs()}</script>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>{' · '.join(meta)}</p>",
        "<h2>Front</h2>",
        f"<p class='how'>The trials no other fully trained trial beats on both held-out error and "
        f"{html.escape(axis_label(data.front_axis or 'neurons'))}, smallest first; widths are alive/full per "
        "layer.</p>",
        f"<p class='how'>export's default pick: {html.escape(data.default_pick().describe())}</p>",
        _front_table(data),
        _failed_list(data),
    ]
    figure_ids = []
    for section in sections(data):
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        parts.append(f"<p class='how'>How to read this: {html.escape(section.how_to_read)}</p>")
        if section.figure is None:
            note = section.empty_note or "nothing to draw until a trial finishes"
            parts.append(f"<p class='empty'>{html.escape(note)}</p></section>")
            continue
        figure_ids.append(section.div_id)
        parts.append(f"<div id='{section.div_id}' class='figure'></div>")
        parts.append(
            f"<script type='application/json' id='{section.div_id}-json'>{_figure_json(section.figure)}"
            "</script></section>"
        )
    parts.append(
        "<script>\n"
        f"for (const id of {json.dumps(figure_ids)}) {{\n"
        "  const fig = JSON.parse(document.getElementById(id + '-json').textContent);\n"
        f"  Plotly.newPlot(id, fig.data, fig.layout, {json.dumps(PLOT_CONFIG)});\n"
        "}\n</script>"
    )
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def build_html(study: str, storage: str | None, refresh_seconds: int | None = None) -> str:
    """Read the study once (read-only) and return the whole dashboard page."""
    return render_html(load_study_data(study, storage), refresh_seconds)


class DashboardServer(ThreadingHTTPServer):
    """One thread per connection, so an idle or slow client never holds up the others; a burst of clients
    waits in the listen backlog (the default of 5 turns the rest away) while one read serves them all."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up or times out mid-request is routine, not a traceback on the console.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def make_server(study: str, storage: str | None, host: str, port: int) -> DashboardServer:
    """An HTTP server whose page re-reads the study on every request. SweepError when it cannot bind."""
    opened = load_study_readonly(study, storage)
    reading = threading.Lock()  # one read of the study at a time; waiting clients do not hold it
    latest: list[tuple[float, str | Exception]] = []  # when the last read began, and its page or error

    def page() -> str:
        # A read that began after the request came is as fresh as one made for it: the clients of a burst
        # that waited while one read ran share the next one (its page, or its error), instead of each
        # reading the study again.
        asked = time.monotonic()
        with reading:
            if not latest or latest[0][0] < asked:
                began = time.monotonic()
                try:
                    made: str | Exception = render_html(read_study(opened), REFRESH_SECONDS)
                except Exception as err:
                    made = err
                latest[:] = [(began, made)]
            outcome = latest[0][1]
        if isinstance(outcome, Exception):
            raise outcome.with_traceback(None)  # shared by the clients: no traceback that grows
        return outcome

    handler = _handler(page)
    try:
        server = DashboardServer((host, port), handler)
    except OSError as err:
        close_study(opened)
        if err.errno == errno.EADDRINUSE:
            raise SweepError(f"port {port} on {host} is already in use; choose another with --port") from None
        raise SweepError(f"cannot serve on {host}:{port}: {err.strerror or err}") from None
    server.study = opened  # type: ignore[attr-defined]
    return server


def _handler(page: Callable[[], str]) -> type[BaseHTTPRequestHandler]:
    reported: set[str] = set()

    class DashboardHandler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S

        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/", "/index.html"):
                self._send(404, "text/plain; charset=utf-8", b"not found: the dashboard is at /\n")
                return
            try:
                body = page().encode("utf-8")
            except SweepError as err:
                # The writer may hold the database for a moment: say so, and come back shortly.
                self._error(503, str(err))
                return
            except Exception as err:  # a study that cannot be read: an error page, not a dropped connection
                self._error(500, f"cannot read the study: {type(err).__name__}: {first_line(err)}")
                return
            self._send(200, "text/html; charset=utf-8", body)

        def _error(self, status: int, reason: str) -> None:
            if reason not in reported:  # the console hears of each problem once, not once per client
                reported.add(reason)
                print(f"sweep: dashboard: {one_line(reason)}", file=sys.stderr, flush=True)
            text = (
                "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                "<meta http-equiv='refresh' content='5'><title>sweep: the study cannot be read</title>"
                f"</head><body><p>sweep: {html.escape(reason)}</p><p>This page tries again every 5 s.</p>"
                "</body></html>"
            )
            self._send(status, "text/html; charset=utf-8", text.encode("utf-8"))

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet: one line per page is noise
            return

    return DashboardHandler


def dashboard_command(
    study: str, storage: str | None, out: str | None, serve: bool, host: str, port: int
) -> int:
    """``sweep dashboard STUDY``: write STUDY.html (or --out) and print its path; --serve serves it live."""
    if serve:
        server = make_server(study, storage, host, port)
        shown = f"[{host}]" if ":" in host else host
        print(
            f"serving study {study!r} at http://{shown}:{server.server_port}/ (reloads every "
            f"{REFRESH_SECONDS} s; Ctrl-C stops)",
            flush=True,
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
        finally:
            server.server_close()
            close_study(server.study)  # type: ignore[attr-defined]
        return 0
    check_read_name(study)
    path = Path(out) if out else Path(f"{study.replace('/', '_')}.html")
    # Never the study database, never a file that is not a page sweep wrote: checked before reading.
    database = sqlite_file(storage or default_storage())
    target = check_replaceable(path, "--out", [database] if database else [])
    page = build_html(study, storage)
    atomic_write_text(target, page, "dashboard")
    print(path)
    return 0
