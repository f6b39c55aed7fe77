"""Forecasting models, shaped like scikit-learn estimators.

Every model takes a long-format series frame in ``fit`` and returns a long-format forecast
frame from ``predict(horizon, quantiles)``: ``unique_id, ds, yhat`` plus one column per
quantile (named by :func:`forecaster.frames.quantile_column`).
"""

from collections.abc import Callable
from typing import Any

from forecaster.models.base import PerSeriesModel
from forecaster.models.baselines import LastValue
from forecaster.models.seasonal import SeasonalNaive, SeasonalQuantile
from forecaster.models.sklearn_model import GradientBoostingForecaster


def registry(
    country: str | None = "CN", tz: str | None = "Asia/Shanghai"
) -> dict[str, Callable[[], Any]]:
    """Models by the names the CLI and ``--model auto`` use, configured for a calendar."""
    return {
        "seasonal_naive": lambda: SeasonalNaive(season="1D"),
        "seasonal_naive_week": lambda: SeasonalNaive(season="7D"),
        "last_value": lambda: LastValue(),
        "seasonal_quantile": lambda: SeasonalQuantile(country=country, tz=tz, normalize=True),
        "gradient_boosting": lambda: GradientBoostingForecaster(country=country, tz=tz),
    }


__all__ = [
    "GradientBoostingForecaster",
    "LastValue",
    "PerSeriesModel",
    "SeasonalNaive",
    "SeasonalQuantile",
    "registry",
]
