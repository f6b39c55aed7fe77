"""``surgecast decisions``: read the decision log: a scaler's decisions, and why one was made."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pandas as pd
import typer
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.util import asbool

from controller.decisions import DecisionLog, DecisionRecord, shown_url
from controller.explain import applied_status, explain, format_number
from controller.review import count_back, wall_time
from controller.spec import parse_duration
from forecaster._cli_common import fail, zone_option

DB_ENV = "SURGECAST_DECISION_DB"
DEFAULT_DB = "sqlite:///surgecast-decisions.db"
DB_HELP = "Decision log: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB."
TIME_EXAMPLE = "2026-11-20 09:41"

app = typer.Typer(
    help="Read the decision log: what each scaler decided, and why.", no_args_is_help=True
)


@app.command("list")
def list_command(
    scaler: str = typer.Argument(..., metavar="NS/NAME", help="The PredictiveScaler."),
    since: str = typer.Option(
        "24h", "--since", help=f"A duration back from now (24h) or a time ({TIME_EXAMPLE})."
    ),
    until: str | None = typer.Option(
        None, "--until", help="A duration back from now or a time (default: now)."
    ),
    reason: str | None = typer.Option(
        None, "--reason", help="Only this reason code, or family (ScaleUp, FallbackReactive)."
    ),
    limit: int = typer.Option(10_000, "--limit", help="Show at most the newest this many."),
    tz: str | None = typer.Option(
        None, "--tz", help="Time zone of the times shown and typed (default: UTC)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the full records as JSON."),
    db: str = typer.Option(DEFAULT_DB, "--db", envvar=DB_ENV, help=DB_HELP),
) -> None:
    """List a scaler's decisions, oldest first."""
    if limit < 1:  # 0 would list nothing and blame the window
        fail(f"--limit {limit} is less than 1")
    zone = zone_option(tz)
    now = datetime.now(UTC)
    start = _moment("--since", since, zone, now)
    end = _until(until, start, since, zone, now)
    with _open(db, scaler) as log:
        # One more than shown, to tell a window of exactly --limit from one cut short.
        records = log.list(scaler, since=start, until=end, reason=reason, limit=limit + 1)
        cut, records = len(records) > limit, records[-limit:]
        newest = None if records else log.list(scaler, reason=reason, limit=1)
    what = f"{reason} decisions" if reason is not None else "decisions"
    if as_json:
        typer.echo(json.dumps([_as_json(record) for record in records], indent=2))
    elif newest is not None and not newest:
        typer.echo(f"no {what} of {scaler} in the log")
    elif newest is not None:
        # Outside the window, or the list would hold it: before --since or from --until on.
        when, advice = newest[0].at, ": widen --since"
        if end is not None and when >= end:
            advice = ", after --until"
        typer.echo(
            f"no {what} of {scaler} in that window; the newest is from {_stamp(when, zone)}{advice}"
        )
    else:
        typer.echo(_table(records, zone))
    if cut:
        typer.echo(f"showing the newest {limit}: narrow --since or raise --limit", err=True)


@app.command("explain")
def explain_command(
    scaler: str = typer.Argument(..., metavar="NS/NAME", help="The PredictiveScaler."),
    at: str = typer.Option(
        ..., "--at", help=f"The minute (or second) to explain, e.g. {TIME_EXAMPLE!r}."
    ),
    tz: str | None = typer.Option(
        None, "--tz", help="Time zone of --at and of the account (default: UTC)."
    ),
    db: str = typer.Option(DEFAULT_DB, "--db", envvar=DB_ENV, help=DB_HELP),
) -> None:
    """Explain in plain language the decision in force at a minute.

    That is the last decision made up to the end of that minute, or of that second when
    --at has seconds (a time copied from an alert, a log line or decisions list).
    """
    zone = zone_option(tz)
    asked = moment = _time("--at", at, zone)
    if not _SECONDS.search(at):
        moment += timedelta(minutes=1, microseconds=-1)  # the end of the minute
    elif not _FRACTION.search(at):
        # The end of the second: the list shows 09:41:30 for a decision made at
        # 09:41:30.412, which that very time typed back must reach.
        moment += timedelta(seconds=1, microseconds=-1)
    with _open(db, scaler) as log:
        record = log.at(scaler, moment)
    if record is None:
        fail(f"no decision of {scaler} at or before {_stamp(moment, zone)}")
    typer.echo(explain(record, tz))
    model = record.model_version or "none"
    if record.backtest_score is not None:
        model += f" (backtest score {record.backtest_score:.2f})"
    typer.echo(f"decision {record.id}, {_stamp(record.at, zone)}: {record.reason}, model {model}")
    # A running controller decides every sync period, well within a lead window: a decision
    # older than that was the last one before a silence, not one made for the time asked.
    if asked - record.at > record.window_end - record.window_start:
        typer.echo(
            f"no later decision was recorded up to {_stamp(asked, zone)}, "
            f"{_span(asked - record.at)} on: the controller was not deciding for {scaler} "
            "in between (stopped or not leading; or the scaler invalid or deleted, or its "
            "target gone or scaled to 0 by hand)"
        )


_SECONDS = re.compile(r"\d:\d\d:\d\d|[T ]\d{6}")
"""Seconds in an ISO time (``09:41:00``, ``T094100``). What was typed decides, not the
value: ``09:41:00`` copied from an alert is that second, not the minute it starts."""

_FRACTION = re.compile(r"\d:\d\d:\d\d[.,]\d|[T ]\d{6}[.,]\d")
"""A fraction of a second typed (``09:41:30.5``): the time is then that very instant."""


def _open(db: str, scaler: str | None) -> DecisionLog:
    """The log at ``db``, once it is known to hold decisions (of ``scaler``, when given).

    A missing SQLite file is an error rather than a new empty log: a mistyped path must not
    read as "no decisions".
    """
    if scaler is not None and (
        scaler.count("/") != 1 or scaler.startswith("/") or scaler.endswith("/")
    ):
        fail(f"{scaler!r} is not NAMESPACE/NAME")
    # The URL may carry a password (postgresql+psycopg://oncall:PASSWORD@db/surgecast),
    # and these lines end up in terminals, tickets and CI logs.
    shown = shown_url(db)
    try:
        url = make_url(db)
    except (ArgumentError, ValueError):  # a port that is no number is a ValueError
        fail(f"--db {shown!r} is not a database URL like {DEFAULT_DB}")
    if url.get_backend_name() == "sqlite" and not Path(_sqlite_path(url)).is_file():
        fail(f"no decision log at {_sqlite_path(url)!r}: set --db or {DB_ENV}")
    try:
        log = _read(db, url)
        known = log.scalers()
    except LookupError:
        fail(f"no decision log in {shown} (it has no decisions table): set --db or {DB_ENV}")
    except DBAPIError as exc:  # the driver's own words, without SQLAlchemy's SQL and link
        fail(f"cannot read the decision log {shown}: {' '.join(str(exc.orig).split())}")
    except Exception as exc:  # SQLAlchemy and the drivers raise many kinds; all mean this
        fail(f"cannot read the decision log {shown}: {exc}")
    if not known:
        log.close()
        fail(f"the decision log {shown} is empty")
    if scaler is not None and scaler not in known:
        log.close()
        fail(f"no decisions of {scaler} in {shown}; {_others(scaler, known)}")
    return log


def _read(db: str, url: URL) -> DecisionLog:
    """The log at ``db``, opened to read.

    SQLite reads a log in WAL mode through a ``-shm`` file it creates beside it, so one in
    a directory that cannot be written (a volume mounted read-only, a snapshot) failed with
    "unable to open database file". With no ``-wal`` file there, no writer has the log open
    and everything is in the file itself: it is then read as immutable.
    """
    try:
        return DecisionLog(db, create=False)
    except OperationalError:
        if url.get_backend_name() != "sqlite":
            raise
        path = Path(_sqlite_path(url)).resolve()
        if Path(f"{path}-wal").exists():
            raise
        immutable = URL.create(
            "sqlite", database=f"file:{quote(str(path))}", query={"immutable": "1", "uri": "true"}
        )
        try:
            return DecisionLog(immutable.render_as_string(hide_password=False), create=False)
        except OperationalError:
            pass
        raise


def _sqlite_path(url: URL) -> str:
    """The file a SQLite URL opens. In the URI form (``sqlite:///file:PATH?mode=ro&uri=true``,
    how a read-only copy or a file one may not write is opened) it is the URI's path, not
    the URL's database, ``file:PATH``, which is never a file."""
    database = url.database or ""
    if asbool(url.query.get("uri", False)) and database.startswith("file:"):
        return unquote(urlsplit(database).path)
    return database


MOST_NAMED = 10
"""Scalers an error names at most: a fleet's log holds hundreds, one line must stay short."""


def _others(scaler: str, known: Sequence[str]) -> str:
    """What the log has instead of ``scaler``: every scaler in a small log; in a fleet's,
    the names closest to it (a typo), else those of its namespace, else the first few."""
    if len(known) <= MOST_NAMED:
        return f"it has {', '.join(known)}"
    namespace = scaler.partition("/")[0]
    close = difflib.get_close_matches(scaler, known, n=MOST_NAMED // 2, cutoff=0.8)
    if close:
        return f"did you mean {' or '.join(close)}? (it has {len(known):,} scalers)"
    same = [name for name in known if name.partition("/")[0] == namespace]
    if same:
        named = ", ".join(same[:MOST_NAMED]) + (", ..." if len(same) > MOST_NAMED else "")
        return f"it has {len(known):,} scalers, {len(same):,} in {namespace}: {named}"
    return (
        f"it has {len(known):,} scalers, none in {namespace}: {', '.join(known[:MOST_NAMED])}, ..."
    )


def _moment(option: str, text: str, zone: tzinfo, now: datetime) -> datetime:
    """A duration back from ``now`` (``24h``) or a time.

    Text that is neither gets an error naming both readings: a duration too long to hold
    (``3000000000d``) is then not reported as merely "not a time".
    """
    try:
        back = parse_duration(text)
    except ValueError as not_duration:
        return _time(option, text, zone, also=f", and {not_duration}")
    try:
        return count_back(now, back, text)
    except ValueError as exc:
        fail(f"{option} {exc}")


def _until(
    text: str | None, start: datetime, since: str, zone: tzinfo, now: datetime
) -> datetime | None:
    """``--until`` read as :func:`_moment` reads it, refused unless after ``start``: a
    window swapped (``--since 1h --until 2h``) was searched, empty, and the advice was to
    widen ``--since``."""
    if text is None:
        return None
    end = _moment("--until", text, zone, now)
    if end <= start:
        fail(
            f"--until {text!r} ({_stamp(end, zone)}) is not after --since {since!r} "
            f"({_stamp(start, zone)}): the window holds no time"
        )
    return end


def _time(option: str, text: str, zone: tzinfo, also: str = "") -> datetime:
    """An ISO time; without an offset it is in ``zone``. ``also`` ends the error message.

    A wall time the zone's clocks read twice (falling back) or skipped (springing
    forward) is refused rather than guessed: on-call asking about 01:30 on the night
    clocks go back must get the decision of the 01:30 they mean.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"{option} {text!r} is not a time like {TIME_EXAMPLE!r}{also}")
    if moment.tzinfo is not None:
        return moment
    first, second = (moment.replace(tzinfo=zone, fold=fold) for fold in (0, 1))
    if first.utcoffset() != second.utcoffset():
        earlier, later = sorted((first, second), key=lambda m: m.astimezone(UTC))
        if earlier.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment:
            fail(f"{option} {text!r} did not happen in {zone}: clocks went forward past it")
        fail(
            f"{option} {text!r} happened twice in {zone}, clocks went back: add its UTC "
            f"offset, {earlier.isoformat(' ', 'minutes')} or {later.isoformat(' ', 'minutes')}"
        )
    return first


def _span(length: timedelta) -> str:
    """``2 d 3 h``, ``5 h 12 min``, ``7 min``: the two largest units not zero, rounded down."""
    minutes = int(length.total_seconds() // 60)
    parts = [
        (minutes // 1440, "d"),
        (minutes // 60 % 24, "h"),
        (minutes % 60, "min"),
    ]
    shown = [f"{count} {unit}" for count, unit in parts if count][:2]
    return " ".join(shown) or "under a minute"


def _stamp(moment: datetime, zone: tzinfo) -> str:
    return f"{wall_time(moment, zone, '%Y-%m-%d %H:%M')} {zone}"


def _table(records: Sequence[DecisionRecord], zone: tzinfo) -> str:
    """One line per decision: the columns on-call scans for."""
    rows = [
        {
            # To the second, as on the review page: at the default 30 s sync two decisions
            # share each minute, and explain --at needs the seconds to reach the first.
            f"time ({zone})": wall_time(r.at, zone, "%Y-%m-%d %H:%M:%S"),
            "replicas": (
                f"{r.current_replicas} → {r.replicas}"
                if r.replicas != r.current_replicas
                else str(r.replicas)
            ),
            "reason": r.reason,
            "load": format_number(r.observed_load),
            "forecast peak": format_number(r.forecast_peak),
            "HPA": "-" if r.hpa_replicas is None else str(r.hpa_replicas),
            "applied": applied_status(r),
        }
        for r in records
    ]
    return pd.DataFrame(rows).to_string(index=False)


def _as_json(record: DecisionRecord) -> dict[str, Any]:
    """A record as JSON values: ISO times in UTC, the startup delay in seconds."""
    row = asdict(record)
    row["startup_delay_seconds"] = row.pop("startup_delay").total_seconds()
    for name, value in row.items():
        if isinstance(value, datetime):
            row[name] = value.isoformat()
    return row
