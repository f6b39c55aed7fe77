"""Synthetic series whose true distribution is known, shared by the model tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def poisson_days(days: int, seed: int, freq: str = "5min", uid: str = "s") -> pd.DataFrame:
    """Poisson counts around a known daily profile: the true quantiles are known."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range(
        "2026-10-05", periods=days * int(pd.Timedelta("1D") / pd.Timedelta(freq)), freq=freq
    )
    hour = ds.hour + ds.minute / 60
    mean = 20 + 80 * np.exp(-0.5 * ((hour - 10) / 2) ** 2)
    return pd.DataFrame({"unique_id": uid, "ds": ds, "y": rng.poisson(mean).astype(float)})
