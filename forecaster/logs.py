"""Access-log formats, parsed column-wise with polars.

Parsing a line at a time in Python manages about 0.5 M lines/s; handing a whole chunk of
lines to polars' Rust regex and ``strptime`` kernels is several times faster. Every format
here turns a column of raw lines into a frame with one row per line:

- ``ts``: the request time in UTC (null when the line is malformed),
- ``reason``: null for a good line, else one of :data:`MALFORMED_REASONS`,
- one column per requested key field (``vhost``, ``method``, ``path``, ``status``),
- ``line``: the raw line, still ending in its newline (stripping costs a copy),
- ``local``: for a line whose wall-clock time falls in the hour repeated when clocks go back
  (reason ``ambiguous_time``), that time; null otherwise. One line cannot tell which pass
  it belongs to; :mod:`forecaster.ingest` places such lines from the order of the file.

No line is ever dropped here, so ``parsed + malformed == lines read`` holds by construction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import polars as pl

from forecaster.frames import EPOCH_MS_FROM

LINE = "line"
LOCAL = "local"
KEY_FIELDS = ("vhost", "method", "path", "status")

MALFORMED_REASONS = (
    "empty",  # a blank line
    "binary",  # control bytes or bytes that are not UTF-8: garbage, not a log record
    "truncated",  # starts like a record of the format but stops short
    "unknown_format",  # does not look like the format at all
    "bad_timestamp",  # the right shape, but the time cannot be parsed
    "out_of_range",  # parsed, but outside the --since/--until window asked for
    "ambiguous_time",  # a local time repeated when clocks go back, its pass not told by order
)

CLF_TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"

# Control characters other than tab, CR and LF, DEL, and U+FFFD (what undecodable bytes
# become) mark a line as binary garbage.
_BINARY = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F\x{FFFD}]"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_CLF = r"^\S+ \S+ .*?\[[^\]]+\] " + _QUOTED + r" (?:\d{3}|-) (?:\d+|-)"
_COMBINED = _CLF + " " + _QUOTED + " " + _QUOTED
_CLF_HEAD = r"^\S+ \S+ .*?\["


class LogFormatError(ValueError):
    """The log's format is not recognised, or a user-given format is invalid."""


@dataclass(frozen=True)
class LogFormat:
    """Base class: a named way to turn raw lines into ``ts``, ``reason`` and key fields."""

    name: str
    fields: frozenset[str] = field(default=frozenset())

    def structure(self) -> pl.Expr:
        """True where the line has the format's shape."""
        raise NotImplementedError

    def head(self) -> pl.Expr:
        """True where the line starts like the format (so a failed ``structure`` is truncation)."""
        raise NotImplementedError

    def timestamp(self) -> pl.Expr:
        """The request time as ``Datetime(us, UTC)``, null where it cannot be parsed."""
        raise NotImplementedError

    def key(self, name: str) -> pl.Expr:
        """The raw value of key field ``name`` (one of :data:`KEY_FIELDS`) as a string."""
        raise NotImplementedError

    def parse(self, lines: pl.Series, keys: Sequence[str] = ()) -> pl.DataFrame:
        """Classify every line and extract its time and the requested key fields.

        The common case (a well-formed line) costs one shape match and one time parse,
        evaluated in parallel; the finer reasons are worked out only for the failing rows.
        """
        unknown = [k for k in keys if k not in self.fields]
        if unknown:
            raise LogFormatError(
                f"format {self.name!r} has no {', '.join(unknown)} field "
                f"(it has: {', '.join(sorted(self.fields)) or 'none'})"
            )
        out = pl.DataFrame({LINE: lines}).select(
            self.structure().alias("_shape"),
            self.timestamp().alias("ts"),
            *[self.key(k).alias(k) for k in keys],
            pl.col(LINE),
        )
        good = out["_shape"] & out["ts"].is_not_null()
        reason = pl.Series("reason", [], dtype=pl.String).extend_constant(None, out.height)
        if not good.all():
            failed = (~good).arg_true()
            text = pl.col(LINE)
            why = out[failed].select(
                pl.when(text.str.contains(r"^\s*$"))
                .then(pl.lit("empty"))
                .when(text.str.contains(_BINARY))
                .then(pl.lit("binary"))
                .when(~pl.col("_shape") & self.head())
                .then(pl.lit("truncated"))
                .when(~pl.col("_shape"))
                .then(pl.lit("unknown_format"))
                .otherwise(pl.lit("bad_timestamp"))
            )
            reason = reason.scatter(failed, why.to_series())
        return out.drop("_shape").with_columns(reason, pl.lit(None, pl.Datetime("us")).alias(LOCAL))


def _request_part(index: int) -> pl.Expr:
    """Method (0) or path (1) from a CLF request such as ``"GET /a HTTP/1.0"``.

    The closing quote is not part of either: a request without a protocol (``"GET /"``,
    common in old logs) or without a path (``"-"``) gave a path ``/"`` or a method ``-"``.
    """
    return pl.col(LINE).str.extract(r'\] "([^\s"]+) ?([^\s"]*)', index + 1)


@dataclass(frozen=True)
class ClfFormat(LogFormat):
    """Common Log Format, or Combined (CLF plus quoted referer and user agent).

    ``host ident user [01/Aug/1995:00:00:01 -0400] "GET /path HTTP/1.0" 200 1839``. The UTC
    offset of each line is honoured. The time is read from the first `` [``; a user field
    containing `` [`` would make that line a ``bad_timestamp``, which is reported, not hidden.
    """

    name: str = "clf"
    fields: frozenset[str] = frozenset({"method", "path", "status"})
    combined: bool = False

    def structure(self) -> pl.Expr:
        return pl.col(LINE).str.contains(_COMBINED if self.combined else _CLF)

    def head(self) -> pl.Expr:
        return pl.col(LINE).str.contains(_CLF_HEAD)

    def timestamp(self) -> pl.Expr:
        text = pl.col(LINE)
        # After a space: a host written in brackets ([2001:db8::1], as some proxies log
        # IPv6 clients) opens the line with a "[" of its own.
        raw = text.str.slice(text.str.find(" [", literal=True) + 2, 26)
        return raw.str.strptime(pl.Datetime("us", "UTC"), CLF_TIME_FORMAT, strict=False)

    def key(self, name: str) -> pl.Expr:
        if name == "method":
            return _request_part(0)
        if name == "path":
            return _request_part(1)
        return pl.col(LINE).str.extract(_QUOTED + r" (\d{3}|-) ", 1)


# JSON keys tried, in order, for the time and for each key field. The defaults match the
# usual nginx ``log_format ... escape=json`` and Logstash/ECS-style names.
JSON_TIME_KEYS = ("time_iso8601", "time_local", "@timestamp", "timestamp", "time", "msec")
_JSON_KEYS = {
    "vhost": ("host", "server_name", "http_host", "vhost"),
    "method": ("request_method", "method"),
    "path": ("request_uri", "uri", "path"),
    "status": ("status",),
}


def _json_value(key: str) -> pl.Expr:
    return pl.col(LINE).str.json_path_match(f"$['{key}']")


@dataclass(frozen=True)
class JsonFormat(LogFormat):
    """One JSON object per line, e.g. nginx ``log_format main escape=json '{...}'``.

    The time is read from ``time_key``: ISO 8601 (``time_iso8601``, ``@timestamp``, ...),
    CLF-style (``time_local``), or a number, which is Unix time in seconds (nginx ``msec``)
    or, when too large for seconds, milliseconds (pino's ``time``); ``""`` means not known
    yet, to be found in the first lines read (:meth:`for_sample`). Key fields are read from the
    first of the usual nginx names that is present (see ``_JSON_KEYS``), falling back to
    splitting ``request`` for the method and path.
    """

    name: str = "json"
    fields: frozenset[str] = frozenset(KEY_FIELDS)
    time_key: str = "time_iso8601"

    def for_sample(self, sample: Sequence[str]) -> JsonFormat:
        """This format, its time key found in ``sample`` if it was not known."""
        return self if self.time_key else replace(self, time_key=_json_time_key(sample))

    def structure(self) -> pl.Expr:
        return (
            pl.col(LINE).str.contains(r"^\s*\{.*\}\s*$") & _json_value(self.time_key).is_not_null()
        )

    def head(self) -> pl.Expr:
        return pl.col(LINE).str.contains(r"^\s*\{") & ~pl.col(LINE).str.contains(r"\}\s*$")

    def timestamp(self) -> pl.Expr:
        raw = _json_value(self.time_key)
        # Any key may hold a number: read as text, "timestamp": 1728700800 was a bad time.
        number = raw.cast(pl.Float64, strict=False)
        micros = pl.when(number.abs() >= EPOCH_MS_FROM).then(number * 1e3).otherwise(number * 1e6)
        epoch = micros.cast(pl.Int64, strict=False).cast(pl.Datetime("us"))
        fmt = CLF_TIME_FORMAT if self.time_key == "time_local" else "%+"
        text = raw.str.strptime(pl.Datetime("us", "UTC"), fmt, strict=False)
        return pl.coalesce(text, epoch.dt.replace_time_zone("UTC"))

    def key(self, name: str) -> pl.Expr:
        candidates = [_json_value(k) for k in _JSON_KEYS[name]]
        if name in ("method", "path"):
            index = 1 if name == "method" else 2
            candidates.append(_json_value("request").str.extract(r"^(\S+) ?(\S*)", index))
        return pl.coalesce(candidates)


@dataclass(frozen=True)
class PatternFormat(LogFormat):
    """A user-given regular expression with named groups.

    The pattern (Rust regex syntax, as used by polars: ``(?P<name>...)``) must have a
    ``time`` group; optional groups ``vhost``, ``method``, ``path``, ``status`` and
    ``request`` (``"GET /a HTTP/1.1"``, split into method and path when those are absent)
    enable ``--by``. ``time_format`` is a strftime pattern; when it has no ``%z`` the times
    are taken to be in ``tz``. A line the pattern does not match is ``unknown_format``:
    without knowing the format's shape, truncation cannot be told apart.
    """

    name: str = "pattern"
    fields: frozenset[str] = frozenset()
    pattern: str = ""
    time_format: str = CLF_TIME_FORMAT
    tz: str = "UTC"

    def parse(self, lines: pl.Series, keys: Sequence[str] = ()) -> pl.DataFrame:
        # A user's pattern may end in ``$``, which must not have to match the newline.
        out = super().parse(lines.str.strip_chars_end("\r\n"), keys)
        if "%z" in self.time_format:
            return out
        return self._mark_repeated_times(out)

    def _mark_repeated_times(self, out: pl.DataFrame) -> pl.DataFrame:
        """Turn ``bad_timestamp`` lines whose local time happens twice into ``ambiguous_time``.

        Their time was readable but is two instants (the clocks went back over it), so it is
        kept in ``local`` for the caller to place from line order. Only the failed lines are
        looked at again, so well-formed logs pay nothing.
        """
        failed = (out["reason"] == "bad_timestamp").arg_true()
        if failed.len() == 0:
            return out
        local = pl.col(LOCAL)
        times = (
            out[failed]
            .select(self._local_time().alias(LOCAL))
            .with_columns(
                twice=(
                    utc_from_local(local, self.tz, "earliest")
                    != utc_from_local(local, self.tz, "latest")
                ).fill_null(False)
            )
        )
        rows = failed.filter(times["twice"])
        return out.with_columns(
            out["reason"].scatter(rows, "ambiguous_time"),
            out[LOCAL].scatter(rows, times[LOCAL].filter(times["twice"])),
        )

    def structure(self) -> pl.Expr:
        return pl.col(LINE).str.contains(self.pattern)

    def head(self) -> pl.Expr:
        return pl.lit(False)

    def _group(self, name: str) -> pl.Expr:
        return pl.col(LINE).str.extract_groups(self.pattern).struct.field(name)

    def timestamp(self) -> pl.Expr:
        if "%z" in self.time_format:
            raw = self._group("time")
            return raw.str.strptime(pl.Datetime("us", "UTC"), self.time_format, strict=False)
        # A repeated local time is null here, then ``ambiguous_time`` (see parse).
        return utc_from_local(self._local_time(), self.tz, "null")

    def _local_time(self) -> pl.Expr:
        return self._group("time").str.strptime(pl.Datetime("us"), self.time_format, strict=False)

    def key(self, name: str) -> pl.Expr:
        if name in self._groups():
            return self._group(name)
        index = 1 if name == "method" else 2
        return self._group("request").str.extract(r"^(\S+) ?(\S*)", index)

    def _groups(self) -> set[str]:
        return set(re.findall(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>", self.pattern))


def utc_from_local(
    local: pl.Expr, tz: str, repeated: Literal["earliest", "latest", "null"]
) -> pl.Expr:
    """Wall-clock times in ``tz`` as UTC.

    ``tz`` is an IANA name or a fixed offset such as ``-04:00`` or ``+05:30``. A time that
    never happens (clocks going forward) is null; one that happens twice (clocks going
    back) is the ``earliest`` or ``latest`` of its two instants, or null.
    """
    offset = re.fullmatch(r"([+-])(\d\d):?(\d\d)", tz)
    if offset:  # polars reads no offset of part of an hour (+05:30) as a time zone
        sign = -1 if offset[1] == "-" else 1
        minutes = sign * (int(offset[2]) * 60 + int(offset[3]))
        return (local - pl.duration(minutes=minutes)).dt.replace_time_zone("UTC")
    return local.dt.replace_time_zone(
        tz, ambiguous=repeated, non_existent="null"
    ).dt.convert_time_zone("UTC")


def pattern_format(
    pattern: str, time_format: str = CLF_TIME_FORMAT, tz: str = "UTC"
) -> PatternFormat:
    """Build a :class:`PatternFormat`, checking the regex compiles and has a ``time`` group."""
    try:
        pl.Series([""]).str.extract_groups(pattern)
    except Exception as exc:  # polars raises ComputeError with the regex engine's message
        raise LogFormatError(f"invalid --pattern regex: {exc}") from None
    probe = PatternFormat(pattern=pattern)
    groups = probe._groups()
    if "time" not in groups:
        raise LogFormatError(
            "--pattern must have a named group 'time', e.g. \\[(?P<time>[^\\]]+)\\]"
        )
    fields = {k for k in KEY_FIELDS if k in groups}
    if "request" in groups:
        fields |= {"method", "path"}
    return PatternFormat(pattern=pattern, time_format=time_format, tz=tz, fields=frozenset(fields))


BUILTIN_FORMATS = ("clf", "combined", "json")


def builtin_format(name: str, sample: Sequence[str] = ()) -> LogFormat:
    """The built-in format called ``name``.

    For ``json`` the time key is found in ``sample``; without one, in the first lines that
    :func:`~forecaster.ingest.ingest_logs` reads (standard input cannot be read twice).
    """
    if name == "clf":
        return ClfFormat()
    if name == "combined":
        return ClfFormat(name="combined", combined=True)
    if name == "json":
        return JsonFormat(time_key="").for_sample(sample) if sample else JsonFormat(time_key="")
    raise LogFormatError(
        f"unknown format {name!r}; choose one of auto, {', '.join(BUILTIN_FORMATS)}"
    )


def _json_time_key(sample: Sequence[str]) -> str:
    column = pl.DataFrame({LINE: list(sample)}, schema={LINE: pl.String})
    for key in JSON_TIME_KEYS:
        if column.select(_json_value(key).is_not_null().any()).item():
            return key
    return JSON_TIME_KEYS[0]


def detect_format(sample: Sequence[str]) -> LogFormat:
    """Pick the built-in format that the most of ``sample``'s non-blank lines match.

    Raises :class:`LogFormatError` naming the first line when fewer than half match any
    format, so a wrong file gets one clear line rather than a wall of malformed counts.
    """
    lines = [s.rstrip("\r\n") for s in sample if s.strip()]
    if not lines:
        raise LogFormatError("no non-blank line to recognise the format from")
    best: tuple[float, LogFormat] | None = None
    for name in ("combined", "clf", "json"):
        fmt = builtin_format(name, lines)
        parsed = fmt.parse(pl.Series(LINE, lines, dtype=pl.String))
        share = parsed.select(pl.col("reason").is_null().mean()).item()
        if best is None or share > best[0] + 1e-9:
            best = (share, fmt)
    assert best is not None
    if best[0] < 0.5:
        first = lines[0][:120]
        raise LogFormatError(
            f"not a recognised access-log format (first line: {first!r}); "
            "pass --format clf|combined|json or --pattern REGEX"
        )
    return best[1]
