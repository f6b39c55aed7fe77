"""The seasonal models: the scikit-learn contract, calibration, and gaps."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from forecaster import store
from forecaster.calendar import WORKING, day_types
from forecaster.models import LastValue, SeasonalNaive, SeasonalQuantile
from forecaster.models.seasonal import _pooled_quantiles

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
MODELS = [
    SeasonalNaive(season="1D"),
    SeasonalNaive(season="7D"),
    SeasonalQuantile(country=None, tz=None, weeks=2, window=10),
    SeasonalQuantile(country="CN", tz="Asia/Shanghai"),
]


def synthetic(days: int = 21, seed: int = 0, freq: str = "5min") -> tuple[pd.DataFrame, np.ndarray]:
    """Poisson counts around a daily profile, with the expected value known."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range(
        "2026-10-05", periods=days * int(pd.Timedelta("1D") / pd.Timedelta(freq)), freq=freq
    )
    hour = ds.hour + ds.minute / 60
    mean = 20 + 80 * np.exp(-0.5 * ((hour - 10) / 2) ** 2)
    y = rng.poisson(mean).astype(float)
    return pd.DataFrame({"unique_id": "s", "ds": ds, "y": y}), np.asarray(mean)


@pytest.mark.parametrize("model", MODELS, ids=repr)
def test_estimator_contract(model) -> None:
    frame, _ = synthetic(days=15)
    assert clone(model).get_params() == model.get_params()
    assert not hasattr(model, "step_")  # __init__ stores parameters only
    fitted = clone(model).fit(frame)
    first = fitted.predict(48, quantiles=(0.5, 0.9))
    assert list(first.columns) == ["unique_id", "ds", "yhat", "q0.5", "q0.9"]
    assert len(first) == 48 and first["ds"].iloc[0] == frame["ds"].iloc[-1] + pd.Timedelta("5min")
    assert (first["q0.9"] >= first["q0.5"] - 1e-9).all() and (first["q0.9"] >= 0).all()
    again = fitted.fit(frame.iloc[: len(frame) // 2]).predict(
        48, quantiles=(0.5, 0.9)
    )  # refittable
    assert again["ds"].iloc[0] < first["ds"].iloc[0]
    assert frame.equals(synthetic(days=15)[0])  # the caller's frame is untouched


def test_several_series_at_once() -> None:
    a, _ = synthetic(days=8, seed=1)
    b = a.assign(unique_id="t", y=a["y"] * 3)
    forecast = (
        SeasonalQuantile(country=None, tz=None).fit(pd.concat([a, b])).predict(12, quantiles=(0.9,))
    )
    by_id = forecast.groupby("unique_id")["q0.9"].mean()
    assert by_id["t"] > 2.5 * by_id["s"]


def test_seasonal_quantile_is_calibrated() -> None:
    frame, mean = synthetic(days=35, seed=2)
    train, test = frame.iloc[: 28 * 288], frame.iloc[28 * 288 :]
    forecast = (
        SeasonalQuantile(country=None, tz=None, weeks=4, window=3)
        .fit(train)
        .predict(len(test), quantiles=(0.5, 0.9, 0.99))
    )
    for q in (0.5, 0.9, 0.99):
        covered = np.mean(test["y"].to_numpy() <= forecast[f"q{q:g}"].to_numpy())
        assert abs(covered - q) < 0.04, (q, covered)


def test_gaps_are_not_learned_as_zeros() -> None:
    frame, _ = synthetic(days=14, seed=3)
    holed = frame.copy()
    holed.loc[
        (holed["ds"].dt.hour >= 9) & (holed["ds"].dt.hour < 12) & (holed["ds"].dt.day < 12), "y"
    ] = np.nan
    clean = (
        SeasonalQuantile(country=None, tz=None, weeks=2).fit(frame).predict(288, quantiles=(0.5,))
    )
    gappy = (
        SeasonalQuantile(country=None, tz=None, weeks=2).fit(holed).predict(288, quantiles=(0.5,))
    )
    morning = clean["ds"].dt.hour == 10
    assert gappy.loc[morning, "q0.5"].mean() == pytest.approx(
        clean.loc[morning, "q0.5"].mean(), rel=0.1
    )


def test_weekends_holidays_and_make_up_days_have_their_own_profile() -> None:
    ds = pd.date_range("2026-09-07", "2026-10-05", freq="1h", inclusive="left")
    kinds = day_types([d.date() for d in ds])
    frame = pd.DataFrame({"unique_id": "s", "ds": ds, "y": np.where(kinds == WORKING, 100.0, 30.0)})
    forecast = SeasonalQuantile(country="CN", tz=None).fit(frame).predict(24 * 8, quantiles=(0.5,))
    day = forecast["ds"].dt.day
    assert forecast.loc[day.isin([5, 6, 7]), "yhat"].max() == 30.0  # National Day holidays
    assert forecast.loc[day == 9, "yhat"].min() == 100.0  # an ordinary Friday
    assert (
        forecast.loc[day == 10, "yhat"].min() == 100.0
    )  # Saturday 10 October: a make-up working day


def test_cold_start_is_reported() -> None:
    frame, _ = synthetic(days=1)
    model = SeasonalQuantile(country=None, tz=None).fit(frame.iloc[:100])
    assert model.fallback_reason_["s"].startswith("less than a working day of history")
    assert "last value" in model.fallback_reason_["s"]
    assert SeasonalQuantile(country=None, tz=None).fit(frame).fallback_reason_["s"] is None


def test_less_than_a_working_day_forecasts_the_last_value() -> None:
    """A new service's first ten hours (training's fallback model gets exactly this): with
    no profile yet, the last value, not zero traffic, which would scale it to its minimum."""
    ds = pd.date_range("2026-11-20", periods=600, freq="1min")
    y = np.random.default_rng(0).poisson(200, len(ds)).astype(float)
    frame = pd.DataFrame({"unique_id": "s", "ds": ds, "y": y})
    model = SeasonalQuantile(country=None, tz="America/New_York", normalize=True).fit(frame)
    forecast = model.predict(60, quantiles=(0.5, 0.9))
    expected = LastValue(freq="1min").fit(frame).predict(60, quantiles=(0.5, 0.9))
    pd.testing.assert_frame_equal(forecast, expected)
    assert forecast["yhat"].min() == y[-1] > 0


def test_a_day_type_with_nothing_to_borrow_forecasts_the_last_value() -> None:
    """History only in the National Day holidays: a holiday is forecast from their profile,
    the Sunday after (no weekend or working-day profile to borrow) from the last value."""
    ds = pd.date_range("2026-10-01", periods=72, freq="1h")
    y = np.full(len(ds), 30.0)
    y[-1] = 50.0
    frame = pd.DataFrame({"unique_id": "s", "ds": ds, "y": y})
    model = SeasonalQuantile(country="CN", tz=None).fit(frame)
    forecast = model.predict(48, quantiles=(0.5, 0.9))
    sunday = forecast["ds"].dt.day == 4
    holiday = (forecast["ds"].dt.day == 5) & (forecast["ds"].dt.hour < 23)
    assert (forecast.loc[sunday, ["yhat", "q0.5", "q0.9"]] == 50.0).all(axis=None)
    assert (forecast.loc[holiday, ["yhat", "q0.5", "q0.9"]] == 30.0).all(axis=None)
    assert "last value" in model.fallback_reason_["s"]


def test_the_last_value_fallback_is_stored_as_data(tmp_path: Path) -> None:
    frame, _ = synthetic(days=1)
    models = {
        "quantile": SeasonalQuantile(country=None, tz=None).fit(frame.iloc[:100]),
        "naive": SeasonalNaive(season="1D").fit(frame.iloc[:100]),
    }
    store.save(models, str(tmp_path), {}, store.fingerprint(frame), NOW)
    loaded = store.load(str(tmp_path)).models
    for name, model in models.items():
        expected = model.predict(12, quantiles=(0.5, 0.9))
        pd.testing.assert_frame_equal(loaded[name].predict(12, quantiles=(0.5, 0.9)), expected)
        assert loaded[name].fallback_reason_ == model.fallback_reason_


@pytest.mark.parametrize("hours", [60, 10], ids=["last season missing", "less than a season"])
def test_seasonal_naive_with_no_last_season_forecasts_the_last_value(hours: int) -> None:
    """The cold-start fallback of the direct models: a day of missing logs at the end, or a
    series shorter than its season, repeats the last value rather than zero traffic."""
    ds = pd.date_range("2026-11-01", periods=hours, freq="1h")
    y = np.where(np.arange(hours) < 36, 100.0 + np.arange(hours) % 3, np.nan)
    frame = pd.DataFrame({"unique_id": "s", "ds": ds, "y": y})
    model = SeasonalNaive(season="1D").fit(frame)
    forecast = model.predict(6, quantiles=(0.5, 0.9))
    expected = LastValue(freq="1h").fit(frame).predict(6, quantiles=(0.5, 0.9))
    pd.testing.assert_frame_equal(forecast, expected)
    assert (forecast["yhat"] > 0).all()
    assert "last value" in model.fallback_reason_["s"]
    full, _ = synthetic(days=3)
    assert SeasonalNaive(season="1D").fit(full).fallback_reason_["s"] is None


def test_normalised_days_give_tighter_quantiles() -> None:
    frame, _ = synthetic(days=28, seed=4)
    frame.loc[(frame["ds"].dt.day % 2) == 0, "y"] *= 2  # every other day twice as busy
    raw = SeasonalQuantile(country=None, tz=None).fit(frame).predict(288, quantiles=(0.5, 0.95))
    norm = (
        SeasonalQuantile(country=None, tz=None, normalize=True)
        .fit(frame)
        .predict(288, quantiles=(0.5, 0.95))
    )
    peak = raw["ds"].dt.hour == 10
    spread = lambda f: ((f["q0.95"] - f["q0.5"]) / f["q0.5"])[peak].mean()  # noqa: E731
    assert spread(norm) < 0.6 * spread(raw)


def test_normalised_forecast_starts_from_the_recent_level() -> None:
    frame, _ = synthetic(days=28, seed=5)
    frame.loc[frame["ds"] >= frame["ds"].max() - pd.Timedelta("6D"), "y"] *= (
        2  # the last days doubled
    )
    raw = SeasonalQuantile(country=None, tz=None).fit(frame).predict(288, quantiles=(0.5,))
    norm = (
        SeasonalQuantile(country=None, tz=None, normalize=True)
        .fit(frame)
        .predict(288, quantiles=(0.5,))
    )
    peak = raw["ds"].dt.hour == 10
    assert norm.loc[peak, "q0.5"].mean() > 1.6 * raw.loc[peak, "q0.5"].mean()


def test_hourly_data_pools_its_own_hour_not_fifteen_hours_around_it() -> None:
    frame, mean = synthetic(days=28, freq="1h")
    model = SeasonalQuantile(country=None, tz="UTC").fit(frame)
    forecast = model.predict(24, quantiles=(0.5,))
    peak = forecast.loc[forecast["ds"].dt.hour == 10, "q0.5"].iloc[0]
    assert peak > 80  # the 10:00 peak (mean 100) is not averaged with the night (mean 20)


@pytest.mark.parametrize(
    ("freq", "reached", "beyond"),
    [("1min", "10:30", "10:31"), ("5min", "10:30", "10:35"), ("1h", "10:00", "11:00")],
)
def test_the_default_pool_reaches_thirty_minutes_either_side(
    freq: str, reached: str, beyond: str
) -> None:
    """A spike at 10:00 every day shows in q0.999 up to 30 minutes away (the
    width the NASA replay chose, ``DEFAULT_REACH``) and no further; an hour pools itself."""
    ds = pd.date_range(
        "2026-10-05", periods=14 * pd.Timedelta("1D") // pd.Timedelta(freq), freq=freq
    )
    y = np.where((ds.hour == 10) & (ds.minute == 0), 1000.0, 10.0)
    frame = pd.DataFrame({"unique_id": "s", "ds": ds, "y": y})
    model = SeasonalQuantile(country=None, tz=None).fit(frame)
    forecast = model.predict(pd.Timedelta("1D") // pd.Timedelta(freq), quantiles=(0.999,))
    at = forecast.set_index(forecast["ds"].dt.strftime("%H:%M"))["q0.999"]
    assert at[reached] == 1000.0
    assert at[beyond] == 10.0


@pytest.mark.parametrize("normalize", [True, False])
def test_an_all_zero_series_forecasts_zero(normalize: bool) -> None:
    """A status=5xx series that never fired: every day's level is 0/0, which must not turn
    the whole forecast into NaN (a scaler cannot act on NaN)."""
    frame, _ = synthetic(days=14)
    model = SeasonalQuantile(country=None, tz="America/New_York", normalize=normalize)
    forecast = model.fit(frame.assign(y=0.0)).predict(48, quantiles=(0.5, 0.9))
    assert (forecast[["yhat", "q0.5", "q0.9"]].to_numpy() == 0.0).all()


@pytest.mark.parametrize("normalize", [True, False])
def test_a_negative_series_forecasts_finite_values(normalize: bool) -> None:
    frame, _ = synthetic(days=14)
    model = SeasonalQuantile(country=None, tz="America/New_York", normalize=normalize)
    forecast = model.fit(frame.assign(y=frame["y"] - 200)).predict(48, quantiles=(0.5, 0.9))
    assert np.isfinite(forecast[["yhat", "q0.5", "q0.9"]].to_numpy()).all()


@settings(max_examples=25, deadline=None)
@given(
    value=st.one_of(st.just(0.0), st.floats(-1e6, 1e6)),
    normalize=st.booleans(),
    tz=st.sampled_from([None, "America/New_York"]),
)
def test_a_constant_series_forecasts_that_constant(
    value: float, normalize: bool, tz: str | None
) -> None:
    ds = pd.date_range("2026-10-05", periods=24 * 9, freq="1h")
    frame = pd.DataFrame({"unique_id": "s", "ds": ds, "y": value})
    model = SeasonalQuantile(country=None, tz=tz, normalize=normalize)
    forecast = model.fit(frame).predict(30, quantiles=(0.1, 0.5, 0.9))
    np.testing.assert_allclose(forecast[["yhat", "q0.1", "q0.5", "q0.9"]], value, rtol=1e-12)


@pytest.mark.parametrize(("freq", "shown"), [("7min", "7min"), ("2D", "48h")])
def test_an_interval_that_does_not_divide_a_day_is_refused_at_fit(freq: str, shown: str) -> None:
    """Times of day are slots of the interval: a 7-minute slot grid drifts across days and
    the forecast used to crash with an IndexError."""
    ds = pd.date_range("2026-09-01", periods=300, freq=freq)
    frame = pd.DataFrame({"unique_id": "s", "ds": ds, "y": 50.0})
    with pytest.raises(ValueError, match=f"interval {shown} does not divide a day"):
        SeasonalQuantile(country=None, tz=None).fit(frame)


def test_a_season_shorter_than_the_interval_is_refused_at_fit() -> None:
    """Daily data has no value an hour back to repeat: the forecast was all zeros, which a
    scaler reads as no traffic."""
    ds = pd.date_range("2026-09-01", periods=40, freq="1D")
    frame = pd.DataFrame({"unique_id": "s", "ds": ds, "y": 100.0})
    with pytest.raises(ValueError, match="season 1h is shorter than the series' interval 24h"):
        SeasonalNaive(season="1h").fit(frame)


@pytest.mark.parametrize("make", [LastValue, SeasonalNaive], ids=lambda m: m.__name__)
def test_a_series_below_zero_keeps_its_negative_quantiles(make) -> None:
    """A net flow, not a request count: every quantile was clipped to 0 above a negative
    point forecast (q0.1 above yhat, a band that excludes it)."""
    frame, _ = synthetic(days=7)
    negative = frame.assign(y=frame["y"] - 2 * frame["y"].max())
    forecast = make().fit(negative).predict(12, quantiles=(0.1, 0.5, 0.9))
    assert (forecast["q0.1"] <= forecast["yhat"]).all()
    assert (forecast["yhat"] <= forecast["q0.9"]).all()
    assert (forecast["q0.9"] < 0).all()
    both = pd.concat([negative.assign(unique_id="net"), frame])  # a count is still clipped
    counts = make().fit(both).predict(12, quantiles=(0.1,))
    assert (counts.loc[counts["unique_id"] == "s", "q0.1"] >= 0).all()


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 4), min_size=1, max_size=30),
    window=st.integers(0, 70),
    seed=st.integers(0, 2**16),
)
def test_pooled_quantiles_are_those_of_the_neighbouring_slots(
    sizes: list[int], window: int, seed: int
) -> None:
    """The stacked computation gives, slot by slot, the quantiles of the values of every
    slot within ``window`` (wrapping at midnight, a slot counted once per time it is
    reached); a slot with none that near pools the nearest slots that have values."""
    rng = np.random.default_rng(seed)
    n = len(sizes)
    table = [rng.gamma(2.0, 10.0, k) for k in sizes]
    levels = [0.05, 0.5, 0.9, 0.975]
    wanted = np.unique(rng.integers(0, n, rng.integers(1, n + 1)))
    got = _pooled_quantiles(table, levels, window, wanted)

    def around(slot: int, reach: int) -> np.ndarray:
        return np.concatenate([table[(slot + k) % n] for k in range(-reach, reach + 1)])

    seen = [s for s in range(n) if sizes[s]]
    for slot in range(n):
        if slot not in wanted or not seen:
            assert (got[:, slot] == 0).all()
            continue
        pooled = around(slot, window)
        if not pooled.size:
            pooled = around(slot, min(min(abs(s - slot), n - abs(s - slot)) for s in seen))
        assert got[:, slot] == pytest.approx(np.quantile(pooled, levels), rel=1e-12)
