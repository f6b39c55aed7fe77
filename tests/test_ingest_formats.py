"""Parsing of every supported log format, line by line: what counts and why lines fail."""

from __future__ import annotations

import polars as pl
import pytest

from forecaster.logs import (
    ClfFormat,
    JsonFormat,
    LogFormatError,
    builtin_format,
    detect_format,
    pattern_format,
)

CLF_LINE = 'in24.inetnebr.com - - [01/Aug/1995:00:00:01 -0400] "GET /shuttle/missions/sts-68/news/sts-68-mcc-05.txt HTTP/1.0" 200 1839'
COMBINED_LINE = (
    '10.1.2.3 - - [20/Nov/2026:09:41:07 +0800] "POST /api/pension/status?id=7 HTTP/1.1" 503 120 '
    '"https://portal.example.gov/" "Mozilla/5.0 (X11; Linux x86_64)"'
)


def parse(fmt, lines, keys=()):
    return fmt.parse(pl.Series("line", lines, dtype=pl.String), keys)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (CLF_LINE, None),
        (CLF_LINE + "\n", None),
        (CLF_LINE + "\r\n", None),
        ('h - - [01/Aug/1995:00:00:01 -0400] "GET /" 404 -', None),  # HTTP/0.9 request, no size
        ("", "empty"),
        ("   \n", "empty"),
        ("\x00\x01\x02 garbage", "binary"),
        ("caf\ufffd \ufffd", "binary"),
        ('in24.inetnebr.com - - [01/Aug/1995:00:00:01 -0400] "GET /shut', "truncated"),
        ("in24.inetnebr.com - - [01/Aug/19", "truncated"),
        ("hello world", "unknown_format"),
        ('{"time": "2026-01-01T00:00:00Z"}', "unknown_format"),
        ('h - - [32/Aug/1995:00:00:01 -0400] "GET / HTTP/1.0" 200 5', "bad_timestamp"),
        ('h - - [01/Foo/1995:00:00:01 -0400] "GET / HTTP/1.0" 200 5', "bad_timestamp"),
        ('h - - [01/Aug/1995:25:00:01 -0400] "GET / HTTP/1.0" 200 5', "bad_timestamp"),
    ],
)
def test_clf_classifies_each_line(line: str, reason: str | None) -> None:
    out = parse(ClfFormat(), [line])
    assert out["reason"].to_list() == [reason]
    if reason is None:
        assert out["ts"].is_not_null().item()


def test_clf_honours_each_lines_utc_offset() -> None:
    lines = [
        'a - - [01/Aug/1995:00:00:01 -0400] "GET / HTTP/1.0" 200 5',
        'b - - [01/Aug/1995:12:00:01 +0800] "GET / HTTP/1.0" 200 5',
        'c - - [01/Aug/1995:04:00:01 +0000] "GET / HTTP/1.0" 200 5',
    ]
    out = parse(ClfFormat(), lines)
    assert out["ts"].dt.strftime("%Y-%m-%d %H:%M:%S").to_list() == ["1995-08-01 04:00:01"] * 3


def test_clf_extracts_key_fields() -> None:
    out = parse(ClfFormat(), [CLF_LINE, COMBINED_LINE], ["method", "path", "status"])
    assert out.select("method", "path", "status").rows() == [
        ("GET", "/shuttle/missions/sts-68/news/sts-68-mcc-05.txt", "200"),
        ("POST", "/api/pension/status?id=7", "503"),
    ]


def test_combined_requires_referer_and_agent() -> None:
    out = parse(builtin_format("combined"), [COMBINED_LINE, CLF_LINE])
    assert out["reason"].to_list() == [None, "truncated"]


def test_clf_has_no_vhost() -> None:
    with pytest.raises(LogFormatError, match="no vhost field"):
        parse(ClfFormat(), [CLF_LINE], ["vhost"])


@pytest.mark.parametrize(
    ("time_key", "value", "expected_utc"),
    [
        ("time_iso8601", "2026-11-20T09:41:07+08:00", "2026-11-20 01:41:07"),
        ("@timestamp", "2026-11-20T01:41:07.250Z", "2026-11-20 01:41:07"),
        ("time_local", "20/Nov/2026:09:41:07 +0800", "2026-11-20 01:41:07"),
        ("msec", "1795138867.250", "2026-11-20 01:41:07"),
    ],
)
def test_json_lines_time_keys(time_key: str, value: str, expected_utc: str) -> None:
    line = (
        f'{{"{time_key}": "{value}", "host": "Pension.Example.gov", "request": "GET /a/b HTTP/1.1", '
        f'"status": "200"}}'
    )
    fmt = builtin_format("json", [line])
    assert isinstance(fmt, JsonFormat) and fmt.time_key == time_key
    out = parse(fmt, [line], ["vhost", "method", "path", "status"])
    assert out["reason"].to_list() == [None]
    assert out["ts"].dt.strftime("%Y-%m-%d %H:%M:%S").item() == expected_utc
    assert out.select("vhost", "method", "path", "status").row(0) == (
        "Pension.Example.gov",
        "GET",
        "/a/b",
        "200",
    )


def test_json_malformed_lines() -> None:
    fmt = JsonFormat(time_key="time_iso8601")
    out = parse(
        fmt,
        [
            '{"time_iso8601": "2026-11-20T09:41:07+08:00"',
            '{"time_iso8601": "yesterday"}',
            '{"status": 200}',
            "plain text",
        ],
    )
    assert out["reason"].to_list() == [
        "truncated",
        "bad_timestamp",
        "unknown_format",
        "unknown_format",
    ]


def test_pattern_format_with_zone_and_groups() -> None:
    fmt = pattern_format(
        r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?P<vhost>\S+) (?P<method>\S+) (?P<path>\S+) (?P<status>\d+)$",
        time_format="%Y-%m-%d %H:%M:%S",
        tz="Asia/Shanghai",
    )
    out = parse(
        fmt, ["2026-11-20 09:41:07 tax.gov GET /einvoice 200\n", "nonsense"], ["vhost", "status"]
    )
    assert out["reason"].to_list() == [None, "unknown_format"]
    assert out["ts"].dt.strftime("%H:%M:%S").item(0) == "01:41:07"
    assert out.select("vhost", "status").row(0) == ("tax.gov", "200")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(?P<time>[", "invalid --pattern"),
        (r"^(?P<when>\S+)", "named group 'time'"),
    ],
)
def test_pattern_format_rejects_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(LogFormatError, match=message):
        pattern_format(pattern)


def test_detect_format() -> None:
    assert detect_format([CLF_LINE] * 3).name == "clf"
    assert detect_format([COMBINED_LINE] * 3 + ["junk"]).name == "combined"
    assert detect_format(['{"time_iso8601": "2026-11-20T09:41:07+08:00"}']).name == "json"
    with pytest.raises(LogFormatError, match="not a recognised access-log format"):
        detect_format(['"V1","V2"', "H1,605,586"])


def test_pattern_format_marks_local_times_in_a_repeated_hour() -> None:
    fmt = pattern_format(
        r"^(?P<time>\S+ \S+) (?P<path>\S+)$",
        time_format="%Y-%m-%d %H:%M:%S",
        tz="America/New_York",
    )
    lines = [
        "2026-11-01 00:59:59 /a",  # summer time
        "2026-11-01 01:30:00 /a",  # happens twice: first at 05:30 UTC, then at 06:30 UTC
        "2026-11-01 02:00:00 /a",  # standard time
        "2026-03-08 02:30:00 /a",  # never happens: clocks jump from 02:00 to 03:00
    ]
    out = parse(fmt, lines)
    assert out["reason"].to_list() == [None, "ambiguous_time", None, "bad_timestamp"]
    assert out["ts"].dt.strftime("%H:%M:%S").to_list() == ["04:59:59", None, "07:00:00", None]
    assert out["local"].dt.strftime("%H:%M").to_list() == [None, "01:30", None, None]
