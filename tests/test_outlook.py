"""The capacity outlook and busy-hours ratings (:mod:`controller.outlook`): tables of cases,
properties, and the synthetic portal with a filing deadline five days ahead."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.forecasting import event_calendar
from controller.outlook import (
    LANGUAGES,
    QUARTER_COLUMNS,
    Bands,
    Ratings,
    ahead_label,
    day_label,
    language,
    project,
    quiet_windows,
    rate,
    risk_message,
    risks,
    typical_bands,
    window_label,
)
from controller.policy import Override, PolicySpec
from forecaster.generate import TrafficProfile, generate_traffic
from forecaster.models import GradientBoostingForecaster

ZONE = "Asia/Shanghai"
NOW = datetime(2026, 11, 14, 16, 0, tzinfo=UTC)  # Sunday 15 November, 00:00 in Shanghai
DEADLINES = (date(2026, 10, 20), date(2026, 11, 5), date(2026, 11, 20))
"""Two filing deadlines in the history, and one on Friday 20 November: five days ahead."""


def deadline_windows() -> tuple[Override, ...]:
    """The deadlines as a scaler's ``spec.events`` windows: whole local days."""
    return tuple(
        Override(
            "deadline",
            pd.Timestamp(day).tz_localize(ZONE).to_pydatetime(),
            (pd.Timestamp(day) + pd.Timedelta(days=1)).tz_localize(ZONE).to_pydatetime(),
        )
        for day in DEADLINES
    )


@lru_cache(maxsize=4)
def portal(freq: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Five weeks of the generator's portal traffic before ``NOW`` and the week after, as
    requests per second at ``freq`` (``history``, ``future``)."""
    profile = TrafficProfile(service="portal", peak_rps=5.0, deadlines=DEADLINES)
    truth = generate_traffic(profile, date(2026, 10, 12), 42, seed=1).true_counts(freq)
    truth["y"] = truth["y"] / pd.Timedelta(freq).total_seconds()
    cut = pd.Timestamp(NOW).tz_localize(None)
    return truth[truth["ds"] < cut].reset_index(drop=True), truth[truth["ds"] >= cut]


def spec(max_replicas: int, capacity: float = 1.0, **changes: object) -> PolicySpec:
    return PolicySpec(
        min_replicas=1,
        max_replicas=max_replicas,
        capacity_per_replica=capacity,
        startup_delay=timedelta(minutes=3),
        **changes,  # type: ignore[arg-type]
    )


def forecast(values: list[float], start: str = "2026-11-14 16:00", freq: str = "10min"):
    ds = pd.date_range(start, periods=len(values), freq=freq)
    upper = np.asarray(values, dtype=float)
    return pd.DataFrame({"unique_id": "s", "ds": ds, "yhat": upper / 2, "q0.9": upper})


# -- the synthetic portal: a deadline five days ahead ----------------------------------------


@pytest.mark.slow
def test_the_outlook_flags_the_deadline_days_peak_hours() -> None:
    history, future = portal("1h")
    step = pd.Timedelta("1h")
    end = pd.Timestamp(NOW).tz_localize(None) + pd.Timedelta(days=8)
    events = event_calendar(deadline_windows(), history["ds"].min(), end, step)
    model = GradientBoostingForecaster(country="CN", tz=ZONE, max_horizon=7 * 24)
    predicted = model.fit(history, events=events).predict(7 * 24 + 1, (0.5, 0.9), events)
    hours = project(predicted, 0.9, NOW, days=7)

    # 10 replicas of 1.25 requests/s carry every ordinary day, not a deadline's 4x surge.
    found = risks(hours, spec(10, 1.25), NOW)
    local = [r.start.tz_convert(ZONE) for r in found]
    assert {t.date() for t in local} == {date(2026, 11, 20)}
    assert {9, 10} <= {t.hour for t in local}  # the morning peak
    assert all(8 <= t.hour <= 17 for t in local)  # office hours only
    truth = future.set_index("ds")["y"].resample("1h").mean()
    assert all(truth[r.start.tz_localize(None)] > 12.5 * 0.8 for r in found)  # real surges
    first = found[0]
    assert timedelta(days=5) < first.ahead < timedelta(days=6)
    message = risk_message(found, 0.9, ZONE, 7)
    assert message.startswith(f"2026-11-20 {local[0]:%H}:00 (Asia/Shanghai), in 5d ")
    assert "replicas short" in message and f"{len(found)} hours at risk" in message

    assert risks(hours, spec(20, 1.25), NOW) == []  # raising max clears it
    ratings = Ratings.of(hours, typical_bands(history), NOW)  # type: ignore[arg-type]
    on_deadline = [r for s, r, _ in ratings.hours(NOW) if s.tz_convert(ZONE).day == 20]
    assert on_deadline[10] == "busy" and on_deadline[3] == "quiet"


# -- hourly summary ----------------------------------------------------------------------------


def test_project_summarises_each_coming_hour() -> None:
    values = [1, 2, 3, 4, 5, 6, 9, 8, 7, 6, 5, 4] + [1] * 24 * 6
    hours = project(forecast(values, start="2026-11-14 15:40"), 0.9, NOW, days=1)
    assert hours["ds"].iloc[0] == pd.Timestamp("2026-11-14 16:00")  # 15:40-15:50 is past
    assert len(hours) == 24 and hours["ds"].diff().dropna().eq(pd.Timedelta("1h")).all()
    first = hours.iloc[0]  # 16:00 .. 16:50 holds 3, 4, 5, 6, 9, 8
    assert first["peak"] == 9 and first["peak_at"] == pd.Timestamp("2026-11-14 16:40")
    assert first["expected"] == pytest.approx(np.mean([3, 4, 5, 6, 9, 8]) / 2)


def test_project_spreads_a_coarse_interval_over_its_hours_and_stops_where_the_forecast_does() -> (
    None
):
    hours = project(forecast([4, 8, 2], freq="2h"), 0.9, NOW, days=1)
    assert list(hours["peak"]) == [4, 4, 8, 8, 2, 2]  # then nothing: no invented hours


def test_an_infinite_forecast_is_no_number_for_its_hour() -> None:
    """``dropna`` kept ±inf: an infinite ``yhat`` reached ``status.outlook.expected`` (with
    ``feed.showNumbers``), which the API server refuses at every reconcile (JSON has no
    Infinity), and an infinite upper quantile was judged as the hour's peak."""
    frame = forecast([1.0] * 24)
    frame.loc[7, "yhat"] = np.inf  # 17:10
    frame.loc[14, "q0.9"] = -np.inf  # 18:20
    hours = project(frame, 0.9, NOW, days=1)
    assert np.isfinite(hours[["expected", "peak", *QUARTER_COLUMNS]].to_numpy()).all()
    assert list(hours["expected"]) == [0.5] * 4  # the other intervals of each hour remain
    status = Ratings.of(hours, Bands(0.2, 0.8), NOW, numbers=True).to_status()
    assert json.loads(json.dumps(status, allow_nan=False))["expected"] == [0.5] * 4


def test_project_starts_at_the_next_whole_hour() -> None:
    hours = project(forecast([1] * 60), 0.9, NOW + timedelta(minutes=1), days=1)
    assert hours["ds"].iloc[0] == pd.Timestamp("2026-11-14 17:00")


# -- risks -------------------------------------------------------------------------------------

PEAK_HOUR = pd.Timestamp("2026-11-20 02:00")  # 10:00 in Shanghai


def flat_hours(ds: pd.DatetimeIndex, peaks: list[float]) -> pd.DataFrame:
    """Hours as :func:`project` writes them, each at its peak all hour long."""
    hours = pd.DataFrame(
        {"ds": ds, "expected": np.asarray(peaks) / 2, "peak": peaks, "peak_at": ds}
    )
    return hours.assign(**{column: hours["peak"] for column in QUARTER_COLUMNS})


def one_hour(peak: float, at: pd.Timestamp = PEAK_HOUR) -> pd.DataFrame:
    return flat_hours(pd.DatetimeIndex([at]), [peak])


@pytest.mark.parametrize(
    ("peak", "max_replicas", "capacity", "shortfall"),
    [
        (10.0, 10, 1.0, None),  # exactly at capacity fits
        (10.01, 10, 1.0, 1),
        (35.0, 10, 1.0, 25),
        (35.0, 10, 4.0, None),
        (35.0, 8, 4.0, 1),
        (0.0, 1, 1.0, None),
    ],
)
def test_risk_is_the_replicas_the_peak_needs_beyond_max(
    peak: float, max_replicas: int, capacity: float, shortfall: int | None
) -> None:
    found = risks(one_hour(peak), spec(max_replicas, capacity), NOW)
    assert [r.shortfall for r in found] == ([] if shortfall is None else [shortfall])
    if found:
        assert found[0].capacity == max_replicas * capacity
        assert found[0].ahead == PEAK_HOUR.tz_localize("UTC") - NOW


def test_an_override_raising_max_for_the_deadline_carries_it() -> None:
    window = Override(
        "deadline",
        datetime(2026, 11, 19, 16, tzinfo=UTC),
        datetime(2026, 11, 20, 16, tzinfo=UTC),
        max_replicas=40,
    )
    assert risks(one_hour(35.0), spec(10, overrides=(window,)), NOW) == []
    lowered = Override("freeze", window.start, window.end, max_replicas=5)
    (found,) = risks(one_hour(8.0), spec(10, overrides=(lowered,)), NOW)
    assert (found.max_replicas, found.shortfall) == (5, 3)


def test_hours_that_have_ended_are_not_at_risk_and_the_current_one_is_now() -> None:
    assert risks(one_hour(35.0), spec(10), PEAK_HOUR.tz_localize("UTC") + timedelta(hours=1)) == []
    (found,) = risks(one_hour(35.0), spec(10), PEAK_HOUR.tz_localize("UTC") + timedelta(minutes=20))
    assert found.ahead == timedelta(0)
    assert (
        risk_message([found], 0.9, ZONE, 7).split(": ")[0]
        == "2026-11-20 10:00 (Asia/Shanghai), now"
    )


def test_risk_message_names_hour_forecast_shortfall_and_lead() -> None:
    hours = pd.concat([one_hour(12.5), one_hour(30.0, PEAK_HOUR + pd.Timedelta("1h"))])
    found = risks(hours, spec(10), NOW)
    assert risk_message(found, 0.95, ZONE, 7) == (
        "2026-11-20 10:00 (Asia/Shanghai), in 5d 10h: forecast q0.95 peak 12.5 exceeds the 10"
        " that 10 replicas serve: 3 replicas short; 2 hours at risk in the next 7 days, the"
        " worst 2026-11-20 11:00 (20 replicas short)"
    )
    assert risk_message(found[:1], 0.9, "UTC", 7).endswith("3 replicas short")


@pytest.mark.parametrize(
    ("ahead", "text"),
    [
        (timedelta(0), "now"),
        (timedelta(seconds=59), "within the hour"),
        (timedelta(minutes=35), "within the hour"),
        (timedelta(hours=3, minutes=59), "in 3h"),
        (timedelta(days=4, hours=9, minutes=30), "in 4d 9h"),
        (timedelta(days=7), "in 7d 0h"),
    ],
)
def test_ahead_label(ahead: timedelta, text: str) -> None:
    assert ahead_label(ahead) == text


@settings(max_examples=200, deadline=None)
@given(
    peaks=st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=48),
    low=st.integers(1, 50),
    extra=st.integers(0, 50),
    capacity=st.floats(0.1, 100, allow_nan=False),
)
def test_raising_max_never_adds_a_risk_and_shortfalls_are_exact(
    peaks: list[float], low: int, extra: int, capacity: float
) -> None:
    start = pd.Timestamp("2026-11-15")
    ds = pd.date_range(start, periods=len(peaks), freq="1h")
    hours = flat_hours(ds, peaks)
    before, after = (
        risks(hours, spec(low, capacity), NOW),
        risks(hours, spec(low + extra, capacity), NOW),
    )
    assert {r.start for r in after} <= {r.start for r in before}
    for r in before:
        assert r.shortfall >= 1 and r.peak > r.capacity - 1e-6
        assert (r.max_replicas + r.shortfall - 1) * capacity < r.peak + 1e-6 * capacity
    assert len(before) == sum(np.ceil(np.asarray(peaks) / capacity - 1e-9) > low)


# -- ratings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "bands", "ratings"),
    [
        ([0.0, 1.0, 2.0, 3.0, 4.0], Bands(1.0, 3.0), ["quiet", "quiet", "normal", "busy", "busy"]),
        ([5.0, 5.0], Bands(5.0, 5.0), ["normal", "normal"]),  # a flat service: nothing stands out
        ([0.0], Bands(0.0, 0.5), ["quiet"]),  # a night with no traffic at all is quiet
    ],
)
def test_rate(expected: list[float], bands: Bands, ratings: list[str]) -> None:
    assert list(rate(np.array(expected), bands)) == ratings


@settings(max_examples=200, deadline=None)
@given(
    expected=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=100),
    low=st.floats(0, 1e6, allow_nan=False),
    width=st.floats(0, 1e6, allow_nan=False),
)
def test_a_higher_load_is_never_rated_quieter(
    expected: list[float], low: float, width: float
) -> None:
    order = np.argsort(expected, kind="stable")
    ranks = [
        ("quiet", "normal", "busy").index(r)
        for r in rate(np.array(expected), Bands(low, low + width))
    ]
    assert (np.diff(np.array(ranks)[order]) >= 0).all()


def test_typical_bands_come_from_observed_hours_of_the_services_own_history() -> None:
    ds = pd.date_range("2026-11-01", periods=24 * 60 * 7, freq="1min")
    y = np.where((ds.hour >= 9) & (ds.hour < 17), 10.0, 1.0)
    y[: 60 * 24] = np.nan  # a day of outage is not a quiet day
    bands = typical_bands(pd.DataFrame({"ds": ds, "y": y}))
    assert bands == Bands(1.0, 10.0)
    assert typical_bands(pd.DataFrame({"ds": ds[: 60 * 23], "y": y[: 60 * 23] + 1})) is None


def test_a_mostly_idle_service_has_quiet_hours_that_a_forecast_can_reach() -> None:
    """Idle 60 % of the hours: the quiet quantile is 0, which no forecast hits exactly, so
    its nights (forecast at 0.15) read "normal" before."""
    ds = pd.date_range("2026-11-01", periods=24 * 60 * 7, freq="1min")
    y = np.where((ds.hour >= 8) & (ds.hour < 18), 100.0, 0.0)
    bands = typical_bands(pd.DataFrame({"ds": ds, "y": y}))
    assert bands == Bands(5.0, 100.0)
    assert list(rate(np.array([0.15, 4.9, 20.0, 100.0]), bands)) == [
        "quiet",
        "quiet",
        "normal",
        "busy",
    ]


def test_the_busy_band_holds_about_a_fifth_of_the_history() -> None:
    history, _ = portal("1h")
    bands = typical_bands(history)
    assert bands is not None
    share = (rate(history["y"].dropna().to_numpy(), bands) == "busy").mean()
    assert 0.15 <= share <= 0.25


def test_ratings_survive_the_status_round_trip() -> None:
    hours = pd.DataFrame(
        {
            "ds": pd.date_range("2026-11-14 16:00", periods=4, freq="1h"),
            "expected": [0.2, 1.5, 3.1234567, 9.0],
        }
    )
    hours["peak"], hours["peak_at"] = hours["expected"], hours["ds"]
    rated = Ratings.of(hours, Bands(1.0, 3.0), NOW, numbers=True)
    status = rated.to_status()
    assert status == {
        "generatedAt": "2026-11-14T16:00:00Z",
        "start": "2026-11-14T16:00:00Z",
        "ratings": "qnbb",
        "expected": [0.2, 1.5, 3.123, 9.0],
    }
    back = Ratings.from_status(status)
    assert back.ratings == rated.ratings and back.start == rated.start
    assert "expected" not in Ratings.of(hours, Bands(1.0, 3.0), NOW).to_status()
    assert [r for _, r, _ in back.hours(NOW + timedelta(hours=2, minutes=5))] == ["busy", "busy"]


def test_ratings_stop_at_the_first_hour_the_forecast_missed() -> None:
    ds = pd.DatetimeIndex(["2026-11-14 16:00", "2026-11-14 17:00", "2026-11-14 19:00"])
    hours = pd.DataFrame({"ds": ds, "expected": [1.0, 2.0, 3.0], "peak": 1.0, "peak_at": ds})
    assert Ratings.of(hours, Bands(1.0, 3.0), NOW).ratings == ("quiet", "normal")


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"ratings": "qx", "start": "2026-11-14T16:00:00Z", "generatedAt": "2026-11-14T16:00:00Z"},
        {"ratings": "qn", "start": "yesterday", "generatedAt": "2026-11-14T16:00:00Z"},
        {
            "ratings": "qn",
            "start": "2026-11-14T16:00:00Z",
            "generatedAt": "2026-11-14T16:00:00Z",
            "expected": [1.0],
        },
    ],
)
def test_a_status_that_is_not_an_outlook_is_refused(status: dict) -> None:
    with pytest.raises(ValueError):
        Ratings.from_status(status)


def windows_of(codes: str, tz: str = ZONE, start: str = "2026-11-14T16:00:00Z", **kw):
    ratings = Ratings(
        NOW,
        pd.Timestamp(start),
        tuple({"q": "quiet", "n": "normal", "b": "busy"}[c] for c in codes),
    )
    return [(f"{a:%d %H}", f"{b:%d %H}") for a, b in quiet_windows(ratings.hours(NOW), tz, **kw)]


def test_quiet_windows_are_runs_of_quiet_daytime_hours() -> None:
    # From 00:00 Sunday 15 November in Shanghai: quiet until 09:00, busy, quiet 13-15, ...
    codes = "qqqqqqqqq" + "bbbb" + "qq" + "nnnnn" + "qqqq" + "q" * 24
    assert windows_of(codes) == [("15 07", "15 09"), ("15 13", "15 15"), ("15 20", "15 22")]
    assert windows_of(codes, count=1) == [("15 07", "15 09")]
    assert windows_of(codes, daytime=(0, 24))[0] == ("15 00", "15 09")
    assert windows_of("b" * 48) == []


@settings(max_examples=200, deadline=None)
@given(
    codes=st.text(alphabet="qnb", min_size=1, max_size=200),
    tz=st.sampled_from([ZONE, "UTC", "America/New_York", "Europe/London"]),
)
def test_quiet_windows_hold_only_quiet_daytime_hours_in_order(codes: str, tz: str) -> None:
    ratings = Ratings(
        NOW,
        pd.Timestamp("2026-10-24T16:00:00Z"),
        tuple({"q": "quiet", "n": "normal", "b": "busy"}[c] for c in codes),
    )
    by_start = {s: r for s, r, _ in ratings.hours(NOW - timedelta(days=30))}
    windows = quiet_windows(ratings.hours(NOW - timedelta(days=30)), tz, count=1000)
    assert all(a[1] < b[0] for a, b in pairwise(windows))
    for start, end in windows:
        assert start < end
        hour = start
        while hour < end:
            assert by_start[hour.tz_convert("UTC")] == "quiet" and 7 <= hour.hour < 22
            hour += pd.Timedelta("1h")


# -- words ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "accept", "lang"),
    [
        (None, None, "en"),
        ("zh", None, "zh"),
        ("zh-CN", "en", "zh"),
        ("en", "zh-CN,zh;q=0.9", "en"),
        ("fr", "zh-TW", "zh"),  # an unknown ?lang= falls through to the header
        (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        (None, "en;q=0.5, zh;q=0.8", "zh"),
        (None, "fr-FR, de;q=0.9", "en"),
        (None, "zh;q=0, en", "en"),  # q=0 means "not this one"
        (None, "*", "en"),
        (None, "zh;q=abc", "en"),
    ],
)
def test_language(asked: str | None, accept: str | None, lang: str) -> None:
    assert language(asked, accept) == lang


@given(asked=st.none() | st.text(max_size=20), accept=st.none() | st.text(max_size=80))
def test_language_never_fails(asked: str | None, accept: str | None) -> None:
    assert language(asked, accept) in LANGUAGES


@pytest.mark.parametrize(
    ("lang", "day_text", "window_text"),
    [
        ("en", "Fri 20 Nov", "Fri 20 Nov 14:00–24:00"),
        ("zh", "11月20日 周五", "11月20日 周五 14:00–24:00"),
    ],
)
def test_dates_are_local_and_localised(lang: str, day_text: str, window_text: str) -> None:
    start = pd.Timestamp("2026-11-20 14:00", tz=ZONE)
    assert day_label(start.date(), lang) == day_text
    assert window_label(start, pd.Timestamp("2026-11-21 00:00", tz=ZONE), lang) == window_text
    assert window_label(start, start + pd.Timedelta("2h"), lang).endswith("14:00–16:00")
