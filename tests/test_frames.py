"""Long-format frames: time stamps to naive UTC, values a model can use, one interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster.frames import (
    quantile_column,
    read_events,
    read_series,
    series_freq,
    validate_series,
)
from forecaster.models import LastValue


def test_offsets_that_change_across_dst_become_naive_utc(tmp_path: Path) -> None:
    """New York's offset goes from -05:00 to -04:00 on 8 March 2026: one column, two
    offsets, each stamp the same instant in UTC."""
    (tmp_path / "s.csv").write_text(
        "unique_id,ds,y\n"
        "a,2026-03-08 00:00:00-05:00,1\n"
        "a,2026-03-08 01:00:00-05:00,2\n"
        "a,2026-03-08 03:00:00-04:00,3\n"
    )
    frame = read_series(tmp_path / "s.csv")
    assert frame["ds"].dtype == "datetime64[ns]"
    assert frame["ds"].tolist() == list(pd.date_range("2026-03-08 05:00", periods=3, freq="1h"))
    assert series_freq(frame) == pd.Timedelta("1h")


def test_naive_stamps_are_kept_as_they_are() -> None:
    frame = validate_series(
        pd.DataFrame({"unique_id": "a", "ds": ["2026-03-08 01:00", "2026-03-08 02:00"], "y": 1})
    )
    assert frame["ds"].dtype == "datetime64[ns]"
    assert frame["ds"].tolist() == [
        pd.Timestamp("2026-03-08 01:00"),
        pd.Timestamp("2026-03-08 02:00"),
    ]


def test_an_event_calendar_with_offsets_is_in_naive_utc(tmp_path: Path) -> None:
    """Series are naive UTC, so a calendar left tz-aware would match none of their stamps."""
    (tmp_path / "e.csv").write_text(
        "ds,deadline\n2026-10-08 17:00:00+08:00,1\n2026-10-08 18:00:00+08:00,0\n"
    )
    events = read_events(tmp_path / "e.csv")
    assert events["ds"].dtype == "datetime64[ns]"
    assert events["ds"].tolist() == [
        pd.Timestamp("2026-10-08 09:00"),
        pd.Timestamp("2026-10-08 10:00"),
    ]


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_values_are_refused_and_missing_ones_kept(bad: float) -> None:
    ds = pd.date_range("2026-10-01", periods=6, freq="1h")
    frame = pd.DataFrame({"unique_id": "a", "ds": ds, "y": [1.0, bad, np.nan, bad, 5.0, 6.0]})
    with pytest.raises(
        ValueError, match=r"infinite y in 2 of its rows, e.g. a at 2026-10-01 01:00:00"
    ):
        validate_series(frame)
    assert validate_series(frame.assign(y=frame["y"].replace(bad, np.nan)))["y"].isna().sum() == 3


def two_intervals() -> pd.DataFrame:
    five = pd.date_range("2026-10-01", periods=48, freq="5min")
    hourly = pd.date_range("2026-10-01", periods=12, freq="1h")
    return pd.concat(
        [
            pd.DataFrame({"unique_id": "a", "ds": five, "y": 1.0}),
            pd.DataFrame({"unique_id": "b", "ds": five, "y": 1.0}),
            pd.DataFrame({"unique_id": "h", "ds": hourly, "y": 1.0}),
        ]
    )


def test_series_of_different_intervals_are_refused() -> None:
    """Forecast on the frame's most common interval, the hourly series was forecast every
    five minutes from a twelfth of its history."""
    frame = two_intervals()
    with pytest.raises(
        ValueError, match=r"different intervals: 0 days 00:05:00 \(a, b\), 0 days 01:00:00 \(h\)"
    ):
        series_freq(frame)
    with pytest.raises(ValueError, match="different intervals"):
        LastValue().fit(frame)


def test_the_interval_is_each_series_most_common_step() -> None:
    """Gaps (absent rows) and a series seen once do not make an interval of their own."""
    frame = two_intervals()
    frame = frame[frame["unique_id"] != "h"].drop(index=[3, 4, 5, 9])
    once = pd.DataFrame(
        {"unique_id": ["new"], "ds": [pd.Timestamp("2026-10-01 03:00")], "y": [2.0]}
    )
    assert series_freq(pd.concat([frame, once])) == pd.Timedelta("5min")


def test_series_and_event_names_that_look_like_numbers_keep_their_digits(tmp_path: Path) -> None:
    """ "01" and "1" are two services; read as numbers they became one (a duplicate-rows
    error) and "007" silently became "7"."""
    (tmp_path / "s.csv").write_text(
        "unique_id,ds,y\n01,2026-01-01 00:00,1\n1,2026-01-01 00:00,2\n007,2026-01-01 00:00,3\n"
    )
    assert sorted(read_series(tmp_path / "s.csv")["unique_id"]) == ["007", "01", "1"]
    (tmp_path / "e.csv").write_text("unique_id,ds,deadline\n007,2026-01-01 00:00,1\n")
    assert list(read_events(tmp_path / "e.csv")["unique_id"]) == ["007"]


def test_rows_without_a_series_name_are_refused() -> None:
    frame = pd.DataFrame({"unique_id": ["a", None, np.nan], "ds": ["2026-01-01"] * 3, "y": 1.0})
    with pytest.raises(ValueError, match="no unique_id in 2 of its rows"):
        validate_series(frame)


def test_close_quantiles_get_distinct_columns_and_float_noise_none() -> None:
    assert quantile_column(0.9999999) == "q0.9999999"  # it was q1
    assert quantile_column(0.9999999) != quantile_column(0.9999998)
    assert [quantile_column(q) for q in (0.9, 0.9625, 0.1 + 0.2)] == ["q0.9", "q0.9625", "q0.3"]


def test_a_float32_level_is_named_as_written() -> None:
    """Levels read from a float32 array (a config loaded with NumPy, a parquet column)
    were named by their double value: ``q0.8999999762`` for 0.9."""
    levels = np.array([0.5, 0.9, 0.9625], dtype=np.float32)
    assert [quantile_column(q) for q in levels] == ["q0.5", "q0.9", "q0.9625"]
