"""The check suite every model passes, in the spirit of scikit-learn's parametrize_with_checks.

Each model: ``__init__`` stores parameters only, ``clone``/``get_params``/``set_params``
work, ``fit`` returns self and can be called again, ``predict`` returns ``horizon`` rows per
series with ``unique_id, ds, yhat`` and one column per quantile, quantiles never cross, and
missing data (NaN) is neither learned as zero nor propagated into the forecast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from forecaster.models import ConformalCalibrator, SeasonalNaive, registry

FAST = {name: make for name, make in registry(country=None, tz=None, include_slow=True).items()}
FAST["conformal_seasonal_naive"] = lambda: ConformalCalibrator(SeasonalNaive(), horizon=12, folds=3)


def hourly(days: int = 21, seed: int = 0, uid: str = "s", scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2026-08-31", periods=24 * days, freq="1h")
    mean = scale * (40 + 30 * np.sin(2 * np.pi * (ds.hour - 6) / 24) + 10 * (ds.day_of_week < 5))
    return pd.DataFrame({"unique_id": uid, "ds": ds, "y": rng.poisson(mean).astype(float)})


@pytest.fixture(params=sorted(FAST), ids=str)
def make(request):
    return FAST[request.param]


def comparable(params: dict) -> dict:
    """Parameters with nested estimators by repr: clone copies them, so identity differs."""
    return {k: repr(v) if hasattr(v, "get_params") else v for k, v in params.items()}


def test_init_stores_parameters_only_and_clone_round_trips(make) -> None:
    model = make()
    params = model.get_params()
    assert not [k for k in vars(model) if k.endswith("_") and not k.startswith("_")]
    twin = clone(model)
    assert comparable(twin.get_params()) == comparable(params) and twin is not model
    assert twin.set_params(**params) is twin


def test_predict_shape_columns_and_monotone_quantiles(make) -> None:
    frame = pd.concat([hourly(uid="a"), hourly(seed=1, uid="b", scale=3.0)])
    model = make().fit(frame)
    forecast = model.predict(30, quantiles=(0.5, 0.9, 0.95, 0.99))
    assert list(forecast.columns) == ["unique_id", "ds", "yhat", "q0.5", "q0.9", "q0.95", "q0.99"]
    assert forecast.groupby("unique_id").size().to_dict() == {"a": 30, "b": 30}
    first = forecast.groupby("unique_id")["ds"].min()
    assert (first == frame["ds"].max() + pd.Timedelta("1h")).all()
    values = forecast[["q0.5", "q0.9", "q0.95", "q0.99"]].to_numpy()
    assert np.isfinite(values).all() and np.isfinite(forecast["yhat"]).all()
    assert (np.diff(values, axis=1) >= -1e-9).all()
    by_id = forecast.groupby("unique_id")["q0.5"].mean()
    assert by_id["b"] > 2 * by_id["a"]  # each series keeps its own level


def test_refit_forgets_the_previous_fit_and_leaves_input_untouched(make) -> None:
    frame = hourly()
    before = frame.copy()
    model = make()
    model.fit(frame)
    shorter = frame.iloc[: len(frame) // 2]
    again = model.fit(shorter).predict(5, quantiles=(0.9,))
    assert again["ds"].iloc[0] == shorter["ds"].iloc[-1] + pd.Timedelta("1h")
    assert frame.equals(before)


def test_missing_data_is_not_learned_as_zero(make) -> None:
    frame = hourly(days=21, seed=2)
    holed = frame.copy()
    # a 2-day outage a week before the end, and the last value missing
    outage = (holed["ds"] >= holed["ds"].max() - pd.Timedelta("9D")) & (
        holed["ds"] < holed["ds"].max() - pd.Timedelta("7D")
    )
    holed.loc[outage, "y"] = np.nan
    holed.loc[holed.index[-1], "y"] = np.nan
    clean = make().fit(frame).predict(24, quantiles=(0.5, 0.9))
    gappy = make().fit(holed).predict(24, quantiles=(0.5, 0.9))
    assert np.isfinite(gappy[["yhat", "q0.5", "q0.9"]].to_numpy()).all()
    assert gappy["q0.5"].mean() == pytest.approx(clean["q0.5"].mean(), rel=0.25)


def test_predict_before_fit_is_a_clear_error(make) -> None:
    with pytest.raises(NotFittedError, match="not fitted yet"):
        make().predict(3)


def test_a_series_that_never_fired_forecasts_zero(make) -> None:
    """A status=5xx series with no errors in its history: zero, never NaN (seasonal quantile
    forecast NaN from the level of days whose median is 0/0)."""
    forecast = make().fit(hourly().assign(y=0.0)).predict(24, quantiles=(0.5, 0.9))
    np.testing.assert_allclose(forecast[["yhat", "q0.5", "q0.9"]], 0.0, atol=1e-6)


def test_a_series_below_zero_is_forecast_around_its_level(make) -> None:
    """A net flow rather than a request count: the direct models divided by a level below
    zero floored to 1 % of the mean, and the linear model, its ratios clipped, forecast half
    the level with every quantile equal; the baselines clipped every quantile to 0."""
    frame = hourly().assign(y=lambda d: d["y"] - 200)
    forecast = make().fit(frame).predict(24, quantiles=(0.1, 0.5, 0.9))
    recent = frame["y"].iloc[-7 * 24 :].mean()
    assert forecast["q0.5"].mean() == pytest.approx(recent, rel=0.25)
    assert (forecast["q0.9"] - forecast["q0.1"]).mean() > 5
