"""Property tests: no input crashes the parser, and every line is accounted for."""

from __future__ import annotations

import itertools
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.ingest import IngestError, ingest_logs, lines_column
from forecaster.logs import ClfFormat, JsonFormat, PatternFormat

VALID = b'h - - [01/Aug/1995:00:00:01 -0400] "GET / HTTP/1.0" 200 5'


def expected_lines(data: bytes) -> int:
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def ingest_bytes(data: bytes, **options):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.log"
        path.write_bytes(data)
        return ingest_logs(path, **options)


lines_of_bytes = st.lists(
    st.one_of(
        st.binary(max_size=120),
        st.just(VALID),
        st.builds(lambda b: VALID[: len(b)], st.binary(max_size=60)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_crash_and_lines_are_conserved(data: bytes) -> None:
    for fmt in (ClfFormat(), JsonFormat()):
        parsed = fmt.parse(lines_column(data))
        assert parsed.height == expected_lines(data)
        assert parsed["reason"].null_count() + parsed["reason"].is_not_null().sum() == parsed.height


@settings(max_examples=150, deadline=None)
@given(lines_of_bytes, st.booleans())
def test_ingest_report_accounts_for_every_line(lines: list[bytes], trailing_newline: bool) -> None:
    data = b"\n".join(lines) + (b"\n" if trailing_newline and lines else b"")
    text = data.removeprefix(b"\xef\xbb\xbf")  # a leading byte-order mark is not a line's
    try:
        result = ingest_bytes(data, log_format=ClfFormat(), chunk_bytes=64)
    except IngestError as exc:
        if "cannot read" in str(exc):  # starts like gzip or bzip2 (it is read so), is not
            assert data[:3] == b"\x1f\x8b\x08" or data.startswith(b"BZh")
            return
        # no line at all, or blank lines only
        assert (ClfFormat().parse(lines_column(text))["reason"] == "empty").all()
        assert "empty" in str(exc)
        return
    report = result.report
    assert report.lines == expected_lines(text)
    assert report.parsed + report.malformed_total == report.lines
    assert result.series["y"].sum() == report.parsed


base_time = st.datetimes(min_value=datetime(1995, 1, 1), max_value=datetime(2030, 12, 31))
offset = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
seconds_after = st.integers(min_value=0, max_value=3 * 86400)


@settings(max_examples=100, deadline=None)
@given(
    base_time,
    st.lists(st.tuples(seconds_after, offset), min_size=1, max_size=60),
    st.sampled_from(["1s", "1min", "1h"]),
)
def test_counts_match_a_reference_count(base: datetime, records, freq: str) -> None:
    lines = []
    reference: Counter[pd.Timestamp] = Counter()
    for seconds, tz in records:
        instant = (base.replace(microsecond=0) + timedelta(seconds=seconds)).replace(tzinfo=UTC)
        local = instant.astimezone(tz)  # written in its own zone, counted in UTC
        lines.append(f'h - - [{local:%d/%b/%Y:%H:%M:%S %z}] "GET / HTTP/1.0" 200 5\n')
        reference[pd.Timestamp(instant).tz_localize(None).floor(freq)] += 1
    result = ingest_bytes("".join(lines).encode(), freq=freq, gap=None)
    got = result.series[result.series["y"] > 0].set_index("ds")["y"].to_dict()
    assert got == dict(reference)
    assert result.series["y"].sum() == len(records)


# Ten minutes before the first pass of a repeated hour, in UTC, per zone (Lord Howe goes
# back half an hour).
FALL_BACKS = {
    "America/New_York": datetime(2026, 11, 1, 4, 50, tzinfo=UTC),
    "Europe/Berlin": datetime(2026, 10, 24, 23, 50, tzinfo=UTC),
    "Australia/Lord_Howe": datetime(2026, 4, 4, 14, 20, tzinfo=UTC),
}


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(sorted(FALL_BACKS)),
    st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=60),
    st.sampled_from([64, 997, 1 << 20]),
    st.sampled_from(["1min", "1h"]),
)
def test_local_times_across_a_fall_back_are_placed_or_counted(
    zone: str, steps: list[int], chunk_bytes: int, freq: str
) -> None:
    """Lines in time order, written in local time: the repeated hour is placed exactly, or
    (when the order cannot tell, e.g. one pass has no line) counted malformed; never
    doubled, dropped or misplaced."""
    start = FALL_BACKS[zone]
    instants = [pd.Timestamp(start + timedelta(seconds=s)) for s in itertools.accumulate(steps)]
    local = [t.tz_convert(zone).tz_localize(None) for t in instants]
    repeated = [t.tz_localize(zone, ambiguous="NaT") is pd.NaT for t in local]
    lines = "".join(f"{t:%Y-%m-%d %H:%M:%S} GET /\n" for t in local)
    fmt = PatternFormat(pattern=r"^(?P<time>\S+ \S+) ", time_format="%Y-%m-%d %H:%M:%S", tz=zone)
    result = ingest_bytes(
        lines.encode(), log_format=fmt, freq=freq, gap=None, chunk_bytes=chunk_bytes
    )
    got = result.series[result.series["y"] > 0].set_index("ds")["y"].to_dict()
    every = Counter(t.tz_localize(None).floor(freq) for t in instants)
    sure = Counter(
        t.tz_localize(None).floor(freq) for t, r in zip(instants, repeated, strict=True) if not r
    )
    unplaced = result.report.malformed["ambiguous_time"]
    assert (got, unplaced) in [(dict(every), 0), (dict(sure), sum(repeated))]
    assert result.report.parsed + result.report.malformed_total == len(instants)
