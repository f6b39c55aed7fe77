"""Conformal calibration: a badly calibrated model comes out calibrated on known quantiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from forecaster.models import ConformalCalibrator, LastValue, SeasonalNaive


def gaussian_days(days: int, seed: int, sigma: float = 10.0) -> pd.DataFrame:
    """A smooth daily profile plus Gaussian noise: the true quantiles are profile + z*sigma."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2026-10-05", periods=24 * days, freq="1h")
    profile = 100 + 50 * np.sin(2 * np.pi * ds.hour / 24)
    return pd.DataFrame({"unique_id": "s", "ds": ds, "y": profile + rng.normal(0, sigma, len(ds))})


def coverage(model, frame: pd.DataFrame, train_days: int, q: float) -> float:
    """Share of the days after ``train_days`` at or below the day-ahead q forecast."""
    hits = []
    for day in range(train_days, frame["ds"].dt.normalize().nunique()):
        cut = frame["ds"].min() + pd.Timedelta(days=day)
        train, test = frame[frame["ds"] < cut], frame[(frame["ds"] >= cut)].iloc[:24]
        forecast = clone(model).fit(train).predict(24, quantiles=(q,))
        hits.append(test["y"].to_numpy() <= forecast[f"q{q:g}"].to_numpy())
    return float(np.mean(np.concatenate(hits)))


def test_conformal_correction_fixes_a_miscalibrated_model() -> None:
    frame = gaussian_days(40, seed=1)
    # Last value ignores the daily cycle, so its random-walk quantiles are exceeded far more
    # often than nominal; the calibrated wrapper brings them back to about 10 %.
    raw = coverage(LastValue(), frame, train_days=25, q=0.9)
    calibrated = coverage(ConformalCalibrator(LastValue(), horizon=24, folds=10), frame, 25, 0.9)
    assert raw < 0.85
    assert abs(calibrated - 0.9) < 0.04


def test_conformal_correction_keeps_a_calibrated_model_calibrated() -> None:
    frame = gaussian_days(40, seed=1)
    model = ConformalCalibrator(SeasonalNaive(season="1D"), horizon=24, folds=10)
    assert abs(coverage(model, frame, train_days=25, q=0.9) - 0.9) < 0.04


def test_too_short_to_calibrate_is_reported_not_hidden() -> None:
    frame = gaussian_days(2, seed=2)
    model = ConformalCalibrator(SeasonalNaive(), horizon=24, folds=5).fit(frame)
    assert model.fallback_reason_["s"].startswith("not calibrated")
    assert len(model.predict(24)) == 24


@pytest.mark.parametrize(
    "bad", [{"folds": 0}, {"every": -5}, {"horizon": 0}], ids=["folds", "every", "horizon"]
)
def test_a_bad_argument_is_an_error_not_an_uncalibrated_model(bad) -> None:
    """Only history too short to backtest leaves a model uncalibrated (and says so): any
    other error from the backtest was caught with it, and a typo gave a model whose
    quantiles nobody had corrected."""
    model = ConformalCalibrator(SeasonalNaive(), **({"horizon": 12, "folds": 3} | bad))
    with pytest.raises(ValueError, match="positive whole number"):
        model.fit(gaussian_days(10, seed=0))
