"""The review page: what the pure builder puts in it, that it fetches nothing, that it escapes,
and ``surgecast review`` and the controller's ``/ui`` on a log filled by a replayed morning.

The browser side (the chart drawn, hover, click, filters) is in tests/test_review_browser.py.
"""

from __future__ import annotations

import html
import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from controller.cli import app
from controller.decisions import DecisionLog, DecisionRecord
from controller.explain import explain
from controller.http import ControllerHTTPServer
from controller.review import review_page, review_route
from tests.test_cli_decisions import SCALER, Replayed, replayed  # noqa: F401 (a fixture)
from tests.test_decisions import T0, sample

runner = CliRunner()
REPLAY_END = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)
"""The end of the replayed morning (tests/test_cli_decisions.py): the served page's "now"."""


def page(records: list[DecisionRecord], **options: object) -> str:
    """The page of ``records``, every scaler they name shown."""
    by_scaler: dict[str, list[DecisionRecord]] = {}
    for record in records:
        by_scaler.setdefault(record.scaler, []).append(record)
    return review_page(sorted(by_scaler), by_scaler, since=T0, **options)  # type: ignore[arg-type]


def figure(text: str, index: int = 0) -> dict:
    """The plotly figure of chart ``index``, as the page hands it to plotly.js."""
    found = re.search(rf'drawChart\("chart-{index}", (\{{.*?\}})\);</script>', text, re.S)
    assert found, "no chart in the page"
    return json.loads(found.group(1))


def row_ids(text: str) -> list[str]:
    return re.findall(r'<tr id="(decision-\d+-\d+)"', text)


def morning() -> list[DecisionRecord]:
    """Up, up, up, a hold, and a fallback without a forecast: one of each kind the page marks."""
    ups = [sample(n) for n in range(3)]
    hold = sample(3, reason="Hold/WithinTolerance", current_replicas=33, replicas=33, clamps=())
    fallback = sample(
        4,
        reason="FallbackReactive/ForecastMissing",
        fallback="ForecastMissing",
        forecast_peak=None,
        predictive=None,
        observed_load=None,
        current_replicas=33,
        replicas=33,
        clamps=(),
    )
    return [*ups, hold, fallback]


def test_page_holds_every_decision_and_its_explanation() -> None:
    records = morning()
    text = page(records, tz="Asia/Shanghai")
    assert row_ids(text) == [f"decision-0-{n}" for n in range(5)]
    for record in records:
        assert html.escape(explain(record, "Asia/Shanghai")) in text
    assert "time (Asia/Shanghai)" in text and '<a href="#scaler-0">prod/portal</a>' in text
    assert "3 up, 0 down, 1 without a usable forecast" in text
    forecast, _area, load, capacity, replicas, markers = figure(text)["data"]
    assert forecast["x"][0] == "2026-11-20T17:00:00+08:00"  # 09:00 UTC in Shanghai
    assert forecast["y"] == [r.forecast_peak for r in records]
    assert forecast["name"] == "forecast p90, peak over the lead window"
    assert load["y"] == [r.observed_load for r in records]
    assert capacity["y"] == [r.replicas * 100.0 for r in records]
    assert replicas["y"] == [r.replicas for r in records]
    # The hold is not marked; the scale-ups and the fallback are, each with its sentence.
    assert markers["customdata"] == ["decision-0-0", "decision-0-1", "decision-0-2", "decision-0-4"]
    assert markers["marker"]["symbol"] == ["triangle-up"] * 3 + ["x"]
    hover = markers["hovertext"][0]
    assert hover.startswith("<b>2026-11-20 17:00:00 ScaleUp/ForecastPeak</b><br>would have")
    assert hover.replace("<br>", " ").endswith(html.escape(explain(records[0], "Asia/Shanghai")))
    assert get_plotlyjs() in text  # inlined, not fetched


def test_page_fetches_nothing() -> None:
    text = page(morning())

    class References(HTMLParser):
        """Every URL an element of the page would load or link to."""

        def __init__(self) -> None:
            super().__init__()
            self.urls: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            names = ("src", "href", "action", "data", "poster", "srcset")
            self.urls += [value or "" for name, value in attrs if name in names]

    parser = References()
    parser.feed(text)
    assert parser.urls and not [url for url in parser.urls if re.match(r"\s*(https?:)?//", url)]
    # Outside plotly.js (whose strings name sites it never fetches for these charts), no
    # address at all.
    rest = text.replace(get_plotlyjs(), "")
    assert "http://" not in rest and "https://" not in rest and "<script src" not in rest


def test_page_escapes_html_in_names_and_messages() -> None:
    evil = '<img src=x onerror="alert(1)">'
    record = sample(
        0,
        scaler="prod/<b>portal</b>",
        target=f"Deployment/{evil}",
        reason=f"ScaleUp/{evil}",
        message=evil,
        clamps=(f"ScheduledOverride/{evil}",),
        override=evil,
        model_version=evil,
    )
    text = page([record])
    assert evil not in text and "<b>portal</b>" not in text
    assert "<h2>prod/&lt;b&gt;portal&lt;/b&gt;</h2>" in text
    assert html.escape(f"Deployment/{evil}") in text
    assert f'data-reason="{html.escape(f"ScaleUp/{evil}")}"' in text
    # In the hover label (which plotly reads as HTML) the override is escaped too.
    hover = figure(text)["data"][-1]["hovertext"][0].replace("<br>", " ")
    assert 'scheduled override &lt;img src=x onerror="alert(1)"&gt; sets' in hover


def test_empty_log_gives_a_clear_page() -> None:
    text = review_page([], {}, since=T0)
    assert "The decision log holds no decisions yet." in text
    assert get_plotlyjs() not in text and "<table" not in text and len(text) < 10_000
    quiet = review_page(["prod/portal", "prod/search"], {"prod/portal": []}, since=T0)
    assert "No decisions of prod/portal in this window." in quiet
    assert "<li>prod/search (not on this page)</li>" in quiet and "<table" not in quiet


def test_page_says_when_the_window_was_cut_short() -> None:
    records = [sample(n) for n in range(3)]
    assert "Only the newest 3 are shown" in page(records, limit=3)
    assert "Only the newest" not in page(records, limit=4)


def test_until_and_the_filters_cover_the_window() -> None:
    records = morning()
    text = page(records, until=T0 + timedelta(hours=1))
    assert "Decisions from 2026-11-20 09:00 to 2026-11-20 10:00 (UTC)." in text
    assert 'min="2026-11-20T09:00" max="2026-11-20T09:04"' in text
    assert re.findall(r'<option value="([^"]*)"', text) == [
        "",
        "FallbackReactive",
        "FallbackReactive/ForecastMissing",
        "Hold",
        "Hold/WithinTolerance",
        "ScaleUp",
        "ScaleUp/ForecastPeak",
        "",
        "yes",
        "no",
    ]
    applied = page([replace(records[0], applied=True, applied_at=T0), *records[1:]])
    assert re.findall(r'data-applied="(\w+)"', applied) == ["yes", "no", "no", "no", "no"]


def test_the_time_axis_runs_forward_when_clocks_fall_back() -> None:
    """Europe/Berlin falls back at 01:00 UTC on 2026-10-25: wall times 02:00-02:59 come twice.

    plotly.js places a time by its wall clock and ignores any offset, so the chart gets the
    offset of the first decision throughout, with ticks that read as the clocks did.
    """
    start = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)  # 01:30 CEST
    records = [sample(n, at=start + timedelta(minutes=15 * n)) for n in range(12)]
    text = page(records, tz="Europe/Berlin")
    forecast = figure(text)["data"][0]
    assert forecast["x"][:2] == ["2026-10-25T01:30:00+02:00", "2026-10-25T01:45:00+02:00"]
    assert forecast["x"][5:7] == ["2026-10-25T02:45:00+02:00", "2026-10-25T03:00:00+02:00"]
    assert forecast["x"] == sorted(set(forecast["x"]))  # forward, every time distinct
    axis = figure(text)["layout"]["xaxis2"]
    assert axis["tickvals"] == [
        f"2026-10-25T{hour}:00+02:00" for hour in ("01:30", "02:00", "02:30", "03:00", "03:30")
    ] + ["2026-10-25T04:00:00+02:00"]
    assert axis["ticktext"] == [
        "01:30<br>2026-10-25",
        "02:00 +02:00",
        "02:30 +02:00",
        "02:00 +01:00",
        "02:30 +01:00",
        "03:00",
    ]
    # The table and the hover labels: wall times, with the offset in the repeated hour; the
    # filters compare the rows' data-at, a time with its offset, as moments.
    assert re.findall(r'data-at="([^"]+)"><td>([^<]+)</td>', text)[4:8] == [
        ("2026-10-25T02:30:00+02:00", "2026-10-25 02:30:00 +02:00"),
        ("2026-10-25T02:45:00+02:00", "2026-10-25 02:45:00 +02:00"),
        ("2026-10-25T02:00:00+01:00", "2026-10-25 02:00:00 +01:00"),
        ("2026-10-25T02:15:00+01:00", "2026-10-25 02:15:00 +01:00"),
    ]
    assert "2026-10-25 03:00:00</td>" in text
    assert 'data-zone="Europe/Berlin"' in text  # the filters read times typed in it
    hover = figure(text)["data"][-1]["hovertext"]
    assert hover[6].startswith("<b>2026-10-25 02:00:00 +01:00 ScaleUp/ForecastPeak</b>")
    # Without an offset change, plotly's own ticks read the zone's wall time.
    assert "tickvals" not in figure(page(records, tz="Asia/Shanghai"))["layout"]["xaxis2"]


# -- surgecast review ------------------------------------------------------------------------


def review(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["review", *args])
    return result.exit_code, result.output


def test_cli_writes_the_page(replayed: Replayed, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "page.html"
    code, output = review(
        *("--db", replayed.db, "--since", "2026-11-09", "--tz", "Asia/Shanghai", "-o", str(out))
    )
    assert code == 0 and output == f"wrote {out}\n", output
    text = out.read_text(encoding="utf-8")
    with DecisionLog(replayed.db) as log:
        records = log.list(SCALER)
    assert len(row_ids(text)) == len(records) == 4 * 60
    assert html.escape(explain(records[-1], "Asia/Shanghai")) in text
    code, output = review(
        *(SCALER, "--db", replayed.db, "--since", "2026-11-10 01:00"),
        *("--until", "2026-11-10 01:30", "-o", str(out)),
    )
    assert code == 0, output
    assert len(row_ids(out.read_text(encoding="utf-8"))) == 30


def test_cli_errors(replayed: Replayed, tmp_path: Path) -> None:  # noqa: F811
    db = ("--db", replayed.db)
    out = ("-o", str(tmp_path / "page.html"))
    cases = [
        ([*db], "give -o PAGE.html to write the page, --serve to serve it, or both"),
        (["prod/nope", *db, *out], f"no decisions of prod/nope in {replayed.db}; it has {SCALER}"),
        (["--db", f"sqlite:///{tmp_path / 'missing.db'}", *out], "no decision log at"),
        ([*db, "--tz", "Mars/Base", *out], "not a time zone"),
        ([*db, "--since", "yesterday", *out], "--since 'yesterday' is not a time"),
        ([*db, "--since", "3000000000d", *out], "'3000000000d' is too long a duration"),
        ([*db, "--since", "999999d", *out], "--since 999999d reaches back before the year 1"),
        (
            [*db, "--serve", "--port", "70000"],
            "--port 70000 is not from 0 (any free port) to 65535",
        ),
        ([*db, "--serve", "--port", "-1"], "--port -1 is not from 0 (any free port) to 65535"),
        (
            [*db, "-o", str(tmp_path / "no" / "page.html")],
            f"cannot write {tmp_path / 'no' / 'page.html'}: no directory {tmp_path / 'no'}",
        ),
        ([*db, "-o", str(tmp_path)], f"cannot write {tmp_path}: Is a directory"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["review", *args])
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
    assert not (tmp_path / "page.html").exists()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.mark.slow
def test_cli_serves_the_page_until_interrupted(replayed: Replayed) -> None:  # noqa: F811
    surgecast = Path(sys.executable).with_name("surgecast")
    process = subprocess.Popen(
        [str(surgecast), "review", "--db", replayed.db, "--since", "2026-11-09"]
        + ["--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        found = re.fullmatch(r"serving (http://127\.0\.0\.1:\d+/ui) \(Ctrl-C to stop\)\n", line)
        assert found, (line, process.stderr.read() if process.poll() is not None else "")  # type: ignore[union-attr]
        status, content_type, text = get(found.group(1))
        assert (status, content_type) == (200, "text/html; charset=utf-8")
        assert len(row_ids(text)) == 4 * 60
        status, _, text = get(found.group(1).removesuffix("ui") + "?scaler=prod/nope")
        assert status == 200 and "The decision log has no decisions of prod/nope at all." in text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- the controller's /ui ----------------------------------------------------------------------


@pytest.fixture
def controller_http(replayed: Replayed):  # noqa: F811
    """The controller's endpoints with /ui over the replayed log, as `controller run` wires them."""
    with DecisionLog(replayed.db) as log:
        server = ControllerHTTPServer(
            CollectorRegistry(), lambda: (True, "ok"), lambda: (True, "ok"), "127.0.0.1", 0
        )
        server.routes["/ui"] = review_route(log, clock=lambda: REPLAY_END)
        server.start()
        yield server
        server.stop()


def test_controller_serves_the_page_at_ui(controller_http: ControllerHTTPServer) -> None:
    base = f"http://127.0.0.1:{controller_http.port}"
    status, content_type, text = get(f"{base}/ui")
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert len(row_ids(text)) == 4 * 60 and "time (UTC)" in text  # the last 24 hours
    status, _, text = get(f"{base}/ui?scaler={SCALER}&tz=Asia/Shanghai&since=1h")
    assert status == 200 and len(row_ids(text)) == 60 and "time (Asia/Shanghai)" in text
    status, _, text = get(f"{base}/ui/?scaler=prod/nope")
    assert status == 200 and "The decision log has no decisions of prod/nope at all." in text
    assert f"<li>{SCALER} (not on this page)</li>" in text
    assert get(f"{base}/ui?tz=Mars/Base")[::2] == (
        400,
        "'Mars/Base' is not a time zone like Europe/Berlin or Asia/Shanghai\n",
    )
    assert get(f"{base}/ui?since=soon")[::2] == (
        400,
        "'soon' is not a duration like 30s, 3m, 1h30m or 28d\n",
    )
    assert get(f"{base}/ui?since=999999d")[::2] == (400, "999999d reaches back before the year 1\n")
    assert get(f"{base}/metrics")[0] == 200


def test_a_failing_page_answers_500_and_the_probes_go_on(
    controller_http: ControllerHTTPServer,
) -> None:
    def broken(_: str) -> tuple[int, str, bytes]:
        raise RuntimeError("the database went away")

    controller_http.routes["/ui"] = broken
    base = f"http://127.0.0.1:{controller_http.port}"
    assert get(f"{base}/ui")[0] == 500
    assert get(f"{base}/healthz")[::2] == (200, "ok\n")
