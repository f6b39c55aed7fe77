"""``surgecast ingest``: access logs or count files in, a long-format request-rate series out."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
import typer
from tqdm import tqdm

from forecaster._cli_common import fail, zone_option
from forecaster.engine import Engine, open_engine
from forecaster.frames import write_frame
from forecaster.ingest import (
    IngestError,
    IngestReport,
    IngestResult,
    freq_alias,
    ingest_logs,
    load_counts,
    parse_freq,
)
from forecaster.logs import (
    CLF_TIME_FORMAT,
    LogFormat,
    LogFormatError,
    builtin_format,
    pattern_format,
)

app = typer.Typer()

FORMATS = ("auto", "clf", "combined", "json", "counts")


@app.command()
def ingest(
    files: list[str] = typer.Argument(..., help="Log files (plain, .gz, .bz2); '-' reads stdin."),
    freq: str | None = typer.Option(
        None,
        "--freq",
        help="Interval: 1s, 10s, 1min, 5min, 1h, ... (default: 1min for logs, the file's own "
        "interval for --format counts).",
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="Write the series here (.csv or .parquet); default: CSV on stdout.",
    ),
    log_format: str = typer.Option(
        "auto",
        "--format",
        help="auto, clf, combined, json (nginx escape=json lines) or counts (timestamp,count CSV).",
    ),
    pattern: str | None = typer.Option(
        None,
        "--pattern",
        help="Your own format: a regex with named groups; 'time' is required, 'vhost', 'method', "
        "'path', 'status', 'request' are optional. Example: "
        # --help reads this as Rich markup, where \[ shows as [: \\[ shows the \[ to type
        r"'^(?P<vhost>\S+) \S+ \S+ \S+ \\[(?P<time>[^\]]+)\] "
        r"\"(?P<request>[^\"]*)\" (?P<status>\d+)'",
    ),
    time_format: str = typer.Option(
        CLF_TIME_FORMAT, "--time-format", help="strftime format of the 'time' group of --pattern."
    ),
    tz: str = typer.Option(
        "UTC",
        "--tz",
        help="Zone of times that carry no offset (--pattern without %z, --format counts): "
        "an IANA name or an offset like -04:00.",
    ),
    by: list[str] = typer.Option(
        [], "--by", help="Split by vhost, path, status (class, e.g. 2xx) or method; repeatable."
    ),
    path_depth: int = typer.Option(
        1, "--path-depth", min=1, help="Path segments in a --by path label."
    ),
    gap: str = typer.Option(
        "30min",
        "--gap",
        help="A silence at least this long is missing data (NaN), not zero traffic; 0 disables.",
    ),
    since: str | None = typer.Option(
        None, "--since", help="Ignore (and count) lines, or count-file rows, before this UTC time."
    ),
    until: str | None = typer.Option(
        None,
        "--until",
        help="Ignore (and count) lines, or count-file rows, at or after this UTC time.",
    ),
    unique_id: str | None = typer.Option(
        None,
        "--id",
        help="Series label when not split with --by (default: all for logs, the file's name "
        "for a count file).",
    ),
    max_bad_fraction: float = typer.Option(
        0.05,
        "--max-bad-fraction",
        min=0.0,
        max=1.0,
        help="Fail when more lines than this are malformed (lines outside --since/--until aside).",
    ),
    report_path: Path | None = typer.Option(
        None, "--report", help="Also write the line report as JSON."
    ),
    engine_name: str = typer.Option(
        "local",
        "--engine",
        help="local (this process, file after file) or dask (one task per file on a Dask "
        "cluster; the counts and the line report are the same).",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="With --engine dask: a running scheduler (tcp://host:8786) whose workers see "
        "the same files; default a local cluster, one worker process per core.",
    ),
) -> None:
    """Count requests per interval in access logs, keeping gaps as missing data.

    Every line is either parsed or counted as malformed by reason; the summary on stderr
    shows both and a few examples, and --max-bad-fraction turns too many into an error.
    """
    by = [part for item in by for part in item.split(",") if part]
    if log_format not in FORMATS:
        fail(f"unknown --format {log_format!r}; choose one of {', '.join(FORMATS)}")
    if output is not None and output.suffix not in (".csv", ".parquet"):
        fail(f"{output}: output must end in .csv or .parquet")
    for target in (output, report_path):  # found after the work, it was a traceback
        if target is not None and not target.parent.is_dir():
            fail(f"{target.parent}: no such directory")
    _check_zone(tz)
    start, end = _instant("--since", since), _instant("--until", until)
    if start is not None and end is not None and start >= end:
        fail(f"--since {since} is not before --until {until}")
    try:
        with open_engine(engine_name, scheduler) as engine:
            if log_format == "counts":
                if by:
                    fail("--by needs access logs; count files have no request fields")
                if "-" in files:  # it said "-: no such file"
                    fail("--format counts reads count files, not standard input")
                if unique_id is not None and len(files) > 1:
                    fail("--id names one series; each count file is a series named after it")
                _check_series_labels(files)
                load = partial(
                    load_counts,
                    tz=tz,
                    freq=freq,
                    gap=_gap(gap),
                    unique_id=unique_id,
                    since=start,
                    until=end,
                )
                loaded = engine.map(load, files)
                freq = freq or _common_interval(loaded)
                series = pd.concat(loaded)
                report = None
            else:
                freq = freq or "1min"
                fmt = _choose_format(log_format, pattern, time_format, tz)
                result = _run(
                    files, freq, fmt, by, path_depth, gap, start, end, unique_id or "all", engine
                )
                series, report = result.series, result.report
    except (IngestError, LogFormatError, ValueError, OSError) as exc:
        fail(str(exc))
    if report is not None:
        typer.echo(describe_report(report), err=True)
        if report_path is not None:
            text = json.dumps(report.to_dict(), indent=2)
            _write(report_path, lambda: report_path.write_text(text))
    typer.echo(describe_series(series, freq), err=True)
    if report is not None and report.bad_fraction > max_bad_fraction:
        aside = " (out_of_range ones aside)" if report.malformed["out_of_range"] else ""
        fail(
            f"{report.bad_fraction:.1%} of lines are malformed{aside}, more than "
            f"--max-bad-fraction {max_bad_fraction:.1%}; no output written",
            code=3,
        )
    if output is None:
        series.to_csv(sys.stdout, index=False)
    else:
        _write(output, lambda: write_frame(series, output))
        typer.echo(f"wrote {len(series):,} rows to {output}", err=True)


def _instant(option: str, text: str | None) -> pd.Timestamp | None:
    """A --since/--until time, UTC unless it carries an offset; one line when unreadable."""
    if not text:
        return None
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        stamp = pd.NaT
    if pd.isna(stamp):
        fail(f"{option} {text!r} is not a time like 2026-10-12 or 2026-10-12T08:00+08:00")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp


def _write(path: Path, write: Callable[[], object]) -> None:
    """Run ``write``; a file that cannot be written (permissions, a full disk) is one line."""
    try:
        write()
    except OSError as exc:
        fail(f"{path}: cannot write: {exc.strerror or exc}")


def _check_zone(tz: str) -> None:
    """``--tz`` is an IANA name or a fixed offset: anything else is one line here, not a
    traceback from deep inside a parser."""
    if tz[:1] not in "+-":
        zone_option(tz)
        return
    try:
        pd.Timestamp("2000-01-01T00:00:00" + tz)
    except ValueError:
        fail(f"--tz {tz!r} is not an offset like -04:00 or +08:00")


def _gap(gap: str) -> str | None:
    return None if gap.strip() in ("0", "") else gap


def _check_series_labels(files: list[str]) -> None:
    """Refuse two count files that would be one series, naming both.

    Each count file becomes a series named after its stem, so two files with one name (in
    two folders, or one file given twice) would merge into duplicate rows that later
    commands refuse, far from the cause.
    """
    seen: dict[str, str] = {}
    for name in files:
        label = Path(name).stem
        if label in seen:
            raise IngestError(
                f"{seen[label]} and {name} would both be series {label!r}; rename one of the files"
            )
        seen[label] = name


def _common_interval(loaded: list[pd.DataFrame]) -> str:
    """The interval shared by the series of several count files, each kept at its own.

    Each file's interval is told from the whole file (``attrs["freq"]``), not from the rows
    --since/--until leave: a window of one row has no step to read. Series at different
    intervals in one frame would be forecast as if they were alike, so the user is asked to
    choose one with --freq instead.
    """
    steps = sorted({parse_freq(one.attrs["freq"]) for one in loaded})
    if len(steps) > 1:
        shown = ", ".join(freq_alias(s) for s in steps)
        raise IngestError(
            f"the count files have different intervals ({shown}); pass --freq to count them on one"
        )
    return freq_alias(steps[0])


def _choose_format(name: str, pattern: str | None, time_format: str, tz: str) -> LogFormat | None:
    if pattern is not None:
        return pattern_format(pattern, time_format=time_format, tz=tz)
    if name == "auto":
        return None
    return builtin_format(name)  # a JSON time key is found in the first lines read


def _run(
    files: list[str],
    freq: str,
    fmt: LogFormat | None,
    by: list[str],
    path_depth: int,
    gap: str,
    since: pd.Timestamp | None,
    until: pd.Timestamp | None,
    unique_id: str,
    engine: Engine,
) -> IngestResult:
    total = sum(Path(f).stat().st_size for f in files if f != "-" and Path(f).is_file())
    with tqdm(
        total=total or None, unit="B", unit_scale=True, disable=not sys.stderr.isatty(), leave=False
    ) as bar:
        return ingest_logs(
            files,
            freq=freq,
            log_format=fmt,
            by=by,
            path_depth=path_depth,
            gap=_gap(gap),
            since=since,
            until=until,
            unique_id=unique_id,
            progress=bar.update,
            engine=engine,
        )


def describe_report(report: IngestReport) -> str:
    """The line accounting, malformed reasons and examples, as people read them."""
    lines = [
        f"read {report.lines:,} lines from {len(report.sources)} file(s), format {report.format}: "
        f"{report.parsed:,} parsed + {report.malformed_total:,} malformed"
    ]
    for reason, count in report.malformed.items():
        if count:
            lines.append(f"  {reason}: {count:,}")
            lines.extend(f"    e.g. {example}" for example in report.examples.get(reason, []))
    return "\n".join(lines)


def describe_series(series: pd.DataFrame, freq: str) -> str:
    """Requests, span, peak and missing intervals of an ingested series frame."""
    if series.empty:
        return "no request was counted"
    total = series.groupby("ds")["y"].sum(min_count=1)
    missing = int(total.isna().sum())
    # A quiet or wholly missing series has no peak (idxmax fails on all-NaN).
    peak = (
        f"peak {_amount(total.max())} per {freq} at {total.idxmax():%Y-%m-%d %H:%M} UTC"
        if total.max() > 0
        else "no peak"
    )
    return (
        f"{series['unique_id'].nunique()} series, {len(total):,} intervals of {freq} from "
        f"{total.index.min():%Y-%m-%d %H:%M} to {total.index.max():%Y-%m-%d %H:%M} UTC; "
        f"{_amount(total.sum())} requests; {peak}; {missing:,} intervals missing (gaps)"
    )


def _amount(value: float) -> str:
    """A count as read: whole with thousands separators, a fraction (a count file of
    averaged rates keeps them) to two decimals or three digits; ``int`` printed 0.4 as 0."""
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3g}"
