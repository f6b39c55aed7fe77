"""Edge inputs a demanding user meets: count files as metric exports write them, logs from
stdin, requests without a protocol, generated logs compressed, and bad options."""

from __future__ import annotations

import bz2
import gzip
import io
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

from controller.cli import app
from forecaster.frames import read_series, series_freq
from forecaster.generate import TrafficProfile, generate_traffic, write_access_log
from forecaster.ingest import (
    IngestError,
    ingest_logs,
    iter_line_chunks,
    lines_column,
    load_counts,
    parse_freq,
)
from forecaster.logs import ClfFormat, builtin_format, pattern_format

runner = CliRunner()


def test_count_file_with_unix_time_in_seconds_or_milliseconds(tmp_path: Path) -> None:
    seconds = tmp_path / "s.csv"
    seconds.write_text("timestamp,value\n1728700800,5\n1728700860.0,7\n1728700920,2\n")
    series = load_counts(seconds)
    assert series["ds"].tolist() == list(pd.date_range("2024-10-12 02:40", periods=3, freq="1min"))
    assert series["y"].tolist() == [5, 7, 2]
    millis = tmp_path / "ms.csv"
    millis.write_text("timestamp,value\n1728700800000,5\n1728700860000,7\n")
    assert load_counts(millis)["ds"].iloc[0] == pd.Timestamp("2024-10-12 02:40")


def test_count_file_without_a_header_keeps_its_first_row(tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("2026-10-12 00:00:00,5\n2026-10-12 00:01:00,7\n2026-10-12 00:02:00,9\n")
    series = load_counts(csv)
    assert series["y"].tolist() == [5, 7, 9]
    assert series["ds"].iloc[0] == pd.Timestamp("2026-10-12 00:00")


def test_count_file_fractional_counts_are_kept_negative_refused(tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("t,increase\n2026-10-12 00:00:00,2.6\n2026-10-12 00:01:00,0.4\n")
    assert load_counts(csv)["y"].tolist() == pytest.approx([2.6, 0.4])
    csv.write_text("t,count\n2026-10-12 00:00:00,-5\n2026-10-12 00:01:00,7\n")
    with pytest.raises(IngestError, match="1 rows with an unreadable timestamp or a count"):
        load_counts(csv)


@pytest.mark.parametrize("suffix", [".gz", ".bz2"])
def test_generated_compressed_log_same_seed_same_bytes_and_ingests(
    tmp_path: Path, suffix: str
) -> None:
    traffic = generate_traffic(TrafficProfile(peak_rps=0.05), date(2026, 11, 16), 1, seed=3)
    first, second = tmp_path / f"a.log{suffix}", tmp_path / "other" / f"b.log{suffix}"
    second.parent.mkdir()
    written = write_access_log(traffic, first, seed=3)  # another name: it is not in the bytes
    write_access_log(traffic, second, seed=3)
    assert first.read_bytes() == second.read_bytes()
    result = ingest_logs(first, gap=None)
    assert result.report.parsed == written == traffic.requests


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--service", "txa"], "--service 'txa' is not one of pension, tax, card"),
        (["--tz", "Mars/Olympus"], "--tz 'Mars/Olympus' is not a time zone"),
        (["--seed", "-1"], "--seed must be 0 or more"),
        (["--peak-rps", "nan"], "--peak-rps must be a positive number"),
        (["--peak-rps", "inf"], "--peak-rps must be a positive number"),
        (["--days", "3660"], "--days must be between 1 and 400"),  # 20 GB and more
    ],
)
def test_generate_refuses_bad_options_in_one_line(
    tmp_path: Path, option: list[str], message: str
) -> None:
    log = tmp_path / "a.log"
    result = runner.invoke(app, ["generate", "-o", str(log), "--days", "1", *option])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert not log.exists()


def test_requests_without_protocol_or_path_get_clean_labels(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(
        'h - - [01/Aug/1995:00:00:01 -0400] "GET /ksc.html" 200 10\n'  # as in NASA's 1995 logs
        'h - - [01/Aug/1995:00:00:02 -0400] "GET /ksc.html HTTP/1.0" 200 10\n'
        'h - - [01/Aug/1995:00:00:03 -0400] "GET /" 200 10\n'
        'h - - [01/Aug/1995:00:00:04 -0400] "-" 408 -\n'  # a client that sent nothing
    )
    paths = ingest_logs(log, by=["path"], gap=None).series.groupby("unique_id")["y"].sum()
    assert paths.to_dict() == {"path=/": 2, "path=/ksc.html": 2}
    methods = ingest_logs(log, by=["method"], gap=None).series.groupby("unique_id")["y"].sum()
    assert methods.to_dict() == {"method=-": 1, "method=GET": 3}


def test_json_from_stdin_finds_its_time_key() -> None:
    lines = "".join(
        json.dumps({"@timestamp": f"2026-10-12T10:00:0{s}Z", "status": 200}) + "\n"
        for s in range(5)
    )
    for args in (["--format", "json"], []):
        result = runner.invoke(app, ["ingest", "-", *args], input=lines)
        assert result.exit_code == 0, result.output
        assert "format json: 5 parsed + 0 malformed" in result.stderr
        assert pd.read_csv(io.StringIO(result.stdout))["y"].tolist() == [5]


def test_json_format_without_a_sample_uses_the_first_files_time_key(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(json.dumps({"msec": "1791453600.5"}) + "\n")
    second.write_text(json.dumps({"msec": "1791453601", "time_iso8601": "garbage"}) + "\n")
    result = ingest_logs([first, second], log_format=builtin_format("json"), gap=None)
    assert result.report.parsed == 2 and result.series["y"].tolist() == [2]


CLF_LINES = "".join(
    f'10.0.0.1 - - [20/Nov/2026:09:41:0{s} +0800] "GET /a HTTP/1.1" 200 512\n' for s in range(6)
)


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, bytes])
def test_compression_is_told_by_content_not_name(
    tmp_path: Path, compress: Callable[[bytes], bytes]
) -> None:
    data = compress(CLF_LINES.encode())
    rotated = tmp_path / "access.log.1.gz"  # a plain file named .gz is plain text too
    rotated.write_bytes(data)
    assert ingest_logs(rotated).series["y"].tolist() == [6]
    piped = runner.invoke(app, ["ingest", "-"], input=data)  # cat access.log.gz | ...
    assert piped.exit_code == 0, piped.output
    assert "6 parsed + 0 malformed" in piped.stderr


def test_counts_format_honours_id_since_and_until(tmp_path: Path) -> None:
    csv = tmp_path / "requestdata.csv"
    stamps = pd.date_range("2026-10-12", periods=10, freq="1min").strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"t": stamps, "count": range(10)}).to_csv(csv, index=False)
    args = ["ingest", str(csv), "--format", "counts", "--id", "nasa"]
    window = ["--since", "2026-10-12 00:02", "--until", "2026-10-12T00:05:00+00:00"]
    result = runner.invoke(app, [*args, *window])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(io.StringIO(result.stdout))
    assert rows["unique_id"].unique().tolist() == ["nasa"]
    assert rows["ds"].tolist() == [
        "2026-10-12 00:02:00",
        "2026-10-12 00:03:00",
        "2026-10-12 00:04:00",
    ]
    assert rows["y"].tolist() == [2, 3, 4]
    other = tmp_path / "other.csv"
    other.write_bytes(csv.read_bytes())
    two = runner.invoke(app, [*args, str(other)])
    assert two.exit_code == 2 and "--id names one series" in two.stderr


@pytest.mark.parametrize(
    ("record", "expected_utc"),
    [
        ({"time": 1531171074631, "msg": "request completed"}, "2018-07-09 21:17:54.631"),  # pino
        ({"timestamp": 1728700800}, "2024-10-12 02:40:00"),
        ({"timestamp": "1728700800.5"}, "2024-10-12 02:40:00.5"),
        ({"msec": "1728700800.123"}, "2024-10-12 02:40:00.123"),  # nginx, as before
    ],
)
def test_json_time_as_a_number_is_unix_time(
    tmp_path: Path, record: dict, expected_utc: str
) -> None:
    log = tmp_path / "app.jsonl"
    log.write_text(json.dumps(record) + "\n")
    result = ingest_logs(log, freq="1s", log_format=builtin_format("json"))
    assert result.report.parsed == 1
    assert result.series["ds"].tolist() == [pd.Timestamp(expected_utc).floor("1s")]


def test_lines_left_out_by_since_are_not_bad_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(CLF_LINES + "garbage\n")  # 1 bad line in 7: 14 %
    window = ["--since", "2026-11-20T01:41:04"]  # keeps 2 of the 6 good lines
    kept = runner.invoke(app, ["ingest", str(log), *window, "--max-bad-fraction", "0.2"])
    assert kept.exit_code == 0, kept.output
    assert "out_of_range: 4" in kept.stderr
    assert pd.read_csv(io.StringIO(kept.stdout))["y"].tolist() == [2]
    strict = runner.invoke(app, ["ingest", str(log), *window, "--max-bad-fraction", "0.1"])
    assert strict.exit_code == 3
    assert "14.3% of lines are malformed (out_of_range ones aside)" in strict.stderr


@pytest.mark.parametrize(
    ("tz", "expected_utc"),
    [("+05:30", "04:30"), ("-03:30", "13:30"), ("-04:00", "14:00"), ("+0800", "02:00")],
)
def test_pattern_local_times_at_a_fixed_offset(tmp_path: Path, tz: str, expected_utc: str) -> None:
    log = tmp_path / "odd.log"
    log.write_text("2026-10-12 10:00:00 /a\n2026-10-12 10:00:30 /b\n")
    fmt = pattern_format(r"^(?P<time>\S+ \S+) (?P<path>\S+)", "%Y-%m-%d %H:%M:%S", tz=tz)
    series = ingest_logs(log, log_format=fmt).series
    assert series["ds"].dt.strftime("%H:%M").tolist() == [expected_utc]
    assert series["y"].tolist() == [2]


@pytest.mark.parametrize("option", ["-o", "--report"])
def test_ingest_into_a_missing_directory_is_one_line(tmp_path: Path, option: str) -> None:
    log = tmp_path / "a.log"
    log.write_text(CLF_LINES)
    target = tmp_path / "nowhere" / ("out.csv" if option == "-o" else "r.json")
    result = runner.invoke(app, ["ingest", str(log), option, str(target)])
    assert result.exit_code == 2
    assert f"{target.parent}: no such directory" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_ingest_output_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(CLF_LINES)
    target = tmp_path / "taken.csv"
    target.mkdir()  # a directory where the file should go
    result = runner.invoke(app, ["ingest", str(log), "-o", str(target)])
    assert result.exit_code == 2 and f"{target}: cannot write" in result.stderr


@pytest.mark.parametrize("before", ["", "\n\n"])
def test_format_is_told_by_the_first_file_with_records(tmp_path: Path, before: str) -> None:
    rotated = tmp_path / "access.log"
    rotated.write_text(before)  # emptied by logrotate, or blank lines only
    older = tmp_path / "access.log.1"
    older.write_text("".join(json.dumps({"msec": f"1791453600.{n}"}) + "\n" for n in range(5)))
    result = ingest_logs([rotated, older], gap=None)
    assert result.report.format == "json"
    assert result.report.parsed == 5 and result.report.malformed["empty"] == len(before)
    with pytest.raises(IngestError, match="nothing to ingest"):
        ingest_logs([rotated], gap=None)


def test_bad_fraction_error_mentions_out_of_range_only_when_there_are_some(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(CLF_LINES + "garbage\n")
    result = runner.invoke(app, ["ingest", str(log), "--max-bad-fraction", "0.1"])
    assert result.exit_code == 3 and "14.3% of lines are malformed, more than" in result.stderr


def test_freq_without_a_unit_says_so() -> None:
    with pytest.raises(IngestError, match="--freq '60' has no unit; give one, e.g. 60s"):
        parse_freq("60")


def test_garbage_that_starts_like_gzip_is_garbage_not_a_bad_gzip(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"\x1f\x8b" + CLF_LINES.encode())  # two stray bytes, then records
    report = ingest_logs(log).report
    assert report.malformed["binary"] == 1 and report.parsed == 5


def test_an_over_long_line_is_one_line_cut_to_its_head_whatever_the_chunks() -> None:
    data = b"short\n" + b"x" * 50 + b"\n" + "\u00e9".encode() * 30 + b"\ny\n" + b"z" * 40
    expected = ["short", "x" * 21, "\u00e9" * 10, "y", "z" * 21]
    for chunk in (1, 7, 16, 64, 1000):
        parts = [
            lines_column(block, max_line_bytes=21)
            for block in iter_line_chunks(io.BytesIO(data), chunk, max_line_bytes=21)
        ]
        assert [line.rstrip("\n") for part in parts for line in part] == expected


def test_a_crash_left_run_of_nul_bytes_is_one_binary_line(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(CLF_LINES.encode() + b"\0" * 3_000_000 + b"\n" + CLF_LINES.encode())
    report = ingest_logs(log, chunk_bytes=65536).report
    assert report.lines == 13 and report.parsed == 12 and report.malformed["binary"] == 1


def test_a_byte_order_mark_does_not_spoil_the_first_record(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(
        b"\xef\xbb\xbf"
        + b"".join(json.dumps({"msec": f"1791453600.{n}"}).encode() + b"\n" for n in range(3))
    )
    report = ingest_logs(log).report
    assert report.parsed == 3 and report.malformed_total == 0


@pytest.mark.parametrize(
    ("counts_out", "freq", "message"),
    [
        ("t.txt", "1min", "--counts-out must end in .csv or .parquet"),
        ("nowhere/t.csv", "1min", "nowhere: no such directory"),
        ("t.csv", "7min", "--freq '7min' must be a whole number of seconds that divides a day"),
    ],
)
def test_generate_checks_counts_out_before_generating(
    tmp_path: Path, counts_out: str, freq: str, message: str
) -> None:
    log = tmp_path / "a.log"
    args = ["generate", "-o", str(log), "--days", "1", "--counts-out", str(tmp_path / counts_out)]
    result = runner.invoke(app, [*args, "--freq", freq])
    assert result.exit_code == 2 and message in result.stderr
    assert not log.exists()  # refused before any work


def test_a_window_that_keeps_no_line_is_an_error_not_an_empty_series(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(CLF_LINES)
    result = runner.invoke(app, ["ingest", str(log), "--since", "2027-01-01"])
    assert result.exit_code == 2
    assert "no line between --since and --until: 6 well-formed lines fall outside" in result.stderr
    assert result.stdout == ""


def test_a_split_asked_twice_is_one_split(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(CLF_LINES)
    result = runner.invoke(app, ["ingest", str(log), "--by", "status,method", "--by", "status"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(io.StringIO(result.stdout))
    assert rows["unique_id"].tolist() == ["status=2xx,method=GET"] and rows["y"].tolist() == [6]


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (["--since", "garbage"], "--since 'garbage' is not a time like 2026-10-12"),
        (["--until", "nat"], "--until 'nat' is not a time"),
        (["--since", "2026-11-20", "--until", "2026-11-19T21:00-02:00"], "is not before --until"),
    ],
)
def test_a_bad_window_is_named(tmp_path: Path, window: list[str], message: str) -> None:
    log = tmp_path / "a.log"
    log.write_text(CLF_LINES)
    result = runner.invoke(app, ["ingest", str(log), *window])
    assert result.exit_code == 2 and message in result.stderr


def test_counts_from_stdin_is_refused_as_such() -> None:
    result = runner.invoke(app, ["ingest", "-", "--format", "counts"], input="t,c\n")
    assert result.exit_code == 2
    assert "--format counts reads count files, not standard input" in result.stderr


def test_count_file_is_not_spread_over_a_finer_freq(tmp_path: Path) -> None:
    regular = tmp_path / "isp.csv"
    stamps = pd.date_range("2026-10-12", periods=12, freq="5min").strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"t": stamps, "bits": 100}).to_csv(regular, index=False)
    with pytest.raises(IngestError, match="multiple of 5min apart.*use --freq 5min or longer"):
        load_counts(regular, freq="1min")
    assert load_counts(regular, freq="1h")["y"].tolist() == [1200]
    # A per-minute file that leaves out quiet minutes is per-minute all the same.
    sparse = tmp_path / "sparse.csv"
    minutes = pd.Timestamp("2026-10-12") + pd.to_timedelta(
        [0, 2, 4, 5, 9, 11, 13, 16, 18, 20, 23], "min"
    )
    pd.DataFrame({"t": minutes.strftime("%Y-%m-%d %H:%M:%S"), "c": 1}).to_csv(sparse, index=False)
    assert load_counts(sparse, freq="1min")["y"].sum() == 11


def test_a_host_in_brackets_does_not_hide_the_time() -> None:
    line = '[2001:db8::1] - - [01/Aug/1995:00:00:01 -0400] "GET /a HTTP/1.0" 200 1\n'
    out = ClfFormat().parse(pl.Series("line", [line]), ["path"])
    assert out["reason"].to_list() == [None] and out["path"].to_list() == ["/a"]
    assert out["ts"].dt.replace_time_zone(None).to_list() == [pd.Timestamp("1995-08-01 04:00:01")]


def test_series_frame_with_unix_time_stamps(tmp_path: Path) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("unique_id,ds,y\na,1728700800,1\na,1728700860,2\na,1728700920,3\n")
    frame = read_series(csv)
    assert frame["ds"].iloc[0] == pd.Timestamp("2024-10-12 02:40")
    assert series_freq(frame) == pd.Timedelta("1min")


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress])
@pytest.mark.parametrize("chunk_bytes", [8 * 1024 * 1024, 64 * 1024])
def test_a_compressed_log_cut_short_says_how_many_lines_were_read(
    tmp_path: Path, compress: Callable[[bytes], bytes], chunk_bytes: int
) -> None:
    """A truncated ``.gz`` said "cannot read past line 0" with tens of thousands of lines
    readable: the failed read dropped what it had decompressed, and the error, raised
    through the read-ahead pipeline, dropped the chunks still being parsed."""
    lines = [
        f'h - - [12/Oct/2026:08:{i // 60 % 60:02d}:{i % 60:02d} +0000] "GET /{i} HTTP/1.1" 200 5\n'
        for i in range(60_000)
    ]
    packed = compress("".join(lines).encode())
    log = tmp_path / "access.log.gz"
    log.write_bytes(packed[: len(packed) * 2 // 3])
    readable = 0
    with gzip.open(log) if compress is gzip.compress else bz2.open(log) as stream:
        try:
            for _ in stream:
                readable += 1
        except EOFError:
            pass
    assert readable > 10_000
    with pytest.raises(IngestError) as caught:
        ingest_logs(log, chunk_bytes=chunk_bytes)
    assert str(caught.value).startswith(f"{log}: cannot read past line {readable:,}: ")


def test_since_cutting_a_count_file_to_one_row_keeps_its_interval(tmp_path: Path) -> None:
    """--since was applied before the interval was inferred: a per-minute file cut to its
    last row said "one timestamp only, so no interval to infer; pass --freq"."""
    counts = tmp_path / "counts.csv"
    counts.write_text(
        "timestamp,count\n2026-10-12 08:00,4\n2026-10-12 08:01,5\n2026-10-12 08:02,6\n"
    )
    series = load_counts(counts, since=pd.Timestamp("2026-10-12 08:02"))
    assert series.to_dict("list") == {
        "unique_id": ["counts"],
        "ds": [pd.Timestamp("2026-10-12 08:02")],
        "y": [6.0],
    }
    assert series.attrs["freq"] == "1min"


def test_since_keeps_the_interval_of_the_whole_count_file(tmp_path: Path) -> None:
    """A per-minute file that omits quiet minutes, cut by --since to rows 3 and 5 minutes
    apart, was read as a 3-minute series: 08:05's count landed in 08:03-08:06."""
    counts = tmp_path / "counts.csv"
    rows = ["08:00,4", "08:01,5", "08:02,6", "08:05,1", "08:10,2"]
    counts.write_text("timestamp,count\n" + "".join(f"2026-10-12 {r}\n" for r in rows))
    args = ["ingest", str(counts), "--format", "counts", "--since", "2026-10-12 08:02"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    series = pd.read_csv(io.StringIO(result.stdout), parse_dates=["ds"])
    assert series["ds"].tolist() == list(
        pd.date_range("2026-10-12 08:02", "2026-10-12 08:10", freq="1min")
    )
    assert series["y"].tolist() == [6.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 2.0]
