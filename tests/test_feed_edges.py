"""Edge cases of the capacity outlook and the public feed: forecasts with holes, empty
outlooks, time zones and HTTP details (:mod:`controller.outlook`, :mod:`controller.feed`)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from controller._cli_outlook import SeriesOutlook, _most_at_risk
from controller.cli import app
from controller.feed import respond
from controller.outlook import (
    QUARTER_COLUMNS,
    Bands,
    Ratings,
    amount,
    language,
    project,
    rate,
    risk_message,
    risks,
    typical_bands,
)
from forecaster import store
from forecaster.frames import write_frame
from forecaster.models import LinearForecaster
from tests.test_feed_browser import CLOCK, scaler
from tests.test_outlook import NOW, forecast, spec

PEAK = pd.Timestamp("2026-11-20 02:00")
STORE_V1 = Path(__file__).parent / "fixtures" / "model-store-v1"


def test_an_hour_the_model_left_without_numbers_is_skipped_not_fatal() -> None:
    """A NaN upper quantile for a whole hour made ``idxmax`` raise, which failed the scaler's
    model job (its short-term forecast included) at every try."""
    frame = forecast([4.0] * 6 * 24)
    frame.loc[6:11, "q0.9"] = np.nan  # 17:00 .. 17:50
    frame.loc[13, "q0.9"] = np.nan  # one interval of 18:00
    hours = project(frame, 0.9, NOW, days=1)
    assert len(hours) == 23 and datetime(2026, 11, 14, 17) not in set(hours["ds"])
    assert hours["peak"].notna().all() and hours["expected"].notna().all()
    assert [r.start.hour for r in risks(hours, spec(3), NOW)][:2] == [16, 18]
    assert len(Ratings.of(hours, Bands(1.0, 3.0), NOW).ratings) == 1  # up to the hole


def test_a_forecast_without_numbers_rates_no_hours_instead_of_raising() -> None:
    """The reconciler rates the outlook at every reconcile without a guard: ``Ratings.of``
    raised ``ValueError`` on an empty projection, so the scaler's status was never written."""
    frame = forecast([4.0] * 6 * 24)
    frame["yhat"] = np.nan
    hours = project(frame, 0.9, NOW, days=1)
    assert hours.empty and risks(hours, spec(3), NOW) == []
    rated = Ratings.of(hours, Bands(1.0, 3.0), NOW, numbers=True)
    assert rated.ratings == () and rated.hours(NOW) == []
    assert rated.start == pd.Timestamp("2026-11-14 16:00", tz="UTC")
    assert Ratings.from_status(rated.to_status()) == rated


@pytest.mark.parametrize("path", ["/feeds/gov/portal.json", "/feeds/gov/portal"])
def test_a_feed_with_no_coming_hour_is_unavailable_not_an_empty_week(path: str) -> None:
    """An outlook whose hours have all ended (none forecast since) or that rated none was
    served as an empty grid saying there are no quiet hours in the coming days."""
    obj = scaler()
    week_later = CLOCK + timedelta(days=7)
    answer = respond(lambda key: obj, path, {}, week_later)
    assert answer.status == 503 and answer.headers["Cache-Control"] == "no-store"
    assert respond(lambda key: obj, path, {}, week_later - timedelta(hours=1)).status == 200
    empty = Ratings.of(project(forecast([]), 0.9, NOW, 1), Bands(1.0, 3.0), NOW)
    obj["status"]["outlook"] = empty.to_status()
    assert respond(lambda key: obj, path, {}, CLOCK).status == 503


def test_the_outlook_cli_reads_a_store_whose_manifest_records_no_step() -> None:
    """A store saved from Python (the format-1 fixture) has no ``step`` in its manifest:
    ``surgecast outlook`` died of ``KeyError: 'step'``; the fitted models know it."""
    args = ["outlook", "--model", str(STORE_V1), "--capacity-per-replica", "30"]
    result = CliRunner().invoke(app, [*args, "--max-replicas", "2", "--days", "2", "--json"])
    assert result.exit_code == 0, result.output
    outlooks = json.loads(result.output)
    assert [o["unique_id"] for o in outlooks] == ["a", "b"]
    assert all(o["from"] == "2026-09-28T00:00:00+00:00" and o["at_risk"] for o in outlooks)
    assert len(outlooks[0]["at_risk"]) <= 48


@pytest.mark.parametrize(
    ("accept", "lang"),
    [("zh;Q=0.8, en;Q=0.7", "zh"), ("en;Q=0, zh", "zh"), ("zh-CN;Q=0.9,en;q=0.95", "en")],
)
def test_an_upper_case_q_weight_counts(accept: str, lang: str) -> None:
    """``Q=`` made the whole entry unreadable, so a Chinese reader got English."""
    assert language(None, accept) == lang


def test_the_outlook_cli_refuses_a_calendar_without_the_models_events_in_one_line(
    tmp_path: Path,
) -> None:
    """The model's ``ValueError`` escaped as a traceback; it is now the one-line error the
    other option problems get."""
    ds = pd.date_range("2026-10-01", periods=14 * 24, freq="1h")
    calendar = pd.DataFrame({"ds": pd.date_range("2026-10-01", periods=20 * 24, freq="1h")})
    calendar["event_launch"] = (calendar["ds"].dt.day % 7 == 0).astype(float)
    history = pd.DataFrame({"unique_id": "s", "ds": ds, "y": ds.hour + 1.0})
    model = LinearForecaster().fit(history, events=calendar)
    metadata = {"step": "3600s", "training": {"events": ["event_launch"]}}
    store.save(
        {"linear": model}, str(tmp_path / "models"), metadata, store.fingerprint(history), NOW
    )
    write_frame(calendar.rename(columns={"event_launch": "event_x"}), tmp_path / "events.csv")
    args = ["outlook", "--model", str(tmp_path / "models"), "--capacity-per-replica", "10"]
    args += ["--max-replicas", "5", "--events", str(tmp_path / "events.csv")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "the events calendar lacks the event column(s) event_launch" in result.output


def test_a_public_feed_of_a_scaler_whose_outlook_is_off_is_not_found() -> None:
    """It answered 503 "no outlook yet: try again in a minute" (Retry-After: 60) forever:
    the reconciler writes no outlook while ``spec.outlook.enabled`` is false."""
    obj = scaler(outlook=False)
    obj["spec"]["outlook"] = {"enabled": False}
    for path in ("/feeds/gov/portal.json", "/feeds/gov/portal"):
        answer = respond(lambda key: obj, path, {}, CLOCK)
        assert answer.status == 404 and "Retry-After" not in answer.headers


def test_an_outlook_without_ratings_says_history_is_short_not_try_in_a_minute() -> None:
    """With under a day of load history the reconciler writes the outlook (hours at risk)
    but no ratings; the feed said "try again in a minute" (Retry-After: 60) for that day."""
    obj = scaler(outlook=False)
    obj["status"] = {"outlook": {"hoursAtRisk": 0}}
    answer = respond(lambda key: obj, "/feeds/gov/portal.json", {}, CLOCK)
    assert answer.status == 503 and answer.headers["Retry-After"] == "3600"
    assert answer.body == b"not enough history yet to rate hours\n"
    assert "hoursAtRisk" not in answer.body.decode()


@pytest.mark.parametrize(
    "change", [{"expected": [None] * 168}, {"expected": 5}, {"start": None}, {"generatedAt": None}]
)
def test_a_malformed_outlook_status_is_refused_with_value_error(change: dict) -> None:
    """``from_status`` promises ``ValueError``; these raised ``TypeError`` (an HTTP 500 and a
    logged traceback per public request) or read as an outlook starting at NaT."""
    obj = scaler()
    obj["status"]["outlook"].update(change)
    with pytest.raises(ValueError, match="not an outlook status"):
        Ratings.from_status(obj["status"]["outlook"])
    assert respond(lambda key: obj, "/feeds/gov/portal.json", {}, CLOCK).status == 503


def test_large_loads_read_as_numbers_not_exponents() -> None:
    """``.4g`` wrote a 12,345.6 rps peak against 10,000 as "peak 1.235e+04 exceeds the
    1e+04" in the CapacityAtRisk condition and Event, and the public widget "(1.23e+04)"."""
    hours = pd.DataFrame({"ds": [PEAK], "expected": [9876.5], "peak": [12345.6], "peak_at": [PEAK]})
    hours = hours.assign(**{column: hours["peak"] for column in QUARTER_COLUMNS})
    (found,) = risks(hours, spec(20, 500.0), NOW)
    assert "peak 12,346 exceeds the 10,000 that 20 replicas serve: 5 replicas short" in (
        risk_message([found], 0.9, "UTC", 7)
    )
    assert [amount(v) for v in (0.0, 12.345, 987.64, -1500.0)] == ["0", "12.35", "987.6", "-1,500"]
    obj = scaler(numbers=True)
    obj["status"]["outlook"]["expected"] = [12345.6] * 168
    widget = respond(lambda key: obj, "/feeds/gov/portal", {}, CLOCK).body.decode()
    assert "title='Sun 15 Nov 00:00 Quiet (12,346)'" in widget and "e+04" not in widget


def test_an_answer_is_not_cached_past_the_end_of_the_hour_under_way() -> None:
    """``max-age=300`` at 16:58 let caches show the 16:00 hour as the first until 17:03."""
    obj = scaler()
    late = CLOCK.replace(minute=58, second=30)
    answer = respond(lambda key: obj, "/feeds/gov/portal.json", {}, late)
    assert answer.headers["Cache-Control"] == "public, max-age=90"
    assert json.loads(answer.body)["hours"][0]["start"] == "2026-11-15T00:00:00+08:00"
    on_the_hour = respond(lambda key: obj, "/feeds/gov/portal", {}, late.replace(minute=0))
    assert on_the_hour.headers["Cache-Control"] == "public, max-age=300"


def test_ratings_are_measured_against_the_last_four_weeks_only() -> None:
    """The controller passes its whole history window (``retrain.historyWindow``, up to
    400 days): a service that doubled since then had its quiet nights rated normal."""
    ds = pd.date_range("2026-08-01", "2026-11-14 15:00", freq="1h")
    daily = np.where((ds.hour >= 9) & (ds.hour < 17), 10.0, 1.0)
    grown = np.where(ds >= ds[-1] - pd.Timedelta(weeks=4), 2.0, 1.0)
    history = pd.DataFrame({"ds": ds, "y": daily * grown})
    bands = typical_bands(history)
    assert bands == Bands(2.0, 20.0)
    assert list(rate(np.array([2.0, 10.0, 20.0]), bands)) == ["quiet", "normal", "busy"]


@pytest.mark.parametrize("suffix", [".png", ".html"])
def test_a_chart_that_cannot_be_written_is_one_clear_line(tmp_path: Path, suffix: str) -> None:
    """A missing folder in ``-o`` ended the command in a ``FileNotFoundError`` traceback."""
    chart = tmp_path / "missing" / f"outlook{suffix}"
    args = ["outlook", "--model", str(STORE_V1), "--capacity-per-replica", "30"]
    result = CliRunner().invoke(
        app, [*args, "--max-replicas", "3", "--days", "1", "-o", str(chart)]
    )
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert f"--out {chart}: No such file or directory" in result.output


def test_the_chart_draws_the_last_hour_too(tmp_path: Path) -> None:
    """Steps through the hours' starts ended at the last start: the outlook's last hour
    (at risk or not) had no width in either chart."""
    chart = tmp_path / "outlook.html"
    args = ["outlook", "--model", str(STORE_V1), "--capacity-per-replica", "30"]
    result = CliRunner().invoke(
        app, [*args, "--max-replicas", "10", "--days", "1", "-o", str(chart)]
    )
    assert result.exit_code == 0, result.output
    xs = [x.split(",") for x in re.findall(r'"x":\[([^\]]*)\]', chart.read_text())]
    assert len(xs) == 4  # two traces per series
    assert all(x[-1].strip('"').startswith("2026-09-29T00:00:00") for x in xs)  # 23:00's end


@pytest.mark.parametrize("path", ["/", "/healthz", "/healthz?probe=1"])
def test_a_load_balancer_health_check_gets_200_from_the_feed_port(path: str) -> None:
    """A GKE Ingress or an ALB in front of the feed checks ``GET /`` unless told otherwise:
    a 404 there marked the whole feed unhealthy, with no scaler at all involved."""
    answer = respond(lambda key: None, path, {}, CLOCK)
    assert answer.status == 200 and answer.body == b"ok\n"
    assert answer.headers["Cache-Control"] == "no-store"


def test_the_health_paths_do_not_shadow_a_feed() -> None:
    assert respond(lambda key: None, "/feeds/gov/pension", {}, CLOCK).status == 404
    assert respond(lambda key: None, "/healthz/x", {}, CLOCK).status == 404


def test_a_fleet_chart_shows_the_series_most_at_risk_first() -> None:
    """``surgecast outlook -o`` drew one panel per series: 190 series took 200 s and made a
    picture 68,400 pixels tall, with the series at risk somewhere in it."""

    def one(name: str, level: float, spike: float) -> SeriesOutlook:
        hours = project(forecast([level] * 6 * 22 + [spike] * 6 * 2), 0.9, NOW, days=1)
        return SeriesOutlook(name, NOW, hours, risks(hours, spec(3), NOW))

    fleet = [
        one("quiet", 1.0, 1.0),
        one("louder", 2.0, 2.5),
        one("short", 1.0, 9.0),
        one("shortest", 5.0, 9.0),
    ]
    assert [len(o.risks) for o in fleet] == [0, 0, 2, 24]
    assert [o.unique_id for o in _most_at_risk(fleet, 3)] == ["shortest", "short", "louder"]
    assert len(_most_at_risk(fleet, 10)) == 4
