"""Turn access logs into request-count series, streaming, in bounded memory.

Logs are read in chunks of whole lines (a few tens of MiB), each chunk parsed column-wise
by :mod:`forecaster.logs` and reduced at once to counts per interval, so memory depends on
the chunk size and the number of intervals, not on the size of the log.

A gap in the log is not a quiet spell: when *no* request at all is seen for at least
``gap`` (an outage, a rotated file that is absent), those intervals are NaN in every series,
so a model never learns fake zeros. Shorter silences are real zeros.
"""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import os
import re
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import BinaryIO, Literal, cast

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

from forecaster.engine import Engine, LocalEngine
from forecaster.frames import EPOCH_MS_FROM
from forecaster.logs import (
    LINE,
    LOCAL,
    MALFORMED_REASONS,
    ClfFormat,
    JsonFormat,
    LogFormat,
    LogFormatError,
    PatternFormat,
    detect_format,
    utc_from_local,
)

DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024
EXAMPLES_PER_REASON = 3
MAX_GRID_ROWS = 50_000_000
MAX_LINE_BYTES = 1024 * 1024
STDIN = "-"


class IngestError(ValueError):
    """Input the user must fix: a missing or empty file, an unreadable stream, bad options."""


@dataclass
class IngestReport:
    """What was read and what became of every line: ``parsed + malformed == lines``."""

    sources: list[str]
    format: str = ""
    lines: int = 0
    parsed: int = 0
    malformed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MALFORMED_REASONS, 0))
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    @property
    def bad_fraction(self) -> float:
        """The share of lines that are bad. ``out_of_range`` lines are good lines left out
        on request: counting them, a --since keeping one day of a month failed the run."""
        bad = self.malformed_total - self.malformed["out_of_range"]
        return bad / self.lines if self.lines else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "sources": self.sources,
            "format": self.format,
            "lines": self.lines,
            "parsed": self.parsed,
            "malformed": self.malformed_total,
            "malformed_by_reason": {k: v for k, v in self.malformed.items() if v},
            "examples": self.examples,
        }


@dataclass
class IngestResult:
    series: pd.DataFrame
    report: IngestReport


def parse_freq(freq: str) -> int:
    """Interval length in whole seconds from a pandas-style alias (``1s``, ``5min``, ``1h``).

    The interval must divide a day so that buckets line up with midnight in UTC.
    """
    if re.fullmatch(r"\s*[+-]?\d+(?:\.\d*)?\s*", freq):  # pandas reads a bare 60 as 60 ns
        raise IngestError(f"--freq {freq!r} has no unit; give one, e.g. {freq.strip()}s")
    try:
        seconds = pd.Timedelta(freq).total_seconds()
    except ValueError:
        raise IngestError(f"invalid --freq {freq!r}; use e.g. 1s, 10s, 1min, 5min, 1h") from None
    if not _divides_day(seconds):
        raise IngestError(f"--freq {freq!r} must be a whole number of seconds that divides a day")
    return int(seconds)


def parse_gap(gap: str | None) -> float:
    """Seconds in a ``--gap`` such as ``30min``; ``None``, ``""`` or ``0`` turn gaps off.

    A bare number other than 0 is refused: pandas reads ``10`` as 10 nanoseconds, which
    would make every quiet interval missing data.
    """
    text = (gap or "").strip()
    if not text:
        return 0.0
    if re.fullmatch(r"[+-]?\d+(?:\.\d*)?", text):
        if float(text) == 0:
            return 0.0
        raise IngestError(f"--gap {gap!r} has no unit; give one, e.g. {text}min")
    invalid = IngestError(f"invalid --gap {gap!r}; use e.g. 30min or 2h, or 0 to keep zeros")
    try:
        seconds = pd.Timedelta(text).total_seconds()
    except ValueError:
        raise invalid from None
    if not seconds >= 0:  # negative, or NaT from "nan"
        raise invalid
    return seconds


def _divides_day(seconds: float) -> bool:
    return seconds >= 1 and seconds == int(seconds) and 86400 % int(seconds) == 0


def freq_alias(seconds: float) -> str:
    """An interval as people write it: ``1h``, ``5min``, ``10s``."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}min"
    return f"{seconds:g}s"


def _open(source: str) -> BinaryIO:
    """A log as a binary stream, decompressed when its first bytes say gzip or bzip2.

    The content decides, not the name: ``cat access.log.gz | surgecast ingest -`` and a
    rotated ``access.log.1`` that is gzip were read as binary garbage, every line malformed.
    """
    if source == STDIN:
        stdin = sys.stdin.buffer
        # Peeking needs a buffered reader; a stand-in for stdin may be a bare BytesIO.
        stream = (
            stdin
            if isinstance(stdin, io.BufferedReader)
            else io.BufferedReader(cast(io.RawIOBase, stdin))
        )
        kind = _compression(stream.peek(10)[:10])
        if kind == "gzip":
            return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
        if kind == "bzip2":
            return bz2.BZ2File(stream, "rb")  # type: ignore[return-value]
        return stream
    path = Path(source)
    if not path.is_file():
        raise IngestError(f"{source}: no such file")
    with open(path, "rb") as probe:
        kind = _compression(probe.read(10))
    # GzipFile and BZ2File are binary file objects, but typeshed does not declare them
    # typing.BinaryIO, hence the ignores.
    if kind == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _compression(head: bytes) -> str | None:
    """``gzip`` or ``bzip2`` from a file's first ten bytes, else ``None`` (plain text).

    gzip: its magic, the deflate method and no reserved flag; bzip2: its magic, a block
    size and the magic of a first block or of the end of an empty stream. A plain log never
    starts so, and garbage that merely starts with 1f 8b stays garbage, counted by line.
    """
    if head[:3] == b"\x1f\x8b\x08" and len(head) > 3 and head[3] & 0xE0 == 0:
        return "gzip"
    if re.fullmatch(rb"BZh[1-9](?:1AY&SY|\x17rE8P\x90)", head[:10]):
        return "bzip2"
    return None


def iter_line_chunks(
    stream: BinaryIO, chunk_bytes: int = DEFAULT_CHUNK_BYTES, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[bytes]:
    """Yield blocks of whole lines, without a UTF-8 byte-order mark at the start; the last
    block may lack its final newline.

    A line longer than ``max_line_bytes`` (no access-log record is; a run of NUL bytes left
    by a crash can be gigabytes) is cut to its head, which still counts as one line and is
    classed (``binary``, ``truncated``...) by :func:`lines_column`, so memory stays bounded.
    """
    rest = b""
    skipping = False  # inside an over-long line whose head was already yielded
    start = True
    for block in _blocks(stream, chunk_bytes):
        if start:  # a byte-order mark (Windows tools write one) is not part of a record
            block, start = block.removeprefix(b"\xef\xbb\xbf"), False
        if skipping:
            end = block.find(b"\n")
            if end < 0:
                continue
            skipping, block = False, block[end + 1 :]
        block = rest + block
        cut = block.rfind(b"\n") + 1
        rest = block[cut:]
        if len(rest) > max_line_bytes:
            # A few bytes more than the head: lines_column then cuts it at a character
            # boundary, just as it cuts a long line that came whole.
            yield block[:cut] + rest[: max_line_bytes + 4] + b"\n"
            rest, skipping = b"", True
        elif cut:
            yield block[:cut]
    if rest:
        yield rest


def _blocks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """Blocks of about ``size`` bytes; on a read error, the bytes read before it, then it.

    ``read(size)`` of a gzip or bzip2 stream cut short raises and drops everything it had
    decompressed: on a truncated ``.gz`` the lines before the break (tens of thousands in
    one 8 MB block) were never counted and the error said "cannot read past line 0".
    ``read1`` hands back each decompressed piece as it comes.
    """
    read = getattr(stream, "read1", stream.read)
    pieces: list[bytes] = []
    have = 0
    try:
        while piece := read(size - have):
            pieces.append(piece)
            have += len(piece)
            if have >= size:
                yield b"".join(pieces)
                pieces, have = [], 0
    except (OSError, EOFError):
        if pieces:
            yield b"".join(pieces)
        raise
    if pieces:
        yield b"".join(pieces)


def lines_column(chunk: bytes, max_line_bytes: int = MAX_LINE_BYTES) -> pl.Series:
    """Split a block into a string column of lines without copying line by line.

    Bytes that are not UTF-8 become U+FFFD (so the line is later classed ``binary``); the
    line offsets are computed on the re-encoded bytes and handed to Arrow directly. A line
    longer than ``max_line_bytes`` keeps only its head, as :func:`iter_line_chunks` cuts it.
    """
    data = chunk
    if not chunk.isascii():
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            data = chunk.decode("utf-8", errors="replace").encode("utf-8")
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    if data and data[-1:] != b"\n":
        ends = np.append(ends, len(data))
    offsets = np.concatenate([[0], ends]).astype(np.int64)
    if len(offsets) > 1 and np.diff(offsets).max() > max_line_bytes:
        data, offsets = _cut_long_lines(data, offsets, max_line_bytes)
    array = pa.LargeStringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)
    )
    return pl.Series(LINE, array, dtype=pl.String)


def _cut_long_lines(data: bytes, offsets: np.ndarray, limit: int) -> tuple[bytes, np.ndarray]:
    """Lines longer than ``limit`` bytes cut to their head, at a character boundary."""
    pieces = []
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        if end - start > limit:
            end = start + limit
            while end > start and data[end] & 0xC0 == 0x80:  # inside a UTF-8 character
                end -= 1
        pieces.append(data[start:end])
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    return b"".join(pieces), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _key_expr(key: str, path_depth: int) -> pl.Expr:
    """How a raw key field becomes a series label: status classes, path prefixes."""
    column = pl.col(key).fill_null("-")
    if key == "status":
        return (
            pl.when(column.str.contains(r"^\d{3}$"))
            .then(column.str.slice(0, 1) + "xx")
            .otherwise(column)
        )
    if key == "path":
        bare = column.str.replace(r"[?#].*$", "")
        parts = bare.str.split("/").list.slice(1, path_depth)
        return pl.lit("/") + parts.list.join("/")
    if key == "method":
        return column.str.to_uppercase()
    return column.str.to_lowercase()


@dataclass
class _Counter:
    """Accumulates counts per (bucket, keys) across chunks, compacting as it goes."""

    keys: Sequence[str]
    partials: list[pl.DataFrame] = field(default_factory=list)

    def add(self, counts: pl.DataFrame) -> None:
        self.partials.append(counts)
        if len(self.partials) >= 32:
            self.partials = [self.total()]

    def total(self) -> pl.DataFrame:
        if not self.partials:
            schema: dict[str, pl.DataType | type[pl.DataType]] = {
                "bucket": pl.Datetime("us", "UTC"),
                **dict.fromkeys(self.keys, pl.String),
            }
            return pl.DataFrame(schema={**schema, "y": pl.UInt32})
        merged = pl.concat(self.partials)
        return merged.group_by(["bucket", *self.keys]).agg(pl.col("y").sum())


def ingest_logs(
    sources: str | Path | Sequence[str | Path],
    *,
    freq: str = "1min",
    log_format: LogFormat | None = None,
    by: Sequence[str] = (),
    path_depth: int = 1,
    gap: str | None = "30min",
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    unique_id: str = "all",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    engine: Engine | None = None,
) -> IngestResult:
    """Count requests per interval in one or more access logs (plain, .gz, .bz2 or ``-``).

    Args:
        sources: paths, or ``-`` for standard input; lines may be out of order.
        freq: interval length (``1s``, ``10s``, ``1min``, ``5min``, ``1h``...).
        log_format: a :class:`~forecaster.logs.LogFormat`; ``None`` detects it from the
            first lines of the first source.
        by: split into one series per value of these key fields (``vhost``, ``path``,
            ``status``, ``method``); labels look like ``status=2xx,method=GET``.
        path_depth: how many leading path segments make a ``path`` label.
        gap: a run of intervals with no request at all lasting at least this long is
            missing data (NaN), not zero traffic. ``None`` or ``0`` keeps zeros.
        since, until: only lines in [since, until) count; others are ``out_of_range``.
        unique_id: the series label when ``by`` is empty.
        chunk_bytes: bytes read at a time; with ``workers`` it bounds memory.
        workers: chunks of one file parsed at once, default one per core (polars releases
            the GIL).
        progress: called with the number of bytes read after each chunk, when the engine
            runs tasks in this process.
        engine: where the files are parsed, one task per file, their counts and line
            reports then summed in file order (default: in this process, one file after
            the other). Standard input can only be read in this process.

    Returns:
        The long-format series (``unique_id, ds, y``; ``ds`` in UTC) and the report.
    """
    paths = [str(sources)] if isinstance(sources, (str, Path)) else [str(s) for s in sources]
    if not paths:
        raise IngestError("no input files given")
    by = list(dict.fromkeys(by))  # --by status --by status: one split (polars refused two)
    engine = engine or LocalEngine()
    for path in paths:  # a missing file fails before any work
        if path == STDIN and not engine.in_process:
            raise IngestError("standard input can only be read with the local engine")
        if path != STDIN and not Path(path).is_file():
            raise IngestError(f"{path}: no such file")
    bucket_seconds = parse_freq(freq)
    gap_seconds = parse_gap(gap)
    job = _FileJob(
        log_format,
        by,
        path_depth,
        bucket_seconds,
        since,
        until,
        chunk_bytes,
        workers,
        progress if engine.in_process else None,
    )
    files: list[_FileCounts] = []
    # The first file with a line in it sets every file's format: detect it there first (an
    # empty access.log before a rotated access.log.1 cannot tell; it made the rest CLF).
    while _undecided(job.fmt) and len(files) < len(paths):
        files += engine.map(job, [paths[len(files)]])
        if _has_records(files[-1].report):
            job = replace(job, fmt=files[-1].fmt)
    files += engine.map(job, paths[len(files) :])
    report = _sum_reports(paths, [f.report for f in files])
    if not _has_records(report):
        blank = " (blank lines only)" if report.lines else ""
        raise IngestError(f"{', '.join(paths)}: empty{blank}, nothing to ingest")
    if report.parsed == 0 and report.malformed["out_of_range"]:  # not an empty series
        raise IngestError(
            f"no line between --since and --until: {report.malformed['out_of_range']:,} "
            "well-formed lines fall outside"
        )
    counter = _Counter(keys=by)
    for f in files:
        counter.add(f.counts)
    series = counts_to_series(counter.total(), bucket_seconds, gap_seconds, by, unique_id)
    return IngestResult(series=series, report=report)


@dataclass
class _FileCounts:
    """What one file's task hands back: its format, line report and counts."""

    fmt: LogFormat
    report: IngestReport
    counts: pl.DataFrame  # bucket, keys..., y


@dataclass(frozen=True)
class _FileJob:
    """Read one file chunk by chunk: its counts per interval and its line report.

    ``fmt`` ``None`` detects the format from the file's first chunk.
    """

    fmt: LogFormat | None
    keys: list[str]
    path_depth: int
    bucket_seconds: int
    since: pd.Timestamp | None
    until: pd.Timestamp | None
    chunk_bytes: int
    workers: int | None
    progress: Callable[[int], None] | None

    def __call__(self, path: str) -> _FileCounts:
        report = IngestReport(sources=[path])
        counter = _Counter(keys=self.keys)
        first_line_no = 1
        stream = _open(path)
        try:
            with stream if path != STDIN else _nullcontext(stream):
                unreadable: list[OSError | EOFError] = []
                chunks = _until_unreadable(iter_line_chunks(stream, self.chunk_bytes), unreadable)
                fmt = self.fmt
                if fmt is None or _undecided(fmt):
                    chunks, fmt = _detect(chunks, fmt)
                report.format = fmt.name
                job = _ChunkJob(
                    fmt, self.keys, self.path_depth, self.bucket_seconds, self.since, self.until
                )
                repeated = None
                if isinstance(fmt, PatternFormat):  # the one format with local times
                    repeated = _RepeatedHours(
                        fmt.tz, counter, self.bucket_seconds, self.since, self.until
                    )
                threads = self.workers or os.cpu_count() or 1
                for chunk_size, parsed in _ordered_map(job, chunks, threads):
                    _tally(report, parsed, path, first_line_no)
                    counter.add(parsed.counts)
                    if repeated is not None:
                        repeated.add(parsed.repeated, path, first_line_no)
                    first_line_no += parsed.lines
                    if self.progress is not None:
                        self.progress(chunk_size)
                if unreadable:  # the lines before it counted, so the message says where
                    raise unreadable[0]
                if repeated is not None:
                    repeated.settle(report)
        except (OSError, EOFError) as exc:
            raise IngestError(
                f"{path}: cannot read past line {first_line_no - 1:,}: {exc}"
            ) from None
        return _FileCounts(fmt, report, counter.total())


def _until_unreadable(
    chunks: Iterator[bytes], unreadable: list[OSError | EOFError]
) -> Iterator[bytes]:
    """``chunks`` up to a read error, which is put in ``unreadable`` rather than raised: raised
    through the read-ahead pipeline, it dropped the chunks still being parsed, and with them
    the count of the lines that were read."""
    try:
        yield from chunks
    except (OSError, EOFError) as exc:
        unreadable.append(exc)


def _sum_reports(sources: list[str], parts: list[IngestReport]) -> IngestReport:
    """The reports of several files as one: counts summed, the first examples kept in order."""
    told = [part.format for part in parts if _has_records(part)]
    total = IngestReport(sources=sources, format=(told or [parts[0].format])[0])
    for part in parts:
        total.lines += part.lines
        total.parsed += part.parsed
        for reason, count in part.malformed.items():
            total.malformed[reason] += count
        for reason, examples in part.examples.items():
            shown = total.examples.setdefault(reason, [])
            shown.extend(examples[: EXAMPLES_PER_REASON - len(shown)])
    return total


def _has_records(report: IngestReport) -> bool:
    """True when a file had a line that is not blank, so its format was told from it."""
    return report.lines > report.malformed["empty"]


def _undecided(fmt: LogFormat | None) -> bool:
    """True when the format, or the time key of a JSON format, is to be found in the input."""
    return fmt is None or (isinstance(fmt, JsonFormat) and not fmt.time_key)


def _detect(chunks: Iterator[bytes], fmt: LogFormat | None) -> tuple[Iterator[bytes], LogFormat]:
    """Detect the format (or a JSON time key) from the first chunk, and give that chunk back
    to the stream."""
    first = next(chunks, b"")
    lines = lines_column(first)
    sample = lines.filter(lines.str.contains(r"\S")).head(200).to_list()
    if isinstance(fmt, JsonFormat):
        fmt = fmt.for_sample(sample)
    else:  # with no line to tell from, every line is blank: any format says so
        fmt = detect_format(sample) if sample else ClfFormat()
    return itertools.chain([first] if first else [], chunks), fmt


@dataclass
class _ParsedChunk:
    lines: int
    counts: pl.DataFrame  # bucket, keys..., y
    reasons: dict[str | None, int]
    examples: list[tuple[int, str, str]]  # (row in chunk, reason, line)
    repeated: pl.DataFrame  # ambiguous_time lines: n (row in chunk), local, keys..., line


@dataclass
class _ChunkJob:
    """Parse one chunk and reduce it to counts, reason tallies and a few examples."""

    fmt: LogFormat
    keys: list[str]
    path_depth: int
    bucket_seconds: int
    since: pd.Timestamp | None
    until: pd.Timestamp | None

    def __call__(self, chunk: bytes) -> tuple[int, _ParsedChunk]:
        parsed = _apply_window(
            self.fmt.parse(lines_column(chunk), self.keys), self.since, self.until
        )
        good = parsed.filter(pl.col("reason").is_null())
        counts = (
            good.select(
                pl.col("ts").dt.truncate(f"{self.bucket_seconds}s").alias("bucket"),
                *[_key_expr(k, self.path_depth).alias(k) for k in self.keys],
            )
            .group_by(["bucket", *self.keys])
            .agg(pl.len().alias("y"))
        )
        reasons = dict(parsed.group_by("reason").len().iter_rows())
        numbered = parsed.with_row_index("n")
        examples = (  # those of ambiguous_time come from the lines left unplaced at the end
            numbered.filter(pl.col("reason").is_not_null() & (pl.col("reason") != "ambiguous_time"))
            .group_by("reason", maintain_order=True)
            .head(EXAMPLES_PER_REASON)
            .select("n", "reason", LINE)
        )
        repeated = numbered.filter(pl.col("reason") == "ambiguous_time").select(
            "n", LOCAL, *[_key_expr(k, self.path_depth).alias(k) for k in self.keys], LINE
        )
        return len(chunk), _ParsedChunk(
            parsed.height, counts, reasons, list(examples.iter_rows()), repeated
        )


def _ordered_map(
    fn: Callable[[bytes], tuple[int, _ParsedChunk]], items: Iterator[bytes], workers: int
) -> Iterator[tuple[int, _ParsedChunk]]:
    """Like ``executor.map`` but reads ahead at most ``2 * workers`` items (bounded memory)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque[Future[tuple[int, _ParsedChunk]]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * max(1, workers):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class _nullcontext:
    """Leave standard input open after reading it."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def __enter__(self) -> BinaryIO:
        return self.stream

    def __exit__(self, *exc: object) -> None:
        return None


def _apply_window(
    parsed: pl.DataFrame, since: pd.Timestamp | None, until: pd.Timestamp | None
) -> pl.DataFrame:
    if since is None and until is None:
        return parsed
    return parsed.with_columns(
        pl.when(pl.col("reason").is_null() & _outside(pl.col("ts"), since, until))
        .then(pl.lit("out_of_range"))
        .otherwise(pl.col("reason"))
        .alias("reason")
    )


def _outside(ts: pl.Expr, since: pd.Timestamp | None, until: pd.Timestamp | None) -> pl.Expr:
    """True where a UTC time falls outside [since, until)."""
    outside = pl.lit(False)
    if since is not None:
        outside = outside | (ts < _utc(since))
    if until is not None:
        outside = outside | (ts >= _utc(until))
    return outside


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _tally(report: IngestReport, parsed: _ParsedChunk, source: str, first_line_no: int) -> None:
    report.lines += parsed.lines
    for reason, count in parsed.reasons.items():
        if reason is None:
            report.parsed += count
        else:
            report.malformed[reason] += count
    for n, reason, line in parsed.examples:
        shown = report.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(_example(source, first_line_no + n, line))


def _example(source: str, line_no: int, line: str) -> str:
    return f"{source}:{line_no}: {line.rstrip(chr(10))[:160]!r}"


@dataclass
class _Fold:
    """One repeated hour (one local date) of a file, as far as it has been read."""

    half: int  # half the hour repeated, in microseconds
    latest: int  # the latest local time seen so far in its first pass, in microseconds
    went_back: bool = False
    waiting: list[pl.DataFrame] = field(default_factory=list)  # first pass: local, keys, y
    examples: list[str] = field(default_factory=list)


@dataclass
class _RepeatedHours:
    """Place the lines of one file whose local time happens twice (``ambiguous_time``).

    A log is written in time order, give or take requests that finish late, so within one
    repeated hour the lines before the first jump back of more than half that hour are its
    first pass (summer time) and the lines from that jump on are its second pass. Lines wait,
    counted per local time and key, until the jump is seen; when the file ends first, the
    order cannot tell the passes apart and they stay malformed. Chunks arrive in file order,
    so a repeated hour spread over many chunks is placed the same way; each file is placed
    on its own. A request of the first pass logged after the jump (still running when the
    clocks went back) is taken for the second pass: an hour late, but counted once.
    """

    tz: str
    counter: _Counter
    bucket_seconds: int
    since: pd.Timestamp | None
    until: pd.Timestamp | None
    folds: dict[date, _Fold] = field(default_factory=dict)
    placed: int = 0
    out_of_range: int = 0

    def add(self, lines: pl.DataFrame, source: str, first_line_no: int) -> None:
        """Take one chunk's ``ambiguous_time`` lines and count those that can now be placed."""
        for part in lines.with_columns(day=pl.col(LOCAL).dt.date()).partition_by("day"):
            part = part.sort("n")
            day = part["day"][0]
            if day not in self.folds:
                self.folds[day] = self._new_fold(part)
            fold = self.folds[day]
            if not fold.went_back:
                cut = self._second_pass_start(fold, part[LOCAL].dt.epoch("us").to_numpy())
                fold.waiting.append(self._per_time(part[:cut]))
                shown = part[:cut].head(EXAMPLES_PER_REASON - len(fold.examples))
                fold.examples += [
                    _example(source, first_line_no + n, line)
                    for n, line in shown.select("n", LINE).iter_rows()
                ]
                if cut == part.height:
                    continue
                fold.went_back = True
                self._place(pl.concat(fold.waiting), "earliest")
                fold.waiting = []
                part = part[cut:]
            self._place(self._per_time(part), "latest")

    def settle(self, report: IngestReport) -> None:
        """At the end of the file: placed lines move from ``ambiguous_time`` to parsed.

        Placed lines outside --since/--until become ``out_of_range``; the lines left unplaced
        stay ``ambiguous_time``, with examples.
        """
        report.malformed["ambiguous_time"] -= self.placed + self.out_of_range
        report.malformed["out_of_range"] += self.out_of_range
        report.parsed += self.placed
        left = [e for fold in self.folds.values() if not fold.went_back for e in fold.examples]
        if left:
            report.examples["ambiguous_time"] = left[:EXAMPLES_PER_REASON]

    def _new_fold(self, part: pl.DataFrame) -> _Fold:
        local = pl.col(LOCAL)
        repeat = utc_from_local(local, self.tz, "latest") - utc_from_local(
            local, self.tz, "earliest"
        )
        first = part.head(1)
        return _Fold(
            half=first.select(repeat.dt.total_microseconds()).item() // 2,
            latest=first.select(local.dt.epoch("us")).item(),
        )

    @staticmethod
    def _second_pass_start(fold: _Fold, local: np.ndarray) -> int:
        """Where the clocks went back in these lines (their count if not here), by line order."""
        before = np.maximum.accumulate(np.concatenate([[fold.latest], local[:-1]]))
        jumps = np.flatnonzero(local < before - fold.half)
        fold.latest = max(fold.latest, int(local.max()))
        return int(jumps[0]) if jumps.size else len(local)

    def _per_time(self, part: pl.DataFrame) -> pl.DataFrame:
        return part.group_by(LOCAL, *self.counter.keys).agg(pl.len().alias("y"))

    def _place(self, per_time: pl.DataFrame, which: Literal["earliest", "latest"]) -> None:
        """Count lines waiting per local time as the ``which`` of their two instants."""
        frame = per_time.with_columns(ts=utc_from_local(pl.col(LOCAL), self.tz, which))
        frame = frame.with_columns(outside=_outside(pl.col("ts"), self.since, self.until))
        self.out_of_range += int(frame.filter("outside")["y"].sum())
        kept = frame.filter(~pl.col("outside"))
        self.placed += int(kept["y"].sum())
        bucket = pl.col("ts").dt.truncate(f"{self.bucket_seconds}s").alias("bucket")
        self.counter.add(
            kept.group_by(bucket, *self.counter.keys).agg(pl.col("y").sum().cast(pl.UInt32))
        )


def counts_to_series(
    counts: pl.DataFrame,
    bucket_seconds: int,
    gap_seconds: float,
    keys: Sequence[str],
    unique_id: str = "all",
) -> pd.DataFrame:
    """Complete per-key counts onto a regular grid, zero-filling, and mask long gaps as NaN.

    ``counts`` has a UTC ``bucket`` column, the key columns and ``y``. The gap mask is
    computed over all keys from the buckets that have a row: when the whole service has no
    row for ``gap_seconds`` or more, every series is missing there; a key that is silent
    while others are busy is truly zero. A row saying 0 (a count file recording a quiet
    minute) is an observed zero, not a gap.
    """
    columns = ["unique_id", "ds", "y"]
    if counts.height == 0:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=t)
                for c, t in zip(columns, ["str", "datetime64[ns]", "float"], strict=True)
            }
        )
    frame = counts.to_pandas()
    frame["ds"] = frame["bucket"].dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    if keys:
        frame["unique_id"] = [
            ",".join(f"{k}={v}" for k, v in zip(keys, row, strict=True))
            for row in frame[list(keys)].itertuples(index=False)
        ]
    else:
        frame["unique_id"] = unique_id
    step = pd.Timedelta(seconds=bucket_seconds)
    first, last = frame["ds"].min(), frame["ds"].max()
    ids = sorted(frame["unique_id"].unique())
    rows = ((last - first) // step + 1) * len(ids)
    if rows > MAX_GRID_ROWS:
        raise IngestError(
            f"timestamps span {first} to {last} UTC: {rows:,} series rows at this --freq; "
            "a few lines probably carry wrong dates, so pass --since/--until"
        )
    grid = pd.date_range(first, last, freq=step)
    no_row = ~grid.isin(frame["ds"])
    missing = gap_mask(no_row, int(np.ceil(gap_seconds / bucket_seconds)) if gap_seconds else 0)
    wide = frame.pivot_table(index="ds", columns="unique_id", values="y", aggfunc="sum")
    wide = wide.reindex(index=grid, columns=ids, fill_value=0).fillna(0).astype(float)
    wide.loc[missing, :] = np.nan
    wide.index.name = "ds"
    long = wide.reset_index().melt(id_vars="ds", var_name="unique_id", value_name="y")
    return long[columns].sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)


def gap_mask(empty: np.ndarray, min_run: int) -> np.ndarray:
    """True inside every run of ``empty`` at least ``min_run`` long (``min_run`` 0: never)."""
    mask = np.zeros(len(empty), dtype=bool)
    if min_run <= 0 or not empty.any():
        return mask
    padded = np.concatenate([[False], empty, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    for start, stop in zip(starts, stops, strict=True):
        if stop - start >= min_run:
            mask[start:stop] = True
    return mask


def load_counts(
    path: str | Path,
    *,
    tz: str = "UTC",
    freq: str | None = None,
    gap: str | None = "30min",
    unique_id: str | None = None,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Load a ready-made ``timestamp,count`` CSV (e.g. NASA per-minute) as a series frame.

    Timestamps without a zone are local time in ``tz`` (an IANA name or a fixed offset such
    as ``-04:00``) and are converted to UTC, as are timestamps with a UTC offset (which may
    change down the file, across a DST change). Intervals absent from the file are zero unless
    they fall in a run of at least ``gap`` with no row, which is missing data (NaN): the
    NASA file omits zero minutes but also spans a hurricane outage. ``freq`` (checked as by
    :func:`parse_freq`) defaults to the most common step in the file, so a 5-minute file
    stays 5-minute, and is told from the whole file; ``unique_id`` defaults to the file's
    stem. Only rows in [``since``, ``until``) count (naive bounds are UTC), as for
    :func:`ingest_logs`. The frame's ``attrs["freq"]`` is the interval (``1min``), which a
    window of one row cannot show.
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    raw = _read_count_rows(path)
    stamps = _read_stamps(raw.iloc[:, 0], path)
    counts = pd.to_numeric(raw.iloc[:, 1].str.strip(), errors="coerce")
    # A count is a non-negative number; a fraction (a Prometheus increase()) is kept as is.
    bad = stamps.isna() | ~(np.isfinite(counts) & (counts >= 0))
    if bad.any():
        first = raw[bad].iloc[0].tolist()
        raise IngestError(
            f"{path}: {int(bad.sum())} rows with an unreadable timestamp or a count that is "
            f"not a number of at least 0, e.g. {first}"
        )
    if stamps.dt.tz is None:
        stamps = _localize_rows(stamps, tz, raw, path)
    ds = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    # The interval is the whole file's: told from the rows left by --since/--until, one row
    # asked for --freq and a few rows could tell another interval than the file's own.
    bucket_seconds = parse_freq(freq) if freq else _file_interval(ds, path)
    _check_not_finer(ds, bucket_seconds, path)
    kept = pd.Series(True, index=stamps.index)
    if since is not None:
        kept &= stamps >= _utc(since)
    if until is not None:
        kept &= stamps < _utc(until)
    if not kept.any():
        raise IngestError(f"{path}: no row between --since and --until")
    ds, counts = ds[kept], counts[kept]
    step = pd.Timedelta(seconds=bucket_seconds)
    counts_pl = (
        pl.DataFrame(
            {
                "bucket": pd.Series(ds).dt.floor(step).dt.tz_localize("UTC"),
                "y": counts.astype("float64"),
            }
        )
        .group_by("bucket")
        .agg(pl.col("y").sum())
    )
    gap_seconds = parse_gap(gap)
    series = counts_to_series(counts_pl, bucket_seconds, gap_seconds, [], unique_id or path.stem)
    series.attrs["freq"] = freq_alias(bucket_seconds)  # a one-row window cannot tell it
    return series


def _read_count_rows(path: Path) -> pd.DataFrame:
    """A count file's rows as text, without its header line if it has one.

    The first line is a header unless its second cell is a number: a file written without
    one (``2026-10-12 00:00,5``) would otherwise lose its first row to the column names.
    """
    try:
        raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise IngestError(f"{path}: not a timestamp,count CSV: {exc}") from None
    if raw.shape[1] >= 2 and not raw.empty:
        if pd.isna(pd.to_numeric(raw.iloc[0, 1].strip(), errors="coerce")):
            raw = raw.iloc[1:].reset_index(drop=True)
    if raw.shape[1] < 2 or raw.empty:
        raise IngestError(
            f"{path}: expected two columns, a timestamp and a count, and at least one row"
        )
    return raw


def _read_stamps(column: pd.Series, path: Path) -> pd.Series:
    """A count file's timestamps: naive (local time, placed in ``tz`` later) or zone-aware.

    Stamps whose UTC offset changes down the column (``-04:00`` then ``-05:00`` across a DST
    change) are instants, converted to UTC; pandas refuses them without ``utc=True``. A
    stamp without an offset among them would then be read as UTC, so it is refused instead.
    Stamps that are all plain numbers are Unix time (what Prometheus and most metric
    exports write): seconds, or milliseconds when they are too large to be seconds (after
    the year 5000); read as dates, they were nanoseconds in January 1970. Unreadable stamps
    are NaT, counted by the caller.
    """
    column = column.str.strip()
    epoch = pd.to_numeric(column, errors="coerce")
    if (epoch.notna() | (column == "")).all() and epoch.notna().any():
        unit = "ms" if epoch.abs().max() >= EPOCH_MS_FROM else "s"
        return pd.to_datetime(epoch, unit=unit, utc=True, errors="coerce")
    try:
        return pd.to_datetime(column, errors="coerce")
    except ValueError:  # several UTC offsets in one column
        pass
    naive = ~column.astype(str).str.strip().str.contains(r"(?:[zZ]|[+-]\d\d(?::?\d\d)?)$")
    if naive.any():
        raise IngestError(
            f"{path}: {int(naive.sum())} timestamps carry no UTC offset while others do, e.g. "
            f"{column[naive].iloc[0]!r}; write them all one way"
        )
    return pd.to_datetime(column, errors="coerce", utc=True)


def _localize_rows(stamps: pd.Series, tz: str, raw: pd.DataFrame, path: Path) -> pd.Series:
    """Local wall-clock times of a count file's rows as zone-aware times.

    The rows are in time order, so the hour repeated when clocks go back is placed from that
    order (its first pass before the second). Where the order cannot tell (a pass missing,
    rows out of order) those rows are refused like other unreadable rows: never dropped,
    never counted twice in one hour.
    """
    zone = _zone(tz)
    try:
        return stamps.dt.tz_localize(zone, ambiguous="infer", nonexistent="shift_forward")
    except ValueError:
        repeated = stamps.dt.tz_localize(zone, ambiguous="NaT", nonexistent="shift_forward").isna()
        if not repeated.any():  # a failure that is not about the repeated hour
            raise
        raise IngestError(
            f"{path}: {int(repeated.sum())} rows fall in the hour repeated when clocks go back "
            f"in {tz} and their order does not tell which pass they belong to, e.g. "
            f"{','.join(map(str, raw[repeated].iloc[0]))!r}; write the timestamps with their "
            "UTC offset"
        ) from None


def _file_interval(ds: pd.Series, path: Path) -> int:
    """The most common step between a count file's timestamps, in seconds.

    It must be usable as a ``freq`` (whole seconds dividing a day), or the buckets would not
    line up with other series; a file that cannot tell its interval is asked for one.
    """
    steps = ds.drop_duplicates().sort_values().diff().dropna()
    if steps.empty:
        raise IngestError(f"{path}: one timestamp only, so no interval to infer; pass --freq")
    seconds = steps.mode().iloc[0].total_seconds()
    if not _divides_day(seconds):
        raise IngestError(
            f"{path}: rows are mostly {freq_alias(seconds)} apart, not a whole number of "
            "seconds dividing a day; pass --freq"
        )
    return int(seconds)


def _check_not_finer(ds: pd.Series, bucket_seconds: int, path: Path) -> None:
    """Refuse a ``freq`` finer than a regular count file's own interval.

    Each row's count would land in the first of the intervals it covers and zeros in the
    others (a 5-minute file at --freq 1min: a spike, then four fake zeros). A file is taken
    as regular when its rows, ten steps or more, are all whole multiples of one interval
    apart; a per-minute file that omits quiet minutes still has steps of 1, 2, 3... minutes.
    """
    stamps = np.unique(ds.to_numpy().astype("datetime64[us]").astype(np.int64))
    steps = np.diff(stamps)
    if len(steps) < 10:
        return
    every = int(np.gcd.reduce(steps)) / 1e6
    if bucket_seconds < every:
        raise IngestError(
            f"{path}: its rows are all a multiple of {freq_alias(every)} apart, so "
            f"--freq {freq_alias(bucket_seconds)} would put each row's count in one "
            f"interval and zeros in the others; use --freq {freq_alias(every)} or longer"
        )


def _zone(tz: str) -> object:
    """An IANA zone name, or a fixed offset like ``-04:00`` as a tzinfo."""
    if tz[:1] in "+-":
        return pd.Timestamp("2000-01-01T00:00:00" + tz).tzinfo
    return tz


__all__ = [
    "IngestError",
    "IngestReport",
    "IngestResult",
    "LogFormatError",
    "counts_to_series",
    "freq_alias",
    "gap_mask",
    "ingest_logs",
    "load_counts",
    "parse_freq",
    "parse_gap",
]
