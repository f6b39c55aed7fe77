"""Forecasting models, shaped like scikit-learn estimators.

Every model takes a long-format series frame in ``fit`` and returns a long-format forecast
frame from ``predict(horizon, quantiles)``: ``unique_id, ds, yhat`` plus one column per
quantile (named by :func:`forecaster.frames.quantile_column`).
"""

from forecaster.models.seasonal import SeasonalNaive, SeasonalQuantile

__all__ = ["SeasonalNaive", "SeasonalQuantile"]
