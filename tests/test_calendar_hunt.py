"""The headline surges end to end: month ends, holidays and their calendar features."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from forecaster.calendar import (
    HOLIDAY,
    WEEKEND,
    WORKING,
    day_types,
    first_working_days_after_holidays,
    last_working_days_of_month,
)
from forecaster.models import GradientBoostingForecaster, LinearForecaster
from forecaster.models.features import CALENDAR_V4, calendar_features, design

TZ = "Asia/Shanghai"


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def test_last_working_days_of_month_follow_the_official_calendars() -> None:
    cn = last_working_days_of_month(days_between(date(2025, 1, 1), date(2026, 3, 31)), "CN")
    assert date(2025, 1, 27) in cn  # Spring Festival from 28 January 2025
    assert date(2026, 2, 28) in cn  # a make-up working Saturday
    assert date(2026, 1, 30) in cn  # a Friday, the 31st being a Saturday
    us = last_working_days_of_month([date(2024, 5, 1), date(2024, 8, 1)], "US")
    assert us == {date(2024, 5, 31), date(2024, 8, 30)}
    # a datetime or a Timestamp is its date (its local date when it has a zone)
    stamp = pd.Timestamp("2024-05-31 23:00", tz=TZ)
    assert last_working_days_of_month([stamp], "CN") == {date(2024, 5, 31)}
    assert last_working_days_of_month([datetime(2024, 6, 3, 9)], "CN") == {date(2024, 6, 28)}


def test_without_a_country_the_weekend_is_saturday_and_sunday() -> None:
    days = days_between(date(2024, 9, 28), date(2024, 10, 1))
    assert list(day_types(days, None)) == [WEEKEND, WEEKEND, WORKING, WORKING]
    assert last_working_days_of_month(days, None) == {date(2024, 9, 30), date(2024, 10, 31)}
    assert first_working_days_after_holidays(days, None) == set()


@pytest.mark.parametrize("country", ["cn", "XX", "Atlantis"])
def test_a_country_without_a_calendar_is_a_value_error_naming_it(country: str) -> None:
    with pytest.raises(ValueError, match=f"country {country!r} has no holiday calendar"):
        day_types([date(2024, 10, 1)], country)
    frame = month_end_portal(days=3)
    with pytest.raises(ValueError, match="has no holiday calendar"):
        LinearForecaster(country=country, tz=TZ).fit(frame)


def test_first_working_days_after_a_holiday() -> None:
    cn = first_working_days_after_holidays(days_between(date(2024, 1, 1), date(2024, 10, 31)))
    assert date(2024, 10, 8) in cn  # after Golden Week
    assert date(2024, 2, 18) in cn  # a make-up working Sunday right after Spring Festival
    assert date(2024, 2, 19) not in cn and date(2024, 10, 14) not in cn  # ordinary Mondays
    assert day_types([date(2024, 10, 7)])[0] == HOLIDAY
    # the holiday is found before the first day asked about
    assert first_working_days_after_holidays([date(2024, 10, 8)]) == {date(2024, 10, 8)}
    us = first_working_days_after_holidays(days_between(date(2024, 5, 20), date(2024, 6, 3)), "US")
    assert us == {date(2024, 5, 28)}  # the Tuesday after Memorial Day


def test_calendar_days_are_local_and_the_same_whatever_the_span() -> None:
    """A series in UTC for a Shanghai service: its month end starts at 16:00 UTC the day
    before, and a day's columns do not depend on how much history surrounds it."""
    ds = pd.date_range("2024-05-20", "2024-06-12", freq="1h")
    columns = calendar_features(ds, pd.Timedelta("1D"), "CN", TZ)
    month_end, after = columns[:, CALENDAR_V4], columns[:, CALENDAR_V4 + 7]
    # each also times the time of day, so an additive model can place the surge
    np.testing.assert_array_equal(
        columns[:, CALENDAR_V4 + 1 : CALENDAR_V4 + 7], month_end[:, None] * columns[:, :6]
    )
    local = ds.tz_localize("UTC").tz_convert(TZ)
    assert set(local[month_end == 1].date) == {date(2024, 5, 31)}
    assert ds[month_end == 1][0] == pd.Timestamp("2024-05-30 16:00")
    assert set(local[after == 1].date) == {date(2024, 6, 11)}  # after Dragon Boat Festival
    short = ds[(ds >= "2024-05-31") & (ds < "2024-06-12")]
    np.testing.assert_array_equal(
        calendar_features(short, pd.Timedelta("1D"), "CN", TZ), columns[ds.isin(short)]
    )


def test_a_stored_version_4_model_reads_its_own_calendar_columns() -> None:
    y = np.random.default_rng(0).poisson(50, 24 * 20).astype(float)
    ds = pd.date_range("2024-05-01", periods=len(y), freq="1h")
    calendar = calendar_features(ds, pd.Timedelta("1D"), "CN", TZ)
    origins, steps = np.arange(100, 110), np.full(10, 5)
    old, _ = design(y, ds, origins, steps, 24, 3, 2, calendar, None, version=4)
    new, _ = design(y, ds, origins, steps, 24, 3, 2, calendar, None)
    assert new.shape[1] == old.shape[1] + calendar.shape[1] - CALENDAR_V4
    np.testing.assert_array_equal(new[:, : old.shape[1]], old)


def portal(
    surging: Callable[[list[date]], set[date]],
    factor: float,
    hours: tuple[int, int] = (0, 23),
    days: int = 170,
    seed: int = 0,
) -> pd.DataFrame:
    """Hourly requests of a Shanghai portal, stamped in UTC: a morning peak on working days,
    a third of it on weekends, less on holidays, ``factor`` times it within ``hours`` (local)
    of the days ``surging`` picks."""
    ds = pd.date_range("2023-12-31 16:00", periods=24 * days, freq="1h")
    local = ds.tz_localize("UTC").tz_convert(TZ)
    dates = list(local.date)
    kinds = day_types(sorted(set(dates)))
    kind = dict(zip(sorted(set(dates)), kinds, strict=True))
    picked = surging(sorted(set(dates)))
    hour = np.asarray(local.hour)
    mean = 10 + 90 * np.exp(-0.5 * ((hour - 10) / 2) ** 2)
    mean *= np.array([{WORKING: 1.0, WEEKEND: 0.35, HOLIDAY: 0.25}[kind[d]] for d in dates])
    surge = np.array([d in picked for d in dates]) & (hour >= hours[0]) & (hour <= hours[1])
    mean = np.where(surge, factor * mean, mean)
    y = np.random.default_rng(seed).poisson(mean).astype(float)
    return pd.DataFrame({"unique_id": "portal", "ds": ds, "y": y})


DIRECT_MODELS = pytest.mark.parametrize(
    "model",
    [
        GradientBoostingForecaster(country="CN", tz=TZ, max_iter=60),
        LinearForecaster(country="CN", tz=TZ),
    ],
    ids=["gradient_boosting", "linear"],
)
"""Both direct models, each refitted by every test that takes it."""


def month_end_portal(days: int = 170) -> pd.DataFrame:
    """Three times the load from 9 to 11 on the last working day of the month."""
    return portal(last_working_days_of_month, 3.0, (9, 11), days)


@pytest.mark.slow
@DIRECT_MODELS
def test_direct_models_learn_the_month_end_morning(
    model: GradientBoostingForecaster | LinearForecaster,
) -> None:
    """With day types alone the month end was forecast as an ordinary working day: the
    10 a.m. of 31 May at about a third of its load, with five month ends seen. The linear
    model, additive in its features, needs the month end by time of day too: with the day
    alone its whole month end rose a little and its 10 a.m. stayed at 40 % of the load."""
    frame = month_end_portal()
    cut = pd.Timestamp("2024-05-30 16:00")  # local midnight starting 31 May
    forecast = model.fit(frame[frame["ds"] < cut]).predict(24, quantiles=(0.9,))
    truth = frame.set_index("ds")["y"]
    at_ten = forecast.set_index("ds").loc[pd.Timestamp("2024-05-31 02:00")]
    assert truth[pd.Timestamp("2024-05-31 02:00")] > 250
    assert at_ten["yhat"] > 200 and at_ten["q0.9"] > 250
    # and the ordinary day before it is not lifted with it
    cut = cut - pd.Timedelta("1D")
    forecast = model.fit(frame[frame["ds"] < cut]).predict(24, quantiles=(0.9,))
    assert forecast.set_index("ds").loc[pd.Timestamp("2024-05-30 02:00"), "yhat"] < 130


@pytest.mark.slow
@DIRECT_MODELS
def test_direct_models_see_the_backlog_after_a_holiday(
    model: GradientBoostingForecaster | LinearForecaster,
) -> None:
    """A card-replacement service at twice its load on the first working day after a
    holiday: on Tuesday 11 June 2024, after Dragon Boat Festival (8-10 June), gradient
    boosting forecast 10 a.m. at 32 requests for 195 (an ordinary day has 100), the linear
    model at 56: nothing in the features said the day was unlike an ordinary Tuesday but
    its low level the day before."""
    frame = portal(first_working_days_after_holidays, 2.0)
    cut = pd.Timestamp("2024-06-10 16:00")  # local midnight starting 11 June
    forecast = model.fit(frame[frame["ds"] < cut]).predict(24, quantiles=(0.9,))
    at_ten = pd.Timestamp("2024-06-11 02:00")
    assert frame.set_index("ds")["y"][at_ten] > 180
    assert forecast.set_index("ds").loc[at_ten, "q0.9"] > 130


@pytest.mark.slow
@DIRECT_MODELS
@pytest.mark.parametrize(
    "midnight",
    [
        pd.Timestamp("2024-06-10 16:00"),  # Tuesday 11 June, after Dragon Boat Festival
        pd.Timestamp("2024-04-06 16:00"),  # Sunday 7 April, a make-up day after Qingming
    ],
    ids=["after-dragon-boat", "make-up-sunday"],
)
def test_direct_models_forecast_an_ordinary_working_day_after_a_holiday_at_its_level(
    model: GradientBoostingForecaster | LinearForecaster, midnight: pd.Timestamp
) -> None:
    """With no surge at all, the first working day after a holiday was forecast at the
    holiday's level: gradient boosting put 10 a.m. of 11 June at 53 requests for 93 and of
    7 April at 70 for 105, the linear model 7 April at 44. The level, the holiday's, was
    four times below the day's load, and only Mondays had taught the trees such a jump
    (features version 6 measures a working day's level on working days)."""
    frame = portal(first_working_days_after_holidays, 1.0)
    forecast = model.fit(frame[frame["ds"] < midnight]).predict(24, quantiles=(0.9,))
    at_ten = midnight + pd.Timedelta("10h")
    truth = frame.set_index("ds")["y"][at_ten]
    assert 90 <= truth <= 110
    row = forecast.set_index("ds").loc[at_ten]
    assert row["yhat"] > 0.75 * truth and row["q0.9"] > 0.9 * truth


@pytest.mark.slow
@DIRECT_MODELS
def test_a_day_mark_seen_fewer_than_three_times_is_not_used(
    model: GradientBoostingForecaster | LinearForecaster,
) -> None:
    """Seen on one day, a month end's columns fitted that day's residuals whole: on NASA
    1995 the linear model carried 31 July's afternoon over to 31 August (pinball loss 60
    minutes ahead 11 % worse over the whole backtest). With one month end behind it, the
    next is forecast as an ordinary working day; with three or more, as a month end."""
    frame = month_end_portal(days=62)  # 1 January to 1 March 2024: month ends 31 Jan, 29 Feb
    cut = pd.Timestamp("2024-02-28 16:00")  # local midnight starting 29 February
    model.fit(frame[frame["ds"] < cut])
    assert model.day_marks_ == [False, False]
    forecast = model.predict(24, quantiles=(0.9,)).set_index("ds")
    # 10 a.m.: a month end would be near 300; two months of history put ordinary
    # working days anywhere from 85 to 135
    assert forecast.loc[pd.Timestamp("2024-02-29 02:00"), "yhat"] < 160
    model.fit(month_end_portal()[lambda f: f["ds"] < pd.Timestamp("2024-05-30 16:00")])
    assert model.day_marks_ == [True, True]
