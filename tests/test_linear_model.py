"""The linear forecaster: calibrated quantiles, gaps, cold start, and stored as data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge

from forecaster import store
from forecaster.models import LastValue, LinearForecaster, SeasonalNaive, registry
from forecaster.models.linear import moments, ridge
from tests.synthetic import poisson_days

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def test_registered_under_linear() -> None:
    assert isinstance(registry(country=None, tz=None)["linear"](), LinearForecaster)


@settings(max_examples=15, deadline=None)
@given(factor=st.floats(0.01, 1000), seed=st.integers(0, 50))
def test_forecasts_scale_with_the_series(factor: float, seed: int) -> None:
    """Every feature and target is a ratio to the level: a series ten times busier gets a
    forecast ten times higher, quantiles included, from the same coefficients."""
    frame = poisson_days(10, seed=seed, freq="1h")
    base = LinearForecaster().fit(frame).predict(24, quantiles=(0.5, 0.9))
    scaled = LinearForecaster().fit(frame.assign(y=frame["y"] * factor)).predict(24)
    for column in ("yhat", "q0.5", "q0.9"):
        np.testing.assert_allclose(scaled[column], base[column] * factor, rtol=1e-6, atol=1e-9)


def test_a_global_model_serves_series_of_different_sizes() -> None:
    small = poisson_days(14, seed=3, freq="1h", uid="small")
    big = poisson_days(14, seed=4, freq="1h", uid="big").assign(y=lambda f: f["y"] * 10)
    model = LinearForecaster().fit(pd.concat([small, big]))
    assert model.models_["small"] is model.models_["big"]
    forecast = model.predict(24, quantiles=(0.5,)).groupby("unique_id")["q0.5"].mean()
    assert forecast["big"] / forecast["small"] == pytest.approx(10, rel=0.2)
    local = LinearForecaster(global_model=False).fit(pd.concat([small, big]))
    assert local.models_["small"] is not local.models_["big"]


def test_gaps_are_missing_data_not_zeros() -> None:
    frame = poisson_days(21, seed=9, freq="1h")
    clean = LinearForecaster().fit(frame).predict(48)["yhat"].mean()
    end = frame["ds"].max()
    week_ago = (frame["ds"] > end - pd.Timedelta("9D")) & (frame["ds"] <= end - pd.Timedelta("6D"))
    holed = frame.assign(y=frame["y"].where(~week_ago))
    as_nan = LinearForecaster().fit(holed).predict(48)
    as_absent = LinearForecaster().fit(holed.dropna()).predict(48)
    pd.testing.assert_frame_equal(as_absent, as_nan)  # absent rows and NaN are the same gap
    assert as_nan["yhat"].mean() == pytest.approx(clean, rel=0.1)
    # the last day (a Sunday) lost: learned as zeros it would forecast far less, though
    # not silence, the Monday's level being taken on working days (features version 6)
    last_day = frame.assign(y=frame["y"].where(frame["ds"] <= end - pd.Timedelta("1D")))
    gap = LinearForecaster().fit(last_day).predict(48)["yhat"].mean()
    zeros = LinearForecaster().fit(last_day.fillna(0.0)).predict(48)["yhat"].mean()
    assert gap == pytest.approx(clean, rel=0.15) and zeros < 0.7 * clean


def test_forecasts_from_the_last_observed_interval_when_the_end_is_missing() -> None:
    frame = poisson_days(14, seed=10, freq="1h")
    frame.loc[frame.index[-5:], "y"] = np.nan
    forecast = LinearForecaster().fit(frame).predict(24, quantiles=(0.5, 0.9))
    assert forecast["ds"].iloc[0] == frame["ds"].max() + pd.Timedelta("1h")
    assert np.isfinite(forecast[["yhat", "q0.9"]].to_numpy()).all()
    assert (forecast["q0.9"] >= forecast["q0.5"]).all() and (forecast["q0.5"] >= 0).all()


def test_cold_start_falls_back_to_a_baseline_and_says_so() -> None:
    long = poisson_days(10, seed=5, freq="1h", uid="long")
    short = poisson_days(1, seed=6, freq="1h", uid="short").iloc[:30]
    newborn = poisson_days(1, seed=7, freq="1h", uid="newborn").iloc[:5]
    model = LinearForecaster().fit(pd.concat([long, short, newborn]))
    assert model.fallback_reason_["long"] is None
    assert "seasonal naive" in model.fallback_reason_["short"]
    assert "last value" in model.fallback_reason_["newborn"]
    assert isinstance(model.fallbacks_["short"], SeasonalNaive)
    assert isinstance(model.fallbacks_["newborn"], LastValue)
    forecast = model.predict(6, quantiles=(0.9,))
    assert forecast.groupby("unique_id").size().to_dict() == {"long": 6, "newborn": 6, "short": 6}
    alone = SeasonalNaive(season="1D").fit(short).predict(6, quantiles=(0.9,))
    pd.testing.assert_frame_equal(
        forecast[forecast["unique_id"] == "short"].reset_index(drop=True), alone
    )


def test_a_cold_start_whose_last_day_is_missing_forecasts_the_last_value() -> None:
    """Its seasonal naive fallback has no value from one season ago: the last observed
    value, not zero traffic."""
    ds = pd.date_range("2026-11-01", periods=60, freq="1h")
    frame = pd.DataFrame(
        {"unique_id": "s", "ds": ds, "y": np.where(np.arange(60) < 36, 100.0, np.nan)}
    )
    model = LinearForecaster().fit(frame)
    assert isinstance(model.fallbacks_["s"], SeasonalNaive)
    assert model.fallback_reason_["s"].endswith(
        "using seasonal naive (no observed value in the last 1D; using last value)"
    )
    forecast = model.predict(6, quantiles=(0.5, 0.9))
    assert (forecast[["yhat", "q0.5", "q0.9"]] == 100.0).all(axis=None)


def test_only_cold_starts_still_forecast() -> None:
    newborn = poisson_days(1, seed=7, freq="1h").iloc[:5]
    forecast = LinearForecaster().fit(newborn).predict(3, quantiles=(0.5, 0.9))
    assert len(forecast) == 3 and np.isfinite(forecast["q0.9"]).all()


@pytest.mark.parametrize("at", [960, 2160])
def test_one_corrupt_interval_does_not_blow_up_the_quantiles(at: int) -> None:
    """A counter-reset artefact of 1e8 requests in one interval: as a target it would be a
    ratio of millions to the level, which the least-squares fit and its error quantiles
    chase; bounded by CLIP like every feature, it barely moves q0.9."""
    frame = poisson_days(10, seed=1, freq="5min")
    clean = LinearForecaster().fit(frame).predict(24, quantiles=(0.9,))
    spiked = frame.assign(y=np.where(frame.index == at, 1e8, frame["y"]))
    forecast = LinearForecaster().fit(spiked).predict(24, quantiles=(0.9,))
    assert forecast["q0.9"].max() < 10 * clean["q0.9"].max()


def test_a_calendar_lacking_a_trained_event_is_a_clear_error() -> None:
    """Reading the absent event as zeros would forecast a launch day as an ordinary one."""
    frame = poisson_days(10, seed=2, freq="1h")
    ds = pd.date_range(frame["ds"].min(), periods=len(frame) + 48, freq="1h")
    events = pd.DataFrame({"ds": ds, "deadline": (ds.day == 8) * 1.0, "launch": 0.0})
    model = LinearForecaster().fit(frame, events=events)
    with pytest.raises(ValueError, match="lacks the event column.*launch"):
        model.predict(12, events=events.drop(columns="launch"))
    with pytest.raises(ValueError, match="deadline, launch"):
        model.predict(12, events=events[["ds"]])
    assert len(model.predict(12, events=events)) == 12


def test_ridge_from_moments_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5)) * [1, 10, 0.1, 100, 1] + [0, 5, 1, 300, 2]
    y = X @ [1.0, -0.2, 3.0, 0.01, 0.0] + rng.normal(size=400)
    bins = rng.integers(0, 2, 400)
    coef, intercept = ridge(moments(X, y, bins, 2).sum(axis=0), alpha=3.0)
    mean, std = X.mean(axis=0), X.std(axis=0)
    reference = Ridge(alpha=3.0).fit((X - mean) / std, y)
    np.testing.assert_allclose(coef, reference.coef_ / std, rtol=1e-8)
    assert intercept == pytest.approx(reference.intercept_ - (mean / std) @ reference.coef_)


def fitted() -> tuple[LinearForecaster, pd.DataFrame]:
    """Two series, one with an outage, and a cold start: every kind of fitted state."""
    gappy = poisson_days(14, seed=11, freq="1h", uid="gappy")
    gappy.loc[100:140, "y"] = np.nan
    frame = pd.concat(
        [
            gappy,
            poisson_days(14, seed=12, freq="1h", uid="busy").assign(y=lambda f: f["y"] * 7),
            poisson_days(1, seed=13, freq="1h", uid="new").iloc[:30],
        ]
    )
    return LinearForecaster(country="CN", tz="Asia/Shanghai").fit(frame), frame


def test_store_round_trip_forecasts_exactly_the_same(tmp_path: Path) -> None:
    model, frame = fitted()
    before = model.predict(30, quantiles=(0.5, 0.9, 0.99))
    store.save({"m": model}, str(tmp_path), {}, store.fingerprint(frame), NOW)
    loaded = store.load(str(tmp_path)).models["m"]
    assert isinstance(loaded, LinearForecaster) and loaded.get_params() == model.get_params()
    pd.testing.assert_frame_equal(loaded.predict(30, quantiles=(0.5, 0.9, 0.99)), before)
    saved = json.loads((tmp_path / store.load(str(tmp_path)).version / "model.json").read_text())
    assert saved["m"]["$model"] == "LinearForecaster"  # plain JSON and arrays, nothing pickled


def test_a_tampered_coefficient_is_refused(tmp_path: Path) -> None:
    model, frame = fitted()
    version = store.save({"m": model}, str(tmp_path), {}, store.fingerprint(frame), NOW)
    arrays_file = tmp_path / version / "arrays.npz"
    with np.load(arrays_file, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    state = json.loads((tmp_path / version / "model.json").read_text())
    key = state["m"]["state"]["models_"]["busy"]["coef"]["$array"]
    arrays[key] = arrays[key] * 2  # a forecast doubled by whoever can write the store
    np.savez_compressed(arrays_file, **arrays)
    with pytest.raises(store.StoreError, match="arrays.npz does not match its checksum"):
        store.load(str(tmp_path))
