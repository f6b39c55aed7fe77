"""The capacity outlook and its feed at the edges a capacity planner and a page reader meet:
bounds that change within an hour, and what the outlook claims about hours it cannot see."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from controller._cli_outlook import SeriesOutlook, _chart_png
from controller.cli import app
from controller.outlook import HOUR, QUARTER_COLUMNS, project, risk_message, risks, wall_clock
from controller.policy import Override, PolicySpec, effective_bounds, needed_replicas

NOW = datetime(2026, 11, 14, 16, 0, tzinfo=UTC)
STORE_V1 = Path(__file__).parent / "fixtures" / "model-store-v1"


def spec(max_replicas: int, *overrides: Override, delay: timedelta = timedelta(minutes=3)):
    return PolicySpec(
        min_replicas=1,
        max_replicas=max_replicas,
        capacity_per_replica=20.0,
        startup_delay=delay,
        overrides=overrides,
    )


def forecast(values: list[float], freq: str = "10min") -> pd.DataFrame:
    ds = pd.date_range("2026-11-14 16:00", periods=len(values), freq=freq)
    upper = np.asarray(values, dtype=float)
    return pd.DataFrame({"unique_id": "s", "ds": ds, "yhat": upper / 2, "q0.9": upper})


def utc(text: str) -> datetime:
    return pd.Timestamp(text, tz="UTC").to_pydatetime()


# -- bounds that change within an hour ---------------------------------------------------------


def test_a_surge_that_outlasts_the_raised_max_is_at_risk_in_the_hour_the_window_closes() -> None:
    """The deadline window raises max to 40 until 18:30; the surge runs on to 19:00 at a load
    that needs 25 replicas, against max 10 again. Judged at its 18:00 peak (700, under the
    window's 40 x 20) the hour was fine, and no hour was ever flagged."""
    hours = project(forecast([10] * 12 + [700] * 3 + [500] * 3 + [10] * 1000), 0.9, NOW, 7)
    window = Override("deadline", utc("2026-11-14 17:00"), utc("2026-11-14 18:30"), None, 40)
    (found,) = risks(hours, spec(10, window), NOW)
    assert found.start == pd.Timestamp("2026-11-14 18:00", tz="UTC")
    assert (found.peak, found.max_replicas, found.shortfall) == (500.0, 10, 15)
    # The window's own half hour (700 needs 35 of its 40) is carried: no invented risk.
    longer = Override("deadline", window.start, utc("2026-11-14 19:00"), None, 40)
    assert risks(hours, spec(10, longer), NOW) == []


def test_a_freeze_from_a_half_hour_is_judged_on_the_load_after_it_starts() -> None:
    """A change freeze from 09:00 in Kolkata (03:30 UTC) holds max at 2; the hour 03:00 UTC
    peaks at 03:05 (under max 10) and still needs 4 replicas after 03:30."""
    values = [10] * (11 * 6) + [150, 50, 50, 80, 80, 80] + [10] * 1000
    hours = project(forecast(values), 0.9, NOW, 7)
    freeze = Override("freeze", utc("2026-11-15 03:30"), utc("2026-11-15 12:30"), None, 2)
    (found,) = risks(hours, spec(10, freeze), NOW)
    assert found.start == pd.Timestamp("2026-11-15 03:00", tz="UTC")
    assert (found.peak, found.max_replicas, found.shortfall) == (80.0, 2, 2)


def test_a_coarse_interval_counts_in_every_quarter_it_runs_in() -> None:
    """A two-hour interval's load runs all two hours: a max lowered at 17:30 meets it."""
    hours = project(forecast([10, 100, 10, 10], freq="2h"), 0.9, NOW, 1)
    assert list(hours["peak"][:4]) == [10, 10, 100, 100]
    freeze = Override("freeze", utc("2026-11-14 19:30"), utc("2026-11-14 20:00"), None, 2)
    (found,) = risks(hours, spec(10, freeze), NOW)
    assert found.start == pd.Timestamp("2026-11-14 19:00", tz="UTC") and found.shortfall == 3


QUARTER_MINUTES = st.integers(0, 30 * 4 - 1).map(lambda n: pd.Timedelta(minutes=15 * n))


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.floats(0, 400, allow_nan=False), min_size=12, max_size=12 * 30),
    windows=st.lists(
        st.tuples(QUARTER_MINUTES, st.integers(1, 12), st.integers(1, 30)), max_size=3
    ),
    max_replicas=st.integers(1, 20),
)
def test_every_interval_is_judged_against_the_bounds_in_force_then(
    values: list[float], windows: list[tuple[pd.Timedelta, int, int]], max_replicas: int
) -> None:
    """On quarter-hour bounds, the hours at risk and their shortfalls are exactly those of
    judging every 5-minute interval against :func:`effective_bounds` at its start, as the
    policy will when it gets there (a lead time of a quarter keeps its edges on quarters)."""
    start = pd.Timestamp("2026-11-14 16:00", tz="UTC")
    overrides = tuple(
        Override(f"o{n}", start + at, start + at + quarters * pd.Timedelta(minutes=15), None, high)
        for n, (at, quarters, high) in enumerate(windows)
    )
    limits = spec(max_replicas, *overrides, delay=timedelta(minutes=14, seconds=30))
    frame = forecast(values, freq="5min")
    found = risks(project(frame, 0.9, NOW, 7), limits, NOW)

    worst: dict[pd.Timestamp, int] = {}
    for at, load in zip(frame["ds"], frame["q0.9"], strict=True):
        high = effective_bounds(limits, at.tz_localize("UTC").to_pydatetime())[1]
        short = needed_replicas(load, 20.0) - high
        if short > 0:
            hour = at.floor("h").tz_localize("UTC")
            worst[hour] = max(worst.get(hour, 0), short)
    assert {r.start: r.shortfall for r in found} == worst


# -- surgecast outlook ---------------------------------------------------------------------------


def test_the_html_chart_draws_one_band_per_run_of_hours_at_risk(tmp_path: Path) -> None:
    """Each hour at risk was its own ``add_vrect``, and plotly copies every shape added
    before at each one: a week with a max far too low (a planner's first try) took minutes
    to draw for one series. Now a run of hours at risk is one band, all drawn at once."""
    chart = tmp_path / "outlook.html"
    args = ["outlook", "--model", str(STORE_V1), "--capacity-per-replica", "30"]
    result = CliRunner().invoke(
        app, [*args, "--max-replicas", "1", "--days", "2", "--json", "-o", str(chart)]
    )
    assert result.exit_code == 0, result.output
    listed = result.stdout  # --json is for jq: the note that a chart was written is on stderr
    assert result.stderr == f"chart written to {chart}\n"
    hours = [
        {pd.Timestamp(r["hour"]).tz_localize(None) for r in series["at_risk"]}
        for series in json.loads(listed)
    ]
    assert all(len(one) > 24 for one in hours)  # most of the 48: many bands, one per hour
    bands = re.findall(
        r'"type":"rect","x0":"([^"]+)","x1":"([^"]+)","xref":"x(\d*)"', chart.read_text()
    )
    drawn: list[set[pd.Timestamp]] = [set() for _ in hours]
    for x0, x1, axis in bands:
        span = set(pd.date_range(x0, x1, freq="1h", inclusive="left"))
        assert pd.Timestamp(x0) - HOUR not in hours[int(axis or 1) - 1]  # a run starts here
        drawn[int(axis or 1) - 1] |= span
    assert drawn == hours
    assert len(bands) == sum(len({t for t in one if t - HOUR not in one}) for one in hours)


def test_the_json_listing_stays_json_when_a_chart_is_written_too(tmp_path: Path) -> None:
    """``--json -o chart.png | jq`` failed: "chart written to" followed the JSON on stdout."""
    chart = tmp_path / "outlook.png"
    args = ["outlook", "--model", str(STORE_V1), "--capacity-per-replica", "30"]
    result = CliRunner().invoke(
        app, [*args, "--max-replicas", "2", "--days", "1", "--json", "-o", str(chart)]
    )
    assert result.exit_code == 0, result.output
    assert [s["unique_id"] for s in json.loads(result.stdout)] == ["a", "b"]
    assert chart.read_bytes().startswith(b"\x89PNG")


# -- words -------------------------------------------------------------------------------------


def test_the_hour_the_clocks_show_twice_is_told_apart_by_its_zone() -> None:
    """The night New York's clocks go back, 01:00 EDT and 01:00 EST both read "01:00": a
    message naming the first hour at risk and a worse one named the same hour twice."""
    ds = pd.DatetimeIndex(["2026-11-01 05:00", "2026-11-01 06:00", "2026-11-01 07:00"])
    hours = pd.DataFrame({"ds": ds, "expected": 0.0, "peak": [300.0, 500.0, 100.0], "peak_at": ds})
    hours = hours.assign(**{column: hours["peak"] for column in QUARTER_COLUMNS})
    found = risks(hours, spec(10), datetime(2026, 10, 31, tzinfo=UTC))
    assert risk_message(found, 0.9, "America/New_York", 7) == (
        "2026-11-01 01:00 EDT (America/New_York), in 1d 5h: forecast q0.9 peak 300 exceeds the"
        " 200 that 10 replicas serve: 5 replicas short; 2 hours at risk in the next 7 days, the"
        " worst 2026-11-01 01:00 EST (15 replicas short)"
    )
    other_days = [pd.Timestamp(t, tz="UTC") for t in ("2026-11-01 07:00", "2026-03-08 07:00")]
    assert [wall_clock(t, "America/New_York", "%a %H:%M") for t in other_days] == [
        "Sun 02:00",
        "Sun 03:00",
    ]


def test_a_series_id_with_dollar_signs_is_drawn_as_text(tmp_path: Path) -> None:
    """Ids are URL paths (OData's ``$batch``, ``$filter``): matplotlib read a pair of ``$``
    in a title as mathematics, and one it could not parse made the PNG's save raise."""
    from tests.test_outlook import NOW, forecast, spec

    hours = project(forecast([1.0] * 6 * 22 + [9.0] * 6 * 2), 0.9, NOW, days=1)
    odd = SeriesOutlook("/odata/a/$\\evil$", NOW, hours, risks(hours, spec(3), NOW))
    chart = tmp_path / "outlook.png"
    _chart_png([odd], chart, "UTC", 10.0, 0.9)
    assert chart.read_bytes().startswith(b"\x89PNG")
