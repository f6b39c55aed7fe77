"""The replay simulator on tiny hand-made series, and the no-look-ahead guarantee."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

import controller.policy as policy
from controller.hpa import HPASettings, HPASimulator
from controller.replay import ReplaySettings, replay
from forecaster.models import SeasonalQuantile

START = pd.Timestamp("2026-11-02 00:00")


def series(values, start=START) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": "s",
            "ds": pd.date_range(start, periods=len(values), freq="1min"),
            "y": np.asarray(values, float),
        }
    )


def test_oracle_serves_everything_at_the_least_cost() -> None:
    y = [10.0] * 10 + [95.0] * 3 + [10.0] * 10
    settings = ReplaySettings(capacity_per_replica=10, startup_delay=timedelta(minutes=2))
    result = replay(series(y), START + timedelta(minutes=1), settings, policies=["oracle"])
    run = result.decisions
    assert run["unserved"].sum() == 0
    # 10 pods are asked for two minutes (the startup delay) before the surge, dropped after it
    assert run["replicas"].tolist()[6:14] == [1, 10, 10, 10, 10, 10, 1, 1]
    assert result.summary.loc[0, "cost_vs_oracle"] == 1.0


def test_capacity_model_pods_serve_only_after_the_startup_delay() -> None:
    y = [10.0] * 5 + [50.0] * 10
    settings = ReplaySettings(
        capacity_per_replica=10, startup_delay=timedelta(minutes=3), hpa_target=1.0
    )
    run = replay(series(y), START + timedelta(minutes=1), settings, policies=["hpa"]).decisions
    surge = run[run["ds"] >= START + timedelta(minutes=5)]
    # the HPA sees the surge one minute late and its pods need three more minutes
    assert surge["ready"].tolist()[:6] == [1, 1, 1, 1, 5, 5]
    assert surge["unserved"].tolist()[:5] == [40, 40, 40, 40, 0]
    summary = replay(
        series(y), START + timedelta(minutes=1), settings, policies=["hpa"]
    ).summary.iloc[0]
    assert summary["replica_minutes"] == run["replicas"].sum()
    assert summary["unserved_share"] == pytest.approx(160 / (4 * 10 + 10 * 50))


def test_missing_intervals_are_not_scored() -> None:
    y = [10.0] * 5 + [np.nan] * 5 + [10.0] * 5
    settings = ReplaySettings(capacity_per_replica=10, startup_delay=timedelta(minutes=1))
    summary = replay(
        series(y), START + timedelta(minutes=1), settings, policies=["hpa"]
    ).summary.iloc[0]
    assert summary["unserved_requests"] == 0 and summary["unserved_share"] == 0


def test_hpa_follows_the_kubernetes_rules() -> None:
    hpa = HPASimulator(
        HPASettings(
            min_replicas=1, max_replicas=100, capacity_per_replica=10, target_utilization=0.5
        )
    )
    assert hpa.sync(0, current=2, load=10.5) == 2  # ratio 1.05: within tolerance
    assert hpa.sync(15, current=2, load=200.0) == 6  # wants 40, at most max(+100 %, +4) = 6
    assert hpa.sync(30, current=6, load=200.0) == 12
    assert (
        hpa.sync(45, current=40, load=50.0) == 40
    )  # stabilisation: recommendations of the last 300 s
    assert hpa.sync(400, current=40, load=50.0) == 10
    assert hpa.sync(415, current=10, load=None) == 10  # no metric: no change


def test_predictive_never_looks_ahead() -> None:
    rng = np.random.default_rng(1)
    minutes = 60 * 24 * 9
    t = np.arange(minutes)
    y = 50 + 40 * np.sin(2 * np.pi * t / 1440) + rng.poisson(5, minutes)
    full = series(y)
    settings = ReplaySettings(
        capacity_per_replica=10,
        startup_delay=timedelta(minutes=3),
        retrain_every=timedelta(hours=12),
    )
    start = START + timedelta(days=7)
    cut = start + timedelta(hours=20)
    model = lambda: SeasonalQuantile(country=None, tz=None, weeks=1)  # noqa: E731
    whole = replay(full, start, settings, policies=["predictive"], model_factory=model).decisions
    # the same replay on a series that ends at the cut, with a wild future appended
    future = full.copy()
    future.loc[future["ds"] >= cut, "y"] = 10_000.0
    truncated = replay(
        future, start, settings, policies=["predictive"], model_factory=model
    ).decisions
    before = whole["ds"] < cut
    columns = ["ds", "replicas", "reason", "forecast_peak"]
    pd.testing.assert_frame_equal(whole.loc[before, columns], truncated.loc[before, columns])
    assert not whole.loc[~before, "replicas"].equals(truncated.loc[~before, "replicas"])


def test_the_nowcast_runs_from_the_first_decision_after_each_refit(monkeypatch) -> None:
    # Each refit holds out the level window, as the controller does; a model fitted up to
    # the refit would forecast only from there, and the nowcast would find nothing to
    # compare with for the first level window of every day.
    applied = []
    nowcast = policy.nowcast

    def spy(forecast, now, recent, bounds):
        out = nowcast(forecast, now, recent, bounds)
        applied.append(out is not forecast)
        return out

    monkeypatch.setattr(policy, "nowcast", spy)
    t = np.arange(60 * 24 * 9)
    full = series(50 + 40 * np.sin(2 * np.pi * t / 1440))
    settings = ReplaySettings(
        capacity_per_replica=10,
        startup_delay=timedelta(minutes=3),
        retrain_every=timedelta(hours=12),
        level_window=30,
    )
    start = START + timedelta(days=7)
    model = lambda: SeasonalQuantile(country=None, tz=None, weeks=1)  # noqa: E731
    replay(full, start, settings, ["predictive"], model, end=start + timedelta(days=1))
    assert len(applied) == 24 * 60 and all(applied)


def test_bad_arguments() -> None:
    settings = ReplaySettings(capacity_per_replica=10, startup_delay=timedelta(minutes=1))
    with pytest.raises(ValueError, match="unknown policies"):
        replay(series([1.0] * 10), START + timedelta(minutes=1), settings, policies=["magic"])
    with pytest.raises(ValueError, match="must fall after"):
        replay(series([1.0] * 10), START, settings)
