"""Forecasting models, shaped like scikit-learn estimators.

Every model takes a long-format series frame in ``fit`` and returns a long-format forecast
frame from ``predict(horizon, quantiles)``: ``unique_id, ds, yhat`` plus one column per
quantile (named by :func:`forecaster.frames.quantile_column`).
"""

from collections.abc import Callable
from typing import Any

from forecaster.models.base import PerSeriesModel
from forecaster.models.baselines import LastValue
from forecaster.models.calibration import ConformalCalibrator
from forecaster.models.linear import LinearForecaster
from forecaster.models.prophet_model import ProphetForecaster
from forecaster.models.seasonal import SeasonalNaive, SeasonalQuantile
from forecaster.models.sklearn_model import GradientBoostingForecaster


def registry(
    country: str | None = "CN", tz: str | None = "Asia/Shanghai", include_slow: bool = False
) -> dict[str, Callable[[], Any]]:
    """Models by the names the CLI and ``--model auto`` use, configured for a calendar.

    ``include_slow`` adds Prophet, whose fit takes seconds to minutes per series: too slow
    to refit every simulated day in a replay, so it is asked for by name.
    """
    models: dict[str, Callable[[], Any]] = {
        "seasonal_naive": lambda: SeasonalNaive(season="1D"),
        "seasonal_naive_week": lambda: SeasonalNaive(season="7D"),
        "last_value": lambda: LastValue(),
        "seasonal_quantile": lambda: SeasonalQuantile(country=country, tz=tz, normalize=True),
        "gradient_boosting": lambda: GradientBoostingForecaster(country=country, tz=tz),
        "linear": lambda: LinearForecaster(country=country, tz=tz),
    }
    if include_slow:
        models["prophet"] = lambda: ProphetForecaster(country=country, tz=tz)
    return models


__all__ = [
    "ConformalCalibrator",
    "ProphetForecaster",
    "GradientBoostingForecaster",
    "LastValue",
    "LinearForecaster",
    "PerSeriesModel",
    "SeasonalNaive",
    "SeasonalQuantile",
    "registry",
]
