"""Ingesting whole logs: counts per interval, gaps, splits, chunking and the line report."""

from __future__ import annotations

import bz2
import gzip
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster.ingest import IngestError, gap_mask, ingest_logs, load_counts, parse_freq
from forecaster.logs import pattern_format
from tests.conftest import shared_file


def clf(ts: datetime, path: str = "/", status: int = 200, method: str = "GET") -> str:
    return f'10.0.0.1 - - [{ts:%d/%b/%Y:%H:%M:%S %z}] "{method} {path} HTTP/1.1" {status} 512\n'


T0 = datetime(2026, 11, 20, 9, 0, 0, tzinfo=timezone(timedelta(hours=8)))


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines))
    return path


def test_nasa_raw_sample_matches_published_counts() -> None:
    log = shared_file("nasa-http/raw-sample/NASA_Aug95_100.txt")
    result = ingest_logs(log, freq="1min")
    counts = result.series.set_index("ds")["y"]
    assert counts[pd.Timestamp("1995-08-01 04:00")] == 51
    assert counts[pd.Timestamp("1995-08-01 04:01")] == 42
    assert result.report.lines == 100 and result.report.parsed == 100


def test_counts_per_interval_out_of_order_lines(tmp_path: Path) -> None:
    stamps = [T0 + timedelta(seconds=s) for s in (130, 5, 61, 0, 59, 125, 60)]
    result = ingest_logs(write(tmp_path / "a.log", [clf(t) for t in stamps]), freq="1min")
    assert result.series["ds"].dt.strftime("%H:%M").tolist() == ["01:00", "01:01", "01:02"]
    assert result.series["y"].tolist() == [3, 2, 2]


@pytest.mark.parametrize("freq", ["1s", "10s", "1min", "5min", "1h"])
def test_every_frequency_conserves_requests(tmp_path: Path, freq: str) -> None:
    rng = np.random.default_rng(3)
    stamps = [T0 + timedelta(seconds=int(s)) for s in rng.integers(0, 1200, size=400)]
    result = ingest_logs(write(tmp_path / "a.log", [clf(t) for t in stamps]), freq=freq, gap=None)
    assert result.series["y"].sum() == 400
    step = pd.Timedelta(freq)
    assert (result.series["ds"].diff().dropna() == step).all()
    assert (result.series["ds"].astype("int64") % step.value == 0).all()


def test_long_silence_is_missing_short_one_is_zero(tmp_path: Path) -> None:
    minutes = [0, 1, 5, 6, 60, 61]  # 3-minute quiet spell, then 53 minutes of nothing
    lines = [clf(T0 + timedelta(minutes=m)) for m in minutes]
    series = ingest_logs(write(tmp_path / "a.log", lines), freq="1min", gap="30min").series
    y = series.set_index(series["ds"].dt.strftime("%H:%M"))["y"]
    assert y["01:02"] == 0 and y["01:04"] == 0  # quiet minutes stay zero
    assert y.loc["01:07":"01:59"].isna().all()  # the outage is missing, not zero
    assert y["01:00"] == 1 and y["02:01"] == 1
    kept_zero = ingest_logs(tmp_path / "a.log", freq="1min", gap=None).series
    assert not kept_zero["y"].isna().any()


def test_gap_mask_runs() -> None:
    empty = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1], dtype=bool)
    assert gap_mask(empty, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0]
    assert gap_mask(empty, 1).tolist() == empty.tolist()
    assert not gap_mask(empty, 0).any()


def test_split_by_status_and_method_shares_the_gap_mask(tmp_path: Path) -> None:
    lines = [
        clf(T0, status=200),
        clf(T0, status=503, method="post"),
        clf(T0 + timedelta(minutes=2), status=200),
    ]
    lines += [clf(T0 + timedelta(minutes=120), status=404)]
    series = ingest_logs(
        write(tmp_path / "a.log", lines), freq="1min", by=["status", "method"]
    ).series
    assert sorted(series["unique_id"].unique()) == [
        "status=2xx,method=GET",
        "status=4xx,method=GET",
        "status=5xx,method=POST",
    ]
    wide = series.pivot(index="ds", columns="unique_id", values="y")
    assert wide.iloc[0].tolist() == [1, 0, 1]
    assert wide.iloc[1].tolist() == [0, 0, 0]  # a quiet minute for everyone, but short
    assert wide.iloc[60].isna().all()  # inside the long silence every series is missing


def test_split_by_path_prefix(tmp_path: Path) -> None:
    lines = [clf(T0, path=p) for p in ("/api/pension/status?x=1", "/api/tax", "/static/a.css", "/")]
    series = ingest_logs(write(tmp_path / "a.log", lines), by=["path"], path_depth=1).series
    assert dict(zip(series["unique_id"], series["y"], strict=True)) == {
        "path=/": 1,
        "path=/api": 2,
        "path=/static": 1,
    }
    deeper = ingest_logs(tmp_path / "a.log", by=["path"], path_depth=2).series
    assert "path=/api/pension" in set(deeper["unique_id"])


@pytest.mark.parametrize("opener,suffix", [(gzip.open, ".gz"), (bz2.open, ".bz2")])
def test_compressed_and_multiple_files(tmp_path: Path, opener, suffix: str) -> None:
    first = [clf(T0 + timedelta(seconds=s)) for s in range(0, 120, 2)]
    second = [clf(T0 + timedelta(seconds=s)) for s in range(1, 120, 2)]
    with opener(tmp_path / f"a.log{suffix}", "wt") as handle:
        handle.writelines(first)
    write(tmp_path / "b.log", second)
    result = ingest_logs([tmp_path / f"a.log{suffix}", tmp_path / "b.log"])
    assert result.series["y"].tolist() == [60, 60]
    assert result.report.lines == 120


def test_chunk_boundaries_do_not_change_results(tmp_path: Path) -> None:
    lines = [clf(T0 + timedelta(seconds=7 * i)) for i in range(500)] + ["junk line\n", "\n"]
    log = write(tmp_path / "a.log", lines)
    big = ingest_logs(log, chunk_bytes=1 << 20)
    tiny = ingest_logs(log, chunk_bytes=97, workers=3)
    pd.testing.assert_frame_equal(big.series, tiny.series)
    assert big.report.malformed == tiny.report.malformed
    assert tiny.report.examples["unknown_format"] == [f"{log}:501: 'junk line'"]


def test_since_until_count_out_of_range(tmp_path: Path) -> None:
    lines = [clf(T0 + timedelta(minutes=m)) for m in range(10)]
    result = ingest_logs(
        write(tmp_path / "a.log", lines),
        since=pd.Timestamp("2026-11-20 01:02"),
        until=pd.Timestamp("2026-11-20 01:05"),
    )
    assert result.series["y"].sum() == 3
    assert result.report.malformed["out_of_range"] == 7
    assert result.report.parsed + result.report.malformed_total == result.report.lines == 10


def test_wrong_dates_far_apart_get_a_clear_error(tmp_path: Path) -> None:
    lines = [clf(T0), clf(T0.replace(year=1970))]
    with pytest.raises(IngestError, match="--since/--until"):
        ingest_logs(write(tmp_path / "a.log", lines), freq="1s")


@pytest.mark.parametrize("freq", ["7s", "0s", "1.5s", "7min", "banana"])
def test_bad_freq(freq: str) -> None:
    with pytest.raises(IngestError, match="freq"):
        parse_freq(freq)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no such file"):
        ingest_logs(tmp_path / "nope.log")
    (tmp_path / "empty.log").write_text("")
    with pytest.raises(IngestError, match="empty"):
        ingest_logs(tmp_path / "empty.log")


def test_load_counts_fills_quiet_minutes_and_masks_outages(tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    rows = [
        "minute,count",
        "1995-07-01 00:00:00,5",
        "1995-07-01 00:02:00,3",
        "1995-07-01 02:00:00,4",
    ]
    csv.write_text("\n".join(rows) + "\n")
    series = load_counts(csv, tz="-04:00", freq="1min", gap="30min")
    assert series["ds"].iloc[0] == pd.Timestamp("1995-07-01 04:00")
    assert series["y"].iloc[:3].tolist() == [5, 0, 3]
    assert series["y"].iloc[3:-1].isna().all() and series["y"].iloc[-1] == 4


def test_load_counts_rejects_unreadable_rows(tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("minute,count\n1995-07-01 00:00:00,5\nnot a time,x\n")
    with pytest.raises(IngestError, match="1 rows with an unreadable"):
        load_counts(csv)


def test_nasa_per_minute_counts_total_and_outage() -> None:
    series = load_counts(shared_file("nasa-http/per-minute/requestdata-20240626.csv"), tz="-04:00")
    assert series["y"].sum() == 3_461_612  # the official total of the trace
    y = series.set_index("ds")["y"]
    assert y.loc["1995-08-02 00:00":"1995-08-03 06:00"].isna().all()  # Hurricane Erin (UTC)
    assert y.loc["1995-08-04"].notna().all()


def test_load_counts_infers_or_checks_the_interval(tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("minute,count\n2026-10-12 00:00:00,5\n2026-10-12 00:05:00,3\n")
    assert load_counts(csv)["y"].tolist() == [5, 3]
    odd = tmp_path / "odd.csv"
    odd.write_text("minute,count\n2026-10-12 00:00:00,5\n2026-10-12 00:07:00,3\n")
    with pytest.raises(IngestError, match="mostly 7min apart.*pass --freq"):
        load_counts(odd)
    one = tmp_path / "one.csv"
    one.write_text("minute,count\n2026-10-12 00:00:00,5\n")
    with pytest.raises(IngestError, match="one timestamp.*pass --freq"):
        load_counts(one)
    assert load_counts(one, freq="1min")["y"].tolist() == [5]
    with pytest.raises(IngestError, match="divides a day"):
        load_counts(csv, freq="0s")


def test_load_counts_explicit_zero_rows_are_zero_not_missing(tmp_path: Path) -> None:
    stamps = pd.date_range("2026-10-12", periods=180, freq="1min").strftime("%Y-%m-%d %H:%M:%S")
    csv = tmp_path / "c.csv"
    pd.DataFrame({"t": stamps, "count": [5] * 60 + [0] * 60 + [5] * 60}).to_csv(csv, index=False)
    y = load_counts(csv, gap="30min")["y"]
    assert not y.isna().any() and (y == 0).sum() == 60 and y.sum() == 600


def test_load_counts_in_local_time_across_the_fall_back(tmp_path: Path) -> None:
    utc = pd.date_range("2026-11-01 03:00", "2026-11-01 09:59", freq="1min", tz="UTC")
    local = utc.tz_convert("America/New_York").strftime("%Y-%m-%d %H:%M:%S")
    csv = tmp_path / "c.csv"
    pd.DataFrame({"t": local, "count": 10}).to_csv(csv, index=False)  # 01:xx twice, in order
    series = load_counts(csv, tz="America/New_York")
    assert series["ds"].tolist() == list(utc.tz_localize(None))
    assert series["y"].sum() == 4200 and not series["y"].isna().any()


def test_load_counts_refuses_a_repeated_hour_it_cannot_place(tmp_path: Path) -> None:
    # Each local minute once: the 60 minutes of 01:xx could be either pass.
    local = pd.date_range("2026-11-01 00:00", "2026-11-01 02:59", freq="1min")
    csv = tmp_path / "c.csv"
    pd.DataFrame({"t": local.strftime("%Y-%m-%d %H:%M:%S"), "count": 10}).to_csv(csv, index=False)
    with pytest.raises(IngestError, match="60 rows fall in the hour repeated"):
        load_counts(csv, tz="America/New_York")


def test_load_counts_with_utc_offsets_across_a_dst_change(tmp_path: Path) -> None:
    utc = pd.date_range("2026-11-01 04:00", "2026-11-01 07:59", freq="1min", tz="UTC")
    stamps = [t.isoformat() for t in utc.tz_convert("America/New_York")]  # -04:00, then -05:00
    csv = tmp_path / "c.csv"
    pd.DataFrame({"t": stamps, "count": 10}).to_csv(csv, index=False)
    series = load_counts(csv, tz="Asia/Tokyo")  # --tz is for stamps without an offset
    assert series["ds"].tolist() == list(utc.tz_localize(None))
    assert series["y"].sum() == 2400
    csv.write_text(f"t,count\n{stamps[0]},1\n{stamps[-1]},1\n2026-11-01 03:00:00,1\n")
    with pytest.raises(IngestError, match="1 timestamps carry no UTC offset"):
        load_counts(csv)


def test_gap_needs_a_unit(tmp_path: Path) -> None:
    log = write(tmp_path / "a.log", [clf(T0 + timedelta(minutes=m)) for m in (0, 2)])
    with pytest.raises(IngestError, match="no unit; give one, e.g. 10min"):
        ingest_logs(log, gap="10")
    with pytest.raises(IngestError, match="invalid --gap"):
        ingest_logs(log, gap="soon")
    assert ingest_logs(log, gap="0").series["y"].tolist() == [1, 0, 1]
    assert ingest_logs(log, gap="1min").series["y"].isna().sum() == 1


PATTERN_DST = pattern_format(
    r"^(?P<time>\S+ \S+) (?P<method>\S+) (?P<path>\S+)$",
    time_format="%Y-%m-%d %H:%M:%S",
    tz="America/New_York",
)


def local_log(path: Path, utc: pd.DatetimeIndex, per_minute: int = 10) -> Path:
    """A log in New York wall-clock time without offsets, in time order."""
    stamps = utc.tz_convert("America/New_York").strftime("%Y-%m-%d %H:%M:%S")
    return write(path, [f"{t} GET /api\n" for t in stamps for _ in range(per_minute)])


def test_pattern_log_places_the_repeated_hour_from_line_order(tmp_path: Path) -> None:
    utc = pd.date_range("2026-11-01 04:00", "2026-11-01 07:59", freq="1min", tz="UTC")
    log = local_log(tmp_path / "a.log", utc)
    for chunk_bytes in (1 << 20, 997):  # one chunk, or the hour spread over many
        result = ingest_logs(log, log_format=PATTERN_DST, chunk_bytes=chunk_bytes, workers=2)
        assert result.series["ds"].tolist() == list(utc.tz_localize(None))
        assert result.series["y"].tolist() == [10] * 240  # no hour doubled, none missing
        assert result.report.parsed == result.report.lines == 2400
    windowed = ingest_logs(
        log, log_format=PATTERN_DST, chunk_bytes=997, since=pd.Timestamp("2026-11-01 05:30")
    )
    assert windowed.report.malformed["out_of_range"] == 900  # 04:00-05:29 UTC
    assert windowed.report.parsed == windowed.series["y"].sum() == 1500


def test_pattern_log_repeated_hour_seen_once_is_malformed(tmp_path: Path) -> None:
    # 00:00-02:59 local, each minute once: whether 01:xx is summer or standard time is unknown.
    local = pd.date_range("2026-11-01 00:00", "2026-11-01 02:59", freq="1min")
    log = write(tmp_path / "a.log", [f"{t:%Y-%m-%d %H:%M:%S} GET /api\n" for t in local])
    result = ingest_logs(log, log_format=PATTERN_DST, chunk_bytes=997, gap=None)
    report = result.report
    assert report.malformed["ambiguous_time"] == 60 and report.parsed == 120
    assert report.examples["ambiguous_time"][0] == f"{log}:61: '2026-11-01 01:00:00 GET /api'"
    assert result.series["y"].sum() == 120
