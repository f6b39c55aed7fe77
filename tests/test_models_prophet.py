"""The Prophet adapter: calendar regressors, events, quantile methods, cold start."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster.models import ProphetForecaster
from forecaster.models.prophet_model import calendar_regressors


def test_holidays_and_make_up_working_days_become_regressors() -> None:
    ds = pd.Series(pd.to_datetime(["2026-10-01", "2026-10-09", "2026-10-10", "2026-10-11"]))
    regressors = calendar_regressors(ds, "CN")
    assert regressors["holiday"].tolist() == [1, 0, 0, 0]  # National Day
    assert regressors["makeup_workday"].tolist() == [0, 0, 1, 0]  # Saturday 10 Oct 2026 is worked


@pytest.mark.parametrize("method", ["residuals", "uncertainty"])
def test_quantile_methods_and_events(method: str) -> None:
    rng = np.random.default_rng(0)
    ds = pd.date_range("2026-09-01", periods=24 * 21, freq="1h")
    y = 50 + 30 * np.sin(2 * np.pi * ds.hour / 24) + rng.normal(0, 3, len(ds))
    events = pd.DataFrame({"ds": pd.date_range(ds[0], periods=len(ds) + 48, freq="1h")})
    events["launch"] = (events["ds"].dt.hour == 12).astype(float) * (events["ds"].dt.day % 2 == 0)
    y = y + 100 * events["launch"].to_numpy()[: len(ds)]
    frame = pd.DataFrame({"unique_id": "a", "ds": ds, "y": y})
    frame.loc[50:80, "y"] = np.nan  # an outage: left out, not learned as zeros
    model = ProphetForecaster(country="CN", quantile_method=method).fit(frame, events=events)
    forecast = model.predict(48, quantiles=(0.5, 0.9), events=events)
    launch = forecast["ds"].isin(events.loc[events["launch"] > 0, "ds"])
    assert launch.any() and forecast.loc[launch, "yhat"].min() > 120
    assert (forecast["q0.9"] > forecast["q0.5"]).all()
    assert forecast.loc[~launch, "yhat"].mean() == pytest.approx(50, abs=8)


def test_cold_start_falls_back() -> None:
    ds = pd.date_range("2026-09-01", periods=30, freq="1h")
    frame = pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.arange(30.0)})
    model = ProphetForecaster().fit(frame)
    assert "cold start" in model.fallback_reason_["a"]
    assert len(model.predict(5)) == 5


def test_a_net_flow_fitted_alongside_counts_leaves_the_counts_clipped() -> None:
    """The flag was one for the whole frame: a net flow (below zero) fitted with a request
    count left the count's quantiles unclipped, below zero on its quiet nights."""
    rng = np.random.default_rng(0)
    ds = pd.date_range("2026-09-01", periods=24 * 7, freq="1h")
    quiet = np.where(ds.hour < 6, 0.0, 40 + 30 * np.sin(2 * np.pi * ds.hour / 24))
    counts = pd.DataFrame({"unique_id": "counts", "ds": ds, "y": rng.poisson(quiet + 1e-9)})
    flow = pd.DataFrame({"unique_id": "flow", "ds": ds, "y": rng.normal(-20, 15, len(ds))})
    model = ProphetForecaster(country=None).fit(pd.concat([counts, flow]))
    forecast = model.predict(24, quantiles=(0.05, 0.5, 0.9))
    mine = forecast[forecast["unique_id"] == "counts"]
    assert (mine[["yhat", "q0.05", "q0.5", "q0.9"]].to_numpy() >= 0).all()
    assert (forecast.loc[forecast["unique_id"] == "flow", "q0.05"] < 0).all()
