"""SeasonalQuantile's month-end day type: learnt from three month ends, never from fewer."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster import store
from forecaster.calendar import WORKING, day_types, last_working_days_of_month
from forecaster.generate import TrafficProfile, generate_traffic
from forecaster.models import SeasonalQuantile
from forecaster.models.seasonal import MONTH_END

ZONE = "Asia/Shanghai"
NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def portal() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The demo generator's pension portal, 5-minute counts and their expected values, from
    20 October 2025 to 30 January 2026 (month ends 31 October, 28 November, 31 December and
    30 January, a Friday before a weekend). No growth, so the truth is the history's level."""
    traffic = generate_traffic(
        TrafficProfile(growth_per_week=0.0), date(2025, 10, 20), days=103, seed=3
    )
    return traffic.true_counts("5min"), traffic.expected_rate("5min")


def _utc(local: str) -> pd.Timestamp:
    return pd.Timestamp(local, tz=ZONE).tz_convert("UTC").tz_localize(None)


@pytest.mark.parametrize("normalize", [False, True])
def test_a_portal_month_end_morning_is_forecast_from_past_month_ends(
    portal: tuple[pd.DataFrame, pd.DataFrame], normalize: bool
) -> None:
    counts, expected = portal
    train = counts[counts["ds"] < _utc("2026-01-30")]
    model = SeasonalQuantile(weeks=20, country="CN", tz=ZONE, normalize=normalize).fit(train)
    forecast = model.predict(288, quantiles=(0.5, 0.9)).set_index("ds")
    ten = _utc("2026-01-30 10:00")
    truth = float(expected.set_index("ds").loc[ten, "y"])
    ordinary = float(expected.set_index("ds").loc[_utc("2026-01-29 10:00"), "y"])
    assert truth > 2 * ordinary  # the generator's 2.5x month-end morning
    assert forecast.loc[ten, "q0.5"] == pytest.approx(truth, rel=0.15)
    assert truth < forecast.loc[ten, "q0.9"] < 1.5 * truth
    assert forecast.loc[ten, "q0.5"] > 1.8 * ordinary

    # The default weeks=4 pools month ends from all the history given all the same...
    four_weeks = SeasonalQuantile(weeks=4, country="CN", tz=ZONE, normalize=normalize)
    forecast = four_weeks.fit(train).predict(288, quantiles=(0.5,)).set_index("ds")
    assert forecast.loc[ten, "q0.5"] == pytest.approx(truth, rel=0.15)
    # ...but four weeks of history hold no three month ends: an ordinary working day
    last_weeks = train[train["ds"] > train["ds"].max() - pd.Timedelta(weeks=4)]
    forecast = four_weeks.fit(last_weeks).predict(288, quantiles=(0.9,)).set_index("ds")
    assert forecast.loc[ten, "q0.9"] < 0.7 * truth


def _steps(start: str, end: str, missing: tuple[str, ...] = ()) -> pd.DataFrame:
    """Hourly load of 100 on working days, 300 on the last working day of a month and 30
    on weekends and holidays (CN calendar); NaN on the ``missing`` dates."""
    ds = pd.date_range(start, end, freq="1h", inclusive="left")
    dates = [d.date() for d in ds]
    ends = last_working_days_of_month(dates, "CN")
    y = np.where(day_types(dates, "CN") == WORKING, 100.0, 30.0)
    y[[d in ends for d in dates]] = 300.0
    y[[str(d) in missing for d in dates]] = np.nan
    return pd.DataFrame({"unique_id": "s", "ds": ds, "y": y})


def _day_range(forecast: pd.DataFrame) -> pd.DataFrame:
    """The lowest and highest forecast median of each day."""
    return forecast.groupby(forecast["ds"].dt.date)["yhat"].agg(["min", "max"])


@pytest.mark.parametrize("normalize", [False, True])
def test_month_ends_before_a_weekend_a_holiday_or_on_a_make_up_day(normalize: bool) -> None:
    """30 November 2024 is a Saturday and 31 January 2025 a Spring Festival holiday: their
    months end on Friday 29 November and Monday 27 January (after Sunday 26 January, a
    make-up working day). Saturday 28 February 2026 is a make-up day and February's end.
    Normalised, a month end is measured against the working days of its week (3x them),
    not divided down to 100."""
    model = SeasonalQuantile(weeks=20, country="CN", tz=None, normalize=normalize)
    forecast = model.fit(_steps("2024-10-01", "2025-01-25")).predict(24 * 7, quantiles=(0.5,))
    days = _day_range(forecast)
    assert (days.loc[date(2025, 1, 27)] == 300.0).all()
    assert (days.loc[date(2025, 1, 26)] == 100.0).all()  # the make-up day is ordinary
    assert (days.loc[date(2025, 1, 31)] == 30.0).all()  # the calendar's last day: a holiday

    forecast = model.fit(_steps("2025-11-01", "2026-02-27")).predict(24 * 3, quantiles=(0.5,))
    days = _day_range(forecast)
    assert (days.loc[date(2026, 2, 27)] == 100.0).all()
    assert (days.loc[date(2026, 2, 28)] == 300.0).all()
    assert (days.loc[date(2026, 3, 1)] == 30.0).all()


@pytest.mark.parametrize(
    ("weeks", "start", "missing"),
    [
        (4, "2024-12-09", ()),
        (20, "2024-10-01", ("2024-10-31",)),
    ],
    ids=["four weeks hold one month end", "a month end without data"],
)
@pytest.mark.parametrize("normalize", [False, True])
def test_fewer_than_three_month_ends_forecast_as_a_working_day(
    weeks: int, start: str, missing: tuple[str, ...], normalize: bool
) -> None:
    """Four weeks of history (the replay benchmark's and the controller's default) forecast
    as before month ends had a type: Monday 27 January 2025 exactly as Friday 24 January,
    every quantile."""
    frame = _steps(start, "2025-01-06", missing)
    model = SeasonalQuantile(weeks=weeks, country="CN", tz=None, normalize=normalize).fit(frame)
    assert MONTH_END not in model.samples_["s"]
    forecast = model.predict(24 * 23, quantiles=(0.5, 0.9, 0.99)).set_index("ds")
    month_end = forecast.loc["2025-01-27"].to_numpy()
    np.testing.assert_array_equal(month_end, forecast.loc["2025-01-24"].to_numpy())


@pytest.mark.parametrize(("normalize", "month_end"), [(False, 150.0), (True, 300.0)])
def test_month_ends_come_from_all_the_history_ordinary_days_from_the_last_weeks(
    normalize: bool, month_end: float
) -> None:
    """Working days ran at 50 and month ends at 150 until 9 December 2024, then doubled.
    With ``weeks=4`` working days forecast today's 100 (the old level is not pooled) and
    month ends come from October's and November's as much as December's: pooled raw, the
    middle one's 150; normalised, three times the working days of their own week, at
    today's level."""
    frame = _steps("2024-10-01", "2025-01-25")
    before = frame["ds"] < "2024-12-09"
    frame.loc[before & (frame["y"] > 30.0), "y"] /= 2
    model = SeasonalQuantile(weeks=4, country="CN", tz=None, normalize=normalize).fit(frame)
    days = _day_range(model.predict(24 * 3, quantiles=(0.5,)))
    assert days.loc[date(2025, 1, 27)].to_list() == [month_end, month_end]
    assert days.loc[date(2025, 1, 26)].to_list() == [100.0, 100.0]


def test_the_month_end_profile_survives_the_model_store(tmp_path: Path) -> None:
    frame = _steps("2024-10-01", "2025-01-25")
    model = SeasonalQuantile(weeks=20, country="CN", tz=None, normalize=True).fit(frame)
    store.save({"s": model}, str(tmp_path), {}, store.fingerprint(frame), NOW)
    loaded = store.load(str(tmp_path)).models["s"]
    assert MONTH_END in loaded.samples_["s"]
    forecast = loaded.predict(24 * 7, quantiles=(0.5, 0.9))
    pd.testing.assert_frame_equal(forecast, model.predict(24 * 7, quantiles=(0.5, 0.9)))
    assert (_day_range(forecast).loc[date(2025, 1, 27)] == 300.0).all()
