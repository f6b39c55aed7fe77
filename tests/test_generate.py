"""The synthetic portal traffic: determinism, realistic calendar effects, exact round trip."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.generate import Traffic, TrafficProfile, generate_traffic, write_access_log
from forecaster.ingest import ingest_logs

COMBINED = re.compile(
    r"^\d+\.\d+\.\d+\.\d+ - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d ([+-]\d{4})\] "
    r'"(GET|POST) /\S* HTTP/1\.1" \d{3} \d+ "[^"]*" "[^"]*"$'
)
QUIET = TrafficProfile(peak_rps=0.5, flash_crowds_per_week=0)


def daily_expected(traffic: Traffic) -> pd.Series:
    """Expected requests per local calendar day."""
    local = (traffic.start_utc + pd.to_timedelta(np.arange(traffic.seconds), "s")).tz_convert(
        traffic.profile.tz
    )
    return pd.Series(traffic.expected_rps, index=local.date).groupby(level=0).sum()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    logs = []
    for n, seed in enumerate([7, 7, 8]):
        traffic = generate_traffic(QUIET, date(2026, 11, 2), 2, seed=seed)
        write_access_log(traffic, tmp_path / f"{n}.log", seed=seed)
        logs.append((tmp_path / f"{n}.log").read_bytes())
    assert logs[0] == logs[1] and logs[0] != logs[2]


def test_lines_are_combined_format_with_local_offset(tmp_path: Path) -> None:
    traffic = generate_traffic(QUIET, date(2026, 11, 2), 1, seed=1)
    written = write_access_log(traffic, tmp_path / "a.log")
    lines = (tmp_path / "a.log").read_text().splitlines()
    assert written == len(lines) == traffic.requests > 1000
    offsets = {COMBINED.match(line).group(1) for line in lines}  # AttributeError if any line is off
    assert offsets == {"+0800"}


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), freq=st.sampled_from(["1s", "10s", "1min", "5min", "1h"]))
def test_ingest_reproduces_the_true_counts_exactly(tmp_path_factory, seed: int, freq: str) -> None:
    folder = tmp_path_factory.mktemp("roundtrip")
    traffic = generate_traffic(TrafficProfile(peak_rps=0.3), date(2026, 11, 27), 2, seed=seed)
    write_access_log(traffic, folder / "a.log.gz", seed=seed)
    ingested = ingest_logs(folder / "a.log.gz", freq=freq, gap=None).series
    truth = traffic.true_counts(freq)
    merged = truth.merge(ingested, on="ds", how="left", suffixes=("_true", "_ingested"))
    inside = merged["ds"].between(ingested["ds"].min(), ingested["ds"].max())
    assert (merged.loc[inside, "y_true"] == merged.loc[inside, "y_ingested"]).all()
    assert merged.loc[~inside, "y_true"].sum() == 0
    assert ingested["y"].sum() == traffic.requests


def test_round_trip_across_a_daylight_saving_change(tmp_path: Path) -> None:
    profile = TrafficProfile(peak_rps=0.3, tz="Europe/Paris")
    traffic = generate_traffic(profile, date(2026, 10, 24), 3, seed=3)  # clocks go back on the 25th
    write_access_log(traffic, tmp_path / "a.log")
    ingested = ingest_logs(tmp_path / "a.log", freq="1h", gap=None).series.set_index("ds")["y"]
    truth = traffic.true_counts("1h").set_index("ds")["y"]
    assert ingested.equals(truth.loc[ingested.index.min() : ingested.index.max()])


def test_maintenance_windows_are_silent_and_ingested_as_missing(tmp_path: Path) -> None:
    traffic = generate_traffic(
        TrafficProfile(peak_rps=2.0), date(2026, 11, 16), 7, seed=4
    )  # Sunday the 22nd
    assert traffic.maintenance.sum() == 2 * 3600
    assert traffic.counts[traffic.maintenance].sum() == 0
    write_access_log(traffic, tmp_path / "a.log")
    series = ingest_logs(tmp_path / "a.log", freq="1min", gap="30min").series
    missing = series.loc[series["y"].isna(), "ds"]
    # 02:00-04:00 Asia/Shanghai on Sunday 22 November is 18:00-20:00 UTC on the 21st
    window = pd.date_range("2026-11-21 18:00", "2026-11-21 19:59", freq="1min")
    assert set(window) <= set(missing)  # the whole window is missing, not zero
    # ...plus at most the odd quiet night minute that touches it, and nothing else
    assert missing.between("2026-11-21 17:50", "2026-11-21 20:10").all() and len(missing) <= 130


def test_weekends_run_at_about_a_third_and_holidays_lower() -> None:
    traffic = generate_traffic(
        TrafficProfile(growth_per_week=0, flash_crowds_per_week=0), date(2026, 9, 28), 21
    )
    daily = daily_expected(traffic)
    working = daily[date(2026, 9, 28)]  # Monday
    assert 0.30 <= daily[date(2026, 10, 18)] / working <= 0.40  # a Sunday
    assert daily[date(2026, 10, 2)] / working == pytest.approx(0.25)  # National Day holiday
    assert daily[date(2026, 10, 10)] / working == pytest.approx(
        1.0
    )  # Saturday, make-up working day


def test_peaks_at_office_hours_with_a_lunch_dip() -> None:
    traffic = generate_traffic(
        TrafficProfile(growth_per_week=0, flash_crowds_per_week=0), date(2026, 11, 17), 1
    )
    hourly = pd.Series(traffic.expected_rps).groupby(np.arange(traffic.seconds) // 3600).mean()
    assert hourly.idxmax() in (9, 10)
    assert hourly[12] < 0.6 * hourly[10] and hourly[15] > 0.8 * hourly[10]
    assert hourly[3] < 0.1 * hourly[10]


def test_deadline_and_month_end_surges() -> None:
    profile = TrafficProfile(
        growth_per_week=0, flash_crowds_per_week=0, deadlines=(date(2026, 11, 18),)
    )
    traffic = generate_traffic(profile, date(2026, 11, 16), 15, seed=0)
    local = (traffic.start_utc + pd.to_timedelta(np.arange(traffic.seconds), "s")).tz_convert(
        "Asia/Shanghai"
    )
    peak = pd.Series(traffic.expected_rps, index=local.date).groupby(level=0).max()
    normal = peak[date(2026, 11, 16)]
    assert peak[date(2026, 11, 18)] >= 3.5 * normal  # the deadline
    assert peak[date(2026, 11, 17)] > 1.5 * normal  # the eve of the deadline
    assert peak[date(2026, 11, 30)] >= 2.4 * normal  # last working day of November


def test_noise_is_over_dispersed() -> None:
    traffic = generate_traffic(
        TrafficProfile(peak_rps=20, growth_per_week=0, flash_crowds_per_week=0),
        date(2026, 11, 17),
        1,
    )
    minute = np.arange(traffic.seconds) // 60
    counts = np.bincount(minute, weights=traffic.counts)
    expected = np.bincount(minute, weights=traffic.expected_rps)
    busy = expected > 300
    dispersion = np.mean((counts[busy] - expected[busy]) ** 2 / expected[busy])
    assert dispersion > 3  # Poisson would give 1


def test_flash_crowds_jump_then_decay() -> None:
    quiet = generate_traffic(TrafficProfile(flash_crowds_per_week=0), date(2026, 11, 16), 7, seed=5)
    crowded = generate_traffic(
        TrafficProfile(flash_crowds_per_week=5), date(2026, 11, 16), 7, seed=5
    )
    ratio = crowded.expected_rps / np.where(quiet.expected_rps > 0, quiet.expected_rps, 1)
    assert ratio.max() == pytest.approx(3.0, rel=0.05)
    assert ratio[quiet.expected_rps > 0].min() >= 1.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="days must be positive"):
        generate_traffic(QUIET, date(2026, 11, 16), 0)
    with pytest.raises(ValueError, match="dividing a day"):
        generate_traffic(QUIET, date(2026, 11, 16), 1).true_counts("7s")
