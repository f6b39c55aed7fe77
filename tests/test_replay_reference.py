"""The replay, its HPA baseline and its oracle against slow, obviously correct references."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from controller.replay import ReplaySettings, replay

ORIGIN = pd.Timestamp("2026-11-02 00:00")


def frame(values: list[float], step: pd.Timedelta) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": "s",
            "ds": pd.date_range(ORIGIN, periods=len(values), freq=step),
            "y": np.asarray(values, float),
        }
    )


def test_a_load_a_rounding_error_above_the_capacity_is_served() -> None:
    """A ``rate()`` reads 40.00000000001 where two 20-request pods serve 40: every policy
    asks for two pods, as ``needed_replicas`` absorbs the float noise, yet the minute
    counted as over capacity, even for the oracle (36 % of its minutes)."""
    loads = [20.0] * 5 + [40.00000000001] * 5 + [20.0] * 5
    replay_settings = ReplaySettings(capacity_per_replica=20, startup_delay=timedelta(minutes=1))
    step = pd.Timedelta("1min")
    result = replay(frame(loads, step), ORIGIN + step, replay_settings, ["oracle"])
    oracle = result.summary.iloc[0]
    assert oracle["minutes_over_capacity_share"] == 0
    assert oracle["unserved_requests"] == 0
    assert (result.decisions["unserved"] == 0).all()
