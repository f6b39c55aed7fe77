"""Long-format frames: the one shape every series and forecast travels in.

A series frame has columns ``unique_id`` (str), ``ds`` (timezone-naive datetime64, UTC) and
``y`` (finite float, NaN where data is missing). A forecast frame has ``unique_id, ds,
yhat`` plus one column per quantile named by :func:`quantile_column`, its ``ds`` in the time
zone of the frame the model was fitted on (naive UTC when that was naive, as every frame
the command line and the controller build is). Backtest frames add ``cutoff``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

SERIES_COLUMNS = ("unique_id", "ds", "y")
EPOCH_MS_FROM = 1e11  # Unix time this large is milliseconds: in seconds, after the year 5000


def quantile_column(q: float) -> str:
    """Name of the forecast column holding quantile ``q`` (0 < q < 1), e.g. ``q0.9``.

    Ten significant digits: six (``:g``) named 0.9999999 ``q1``, and two quantiles that
    close shared one column; ten still write 0.1 + 0.2 as ``q0.3``.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be strictly between 0 and 1, got {q}")
    if isinstance(q, np.floating) and q.dtype.itemsize < 8:
        # The shortest text of a float32 0.9 is 0.9; as a double it is 0.8999999762.
        q = float(np.format_float_positional(q))
    return f"q{q:.10g}"


def quantile_columns(quantiles: Sequence[float]) -> list[str]:
    """Column names for several quantiles, in the order given."""
    return [quantile_column(q) for q in quantiles]


def naive_utc(values: pd.Series) -> pd.Series:
    """Time stamps as timezone-naive UTC ``datetime64[ns]``, the convention of every frame.

    Stamps with a UTC offset are converted, even when the offset changes within the column
    (local time written across a DST change: ``-05:00`` then ``-04:00``); naive stamps are
    taken as UTC already and kept as they are. Numbers are Unix time, in seconds or (too
    large for seconds) milliseconds, as count files are read: pandas took them for
    nanoseconds, a day of minutes within the first two seconds of 1970. Periods
    (``to_period("h")``) are their start, as statsmodels and pandas resampling label them.
    """
    if isinstance(values.dtype, pd.PeriodDtype):  # pandas refused them with a TypeError
        values = values.dt.to_timestamp()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        unit = "ms" if values.abs().max() >= EPOCH_MS_FROM else "s"
        return pd.to_datetime(values, unit=unit).astype("datetime64[ns]")
    return pd.to_datetime(values, utc=True).dt.tz_localize(None).astype("datetime64[ns]")


def validate_series(df: pd.DataFrame) -> pd.DataFrame:
    """Check that ``df`` is a long-format series frame and return it with canonical dtypes.

    Raises ``ValueError`` with a message naming what is wrong, so a CLI can print it as is.
    The input is not modified.
    """
    missing = [c for c in SERIES_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"series frame lacks column(s) {', '.join(missing)}; expected unique_id, ds, y"
        )
    out = df.copy()
    unnamed = out["unique_id"].isna()
    if unnamed.any():  # as text, every one of them would be one series called "nan"
        raise ValueError(f"series frame has no unique_id in {int(unnamed.sum())} of its rows")
    out["unique_id"] = out["unique_id"].astype(str)  # ids are text: 7 and "7" are one series
    out["ds"] = naive_utc(out["ds"])
    undated = out["ds"].isna()
    if undated.any():  # a blank cell: its value was dropped as a gap, two were "duplicates"
        raise ValueError(f"series frame has no ds in {int(undated.sum())} of its rows")
    try:
        out["y"] = pd.to_numeric(out["y"], errors="raise").astype(float)
    except (ValueError, TypeError) as exc:  # pandas' message names neither the column nor the row
        raise ValueError(f"series frame has a y that is not a number: {exc}") from None
    # NaN is a missing value, which every model skips; an infinite one turns a fit
    # (gradient boosting, linear) into NaN forecasts for the whole series.
    infinite = np.isinf(out["y"].to_numpy())
    if infinite.any():
        first = out[infinite].iloc[0]
        raise ValueError(
            f"series frame has an infinite y in {int(infinite.sum())} of its rows, e.g."
            f" {first['unique_id']} at {first['ds']}: {first['y']}; write NaN for a missing value"
        )
    if out.duplicated(["unique_id", "ds"]).any():
        raise ValueError("series frame has duplicate (unique_id, ds) rows")
    return out.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)


def read_series(path: str | Path) -> pd.DataFrame:
    """Read a series frame from ``.csv`` or ``.parquet`` and validate it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    return validate_series(_read_table(path))


def read_events(path: str | Path) -> pd.DataFrame:
    """Read an event calendar: ``ds``, optionally ``unique_id``, and one numeric column per
    known-in-advance event (a deadline, an announcement, maintenance), 0 when absent."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    df = _read_table(path)
    if "ds" not in df.columns:
        raise ValueError(f"{path}: an event calendar needs a ds column")
    names = [c for c in df.columns if c not in ("unique_id", "ds")]
    if not names:
        raise ValueError(f"{path}: no event columns besides ds")
    out = df.copy()
    out["ds"] = naive_utc(out["ds"])  # as the series', or no event would match their stamps
    for name in names:
        try:
            out[name] = pd.to_numeric(out[name]).astype(float)
        except (ValueError, TypeError):
            raise ValueError(f"{path}: event column {name!r} is not numeric") from None
    return out


def _read_table(path: Path) -> pd.DataFrame:
    """A ``.csv`` or ``.parquet`` file (either case: ``SERIES.CSV``), ``unique_id`` as text.

    An event calendar of any other extension was read as CSV: a spreadsheet (``.xlsx``)
    failed with a UnicodeDecodeError, and ``series.CSV`` was refused.
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path, dtype={"unique_id": str})  # "007" is a name, not 7
    raise ValueError(f"{path}: unsupported extension {path.suffix!r}; use .csv or .parquet")


def write_frame(df: pd.DataFrame, path: str | Path) -> None:
    """Write any long-format frame to ``.csv`` or ``.parquet``, chosen by the extension."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        df.to_parquet(path, index=False)
    elif path.suffix.lower() == ".csv":
        df.to_csv(path, index=False)
    else:
        raise ValueError(f"{path}: unsupported extension {path.suffix!r}; use .csv or .parquet")


def series_freq(df: pd.DataFrame) -> pd.Timedelta:
    """The sampling interval of a series frame: each series' most common step, the same for
    all of them (a series seen once has none and agrees with any).

    Every model forecasts a frame on one grid, so a frame mixing intervals is refused: on
    the most common one, an hourly series among five-minute ones was forecast every five
    minutes. Each series' own mode ignores its gaps (absent rows).
    """
    frame = df.sort_values(["unique_id", "ds"])
    step = frame.groupby("unique_id")["ds"].diff().rename("step")
    counts = frame.groupby(["unique_id", step], sort=False).size()  # a first row has no step
    if counts.empty:
        raise ValueError("cannot infer the interval of a series with fewer than two points")
    # most common step of each series; of equally common ones, the shortest
    ranked = counts.reset_index(name="n").sort_values(
        ["unique_id", "n", "step"], ascending=[True, False, True]
    )
    interval = ranked.drop_duplicates("unique_id").groupby("step")["unique_id"].agg(list)
    if len(interval) > 1:
        named = ", ".join(f"{every} ({_some(uids)})" for every, uids in interval.items())
        raise ValueError(
            f"series have different intervals: {named}; split them into one frame per interval"
        )
    return pd.Timedelta(interval.index[0])


def _some(names: list[str], shown: int = 5) -> str:
    """A few names of a list, and how many more: a fleet has thousands of series."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
