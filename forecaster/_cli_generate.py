"""``surgecast generate``: seeded synthetic portal traffic as an access log and true counts."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import typer

from forecaster._cli_common import fail, zone_option
from forecaster.frames import write_frame
from forecaster.generate import SERVICES, TrafficProfile, generate_traffic, write_access_log
from forecaster.ingest import IngestError, parse_freq

app = typer.Typer()


MAX_DAYS = 400
"""The generator holds the whole span in memory, about 6 MB a day at the default peak: ten
years (the old bound) needed over 20 GB, a year and a month takes under 3 GB."""

MAX_PEAK_RPS = 200.0
"""The log is written six hours at a time, and a chunk holds every request in it: about
6 MB per request/s of peak on an ordinary day and 19 MB on a deadline day (4x). At 200 a
deadline day takes about 4 GB; 2,000 went past 7 GB within a minute of an ordinary day and
1e9 was a "cannot allocate 6.6 TiB" traceback."""


@app.command()
def generate(
    output: Path = typer.Option(
        ..., "-o", "--output", help="Access log to write (.gz compresses)."
    ),
    start: str = typer.Option("2026-10-08", "--start", help="First local day, YYYY-MM-DD."),
    days: int = typer.Option(28, "--days", help="Number of days."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same bytes."),
    peak_rps: float = typer.Option(
        5.0,
        "--peak-rps",
        help=f"Requests/s at an ordinary working-day peak (at most {MAX_PEAK_RPS:g}).",
    ),
    tz: str = typer.Option("Asia/Shanghai", "--tz", help="Local time zone of the service."),
    service: str = typer.Option(
        "pension", "--service", help="pension, tax or card: label and paths."
    ),
    deadline: list[str] = typer.Option(
        [], "--deadline", help="A policy deadline day (repeatable)."
    ),
    counts_out: Path | None = typer.Option(
        None, "--counts-out", help="Also write the true counts per --freq (.csv or .parquet)."
    ),
    freq: str = typer.Option(
        "1min", "--freq", help="Interval of --counts-out: 1s, 10s, 1min, 5min, 1h, ..."
    ),
) -> None:
    """Write a realistic combined-format access log of a public-service portal.

    Working-day peaks at 9-11 and 14-17 local time with a lunch dip, weekends at about a
    third, CN public holidays and make-up working days, month-end and deadline surges,
    flash crowds, maintenance windows with no traffic, bursty noise and slow growth.
    """
    try:
        first_day = date.fromisoformat(start)
        deadlines = tuple(date.fromisoformat(d) for d in deadline)
    except ValueError as exc:
        fail(f"bad date: {exc}")
    if days <= 0 or days > MAX_DAYS:
        fail(f"--days must be between 1 and {MAX_DAYS} (generate longer spans in parts)")
    last_day = first_day + timedelta(days=days - 1)
    for day in deadlines:
        # one outside the span (a typo in the year or month) was left out without a word;
        # the day after the last still counts, as its eve is in the span
        if not first_day <= day <= last_day + timedelta(days=1):
            fail(f"--deadline {day} is outside the {days} days from {first_day} to {last_day}")
    if not 0 < peak_rps < math.inf:  # NaN and inf were numpy's "lam value too large"
        fail("--peak-rps must be a positive number")
    if peak_rps > MAX_PEAK_RPS:
        fail(
            f"--peak-rps {peak_rps:g} is more than {MAX_PEAK_RPS:g}: the generator holds six"
            " hours of requests in memory at a time (about 19 MB per request/s on a deadline day)"
        )
    if seed < 0:  # numpy's own words: "expected non-negative integer"
        fail("--seed must be 0 or more")
    if service not in SERVICES:  # any other name silently wrote the pension portal's paths
        fail(f"--service {service!r} is not one of {', '.join(SERVICES)}")
    zone_option(tz)  # an unknown zone was a ZoneInfoNotFoundError traceback
    if not output.parent.exists():
        fail(f"{output.parent}: no such directory")
    if counts_out is not None:  # found after generating, these were minutes lost
        if counts_out.suffix not in (".csv", ".parquet"):
            fail(f"{counts_out}: --counts-out must end in .csv or .parquet")
        if not counts_out.parent.is_dir():
            fail(f"{counts_out.parent}: no such directory")
        try:
            parse_freq(freq)
        except IngestError as exc:
            fail(str(exc))
    profile = TrafficProfile(service=service, tz=tz, peak_rps=peak_rps, deadlines=deadlines)
    try:
        traffic = generate_traffic(profile, first_day, days, seed=seed)
        if counts_out is not None:
            write_frame(traffic.true_counts(freq), counts_out)
        lines = write_access_log(traffic, output, seed=seed)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo(f"wrote {lines:,} requests over {days} days to {output}", err=True)
