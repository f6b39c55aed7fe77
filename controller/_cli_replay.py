"""``surgecast replay``: a recorded series through the predictive policy, the HPA and an oracle."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pandas as pd
import typer

from controller.decisions import DecisionLog, DecisionRecord, shown_url
from controller.replay import POLICIES, ReplaySettings, replay, replay_records
from controller.report import summary_table, write_report
from controller.spec import MAX_HISTORY, parse_duration
from forecaster._cli_common import check_model_options, fail
from forecaster.frames import read_series, write_frame
from forecaster.models import SeasonalQuantile

app = typer.Typer()

MAX_REPLICAS = 2**31 - 1
"""The most replicas Kubernetes can hold (an int32): no scaler asks for more."""


@app.command("replay")
def replay_command(
    series: Path = typer.Option(..., "--series", help="Long-format series (.csv or .parquet)."),
    capacity_per_replica: float = typer.Option(
        ...,
        "--capacity-per-replica",
        help="Requests per interval one pod serves (the series' unit).",
    ),
    startup_delay: str = typer.Option(
        "3m",
        "--startup-delay",
        help="From asking for a pod to it serving: a duration like 90s, 3m or 1h30m.",
    ),
    start: str = typer.Option(
        ...,
        "--start",
        help="Replay from this time, UTC unless it has an offset; earlier data is history.",
    ),
    end: str | None = typer.Option(
        None, "--end", help="Stop before this time, UTC unless it has an offset (default: the end)."
    ),
    policy: str = typer.Option("all", "--policy", help="predictive, hpa, oracle or all."),
    retrain_every: str = typer.Option(
        "1d",
        "--retrain-every",
        help="How often the model is refitted: a duration like 6h, 1d or 12h30m.",
    ),
    quantile: float = typer.Option(
        0.9, "--quantile", help="Forecast quantile the predictive policy covers."
    ),
    hpa_target: float = typer.Option(
        0.7, "--hpa-target", help="The HPA's target utilisation, a fraction: 0.7 is 70 %."
    ),
    min_replicas: int = typer.Option(
        1, "--min-replicas", help="The fewest replicas every policy keeps (at least 1)."
    ),
    max_replicas: int = typer.Option(
        10_000, "--max-replicas", help="The most replicas any policy asks for."
    ),
    unique_id: str | None = typer.Option(
        None, "--id", help="Which series, when the file has several."
    ),
    tz: str | None = typer.Option(
        None, "--tz", help="Service time zone for day types (default: UTC)."
    ),
    country: str | None = typer.Option(
        None, "--country", help="Holiday calendar, e.g. CN (default: none)."
    ),
    decisions_out: Path | None = typer.Option(
        None, "--decisions-out", help="Per-interval decisions (.csv/.parquet)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    html_out: Path | None = typer.Option(
        None, "--html", help="Write a self-contained HTML report."
    ),
    decision_log: str | None = typer.Option(
        None,
        "--decision-log",
        help="Also record each predictive decision (ForecastOnly) in this decision log: "
        "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB.",
    ),
    scaler: str | None = typer.Option(
        None,
        "--scaler",
        help="Scaler name in the decision log, NAMESPACE/NAME (default: replay/SERIES-ID, "
        "each / in the series id written _).",
    ),
) -> None:
    """Replay a series and compare policies on unserved requests and replica-minutes."""
    settings = _settings(
        capacity_per_replica,
        startup_delay,
        min_replicas,
        max_replicas,
        quantile,
        retrain_every,
        hpa_target,
    )
    # the replay's model has no --season (its day is fixed): only the calendar options count
    check_model_options(quantile, "1D", tz, country)
    _writable("--decisions-out", decisions_out, (".csv", ".parquet"))
    _writable("--html", html_out, ())
    first = _utc("--start", start)
    last = _utc("--end", end) if end else None  # "" meant the end before, so it still does
    if last is not None and _in_utc(last) <= _in_utc(first):
        # the replay blamed --start alone: "must fall ... before the end (the series runs ...)"
        fail(f"--end {end!r} is not after --start {start!r}: the replay window holds no time")
    policies = list(POLICIES) if policy == "all" else [policy]
    if policy != "all" and policy not in POLICIES:
        fail(f"unknown --policy {policy!r}; choose predictive, hpa, oracle or all")
    if decision_log is not None and "predictive" not in policies:
        fail("--decision-log records the predictive policy: use --policy predictive or all")
    if scaler is not None and not _is_scaler_name(scaler):
        fail(
            f"--scaler {scaler!r} is not NAMESPACE/NAME, as the decisions and review commands read"
        )
    try:
        frame = read_series(series)
        if unique_id is not None:
            frame = frame[frame["unique_id"] == unique_id]
        elif frame["unique_id"].nunique() > 1:
            fail(f"{series} has {frame['unique_id'].nunique()} series; pick one with --id")
        if frame.empty:  # "no series None in FILE" said nothing of an empty file
            fail(
                f"no series {unique_id!r} in {series}"
                if unique_id is not None
                else f"{series} has no rows"
            )
        result = replay(
            frame,
            first,
            settings,
            policies=policies,
            model_factory=lambda: SeasonalQuantile(country=country, tz=tz, normalize=True),
            end=last,
        )
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    if decisions_out is not None:
        try:
            write_frame(result.decisions, decisions_out)
        except OSError as exc:
            fail(f"cannot write --decisions-out {decisions_out}: {exc}")
    if decision_log is not None:
        # a series split by path ("path=/api") would name a scaler that `decisions list`,
        # `explain` and `review` refuse as not NAMESPACE/NAME: its decisions were unreadable
        name = scaler or f"replay/{str(frame['unique_id'].iloc[0]).replace('/', '_')}"
        records = replay_records(result, frame, name, SeasonalQuantile.__name__)
        try:
            with DecisionLog(decision_log) as log:
                _refuse_overlap(log, name, records)
                log.record_many(records)
        except typer.Exit:
            raise
        except Exception as exc:  # SQLAlchemy and the drivers raise many kinds; all mean this
            fail(f"cannot write the decision log {shown_url(decision_log)}: {exc}")
    if html_out is not None:
        try:
            write_report(result, html_out, f"Replay of {series.name}")
        except OSError as exc:
            fail(f"cannot write --html {html_out}: {exc}")
    if as_json:
        # A metric that does not apply (cost vs oracle without the oracle) is null: NaN is
        # not JSON, and strict parsers refuse the whole document.
        summary = result.summary.astype(object).where(result.summary.notna(), None)
        typer.echo(json.dumps(summary.to_dict(orient="records"), indent=2, allow_nan=False))
    else:
        typer.echo(summary_table(result.summary))


def _is_scaler_name(name: str) -> bool:
    """``NAMESPACE/NAME``: one slash, with something on both sides."""
    namespace, _, rest = name.partition("/")
    return bool(namespace) and bool(rest) and "/" not in rest


def _refuse_overlap(log: DecisionLog, scaler: str, records: Sequence[DecisionRecord]) -> None:
    """Stop before a second replay of the same intervals lands under the same name: its
    decisions would interleave with the first run's, and ``decisions list``, ``explain`` and
    ``review`` would show the two runs as one."""
    if not records:
        return
    first, last = records[0].at, records[-1].at
    if log.list(scaler, since=first, until=last + timedelta(microseconds=1), limit=1):
        fail(
            f"the decision log already has decisions of {scaler} between {first:%Y-%m-%d %H:%M}"
            f" and {last:%Y-%m-%d %H:%M} UTC: record this run under another --scaler or in"
            " another log"
        )


def _settings(
    capacity_per_replica: float,
    startup_delay: str,
    min_replicas: int,
    max_replicas: int,
    quantile: float,
    retrain_every: str,
    hpa_target: float,
) -> ReplaySettings:
    """The replay's settings, or one line on the first option out of range.

    The replay divides by the capacity and the HPA target and clamps to min/max as given,
    so a bad value would crash it or compare the policies on nonsense without a word. The
    comparisons are written to refuse NaN too.
    """
    if not 0 < capacity_per_replica < math.inf:
        fail(f"--capacity-per-replica {capacity_per_replica:g} is not a number > 0")
    if not 0 < hpa_target <= 1:
        fail(f"--hpa-target {hpa_target:g} is not a utilisation in (0, 1]")
    if not 0 < quantile < 1:
        fail(f"--quantile {quantile:g} is not a quantile in (0, 1)")
    if min_replicas < 1:
        fail(f"--min-replicas {min_replicas} is less than 1")
    for option, value in (("--min-replicas", min_replicas), ("--max-replicas", max_replicas)):
        if value > MAX_REPLICAS:
            fail(f"{option} {value} is more than Kubernetes' {MAX_REPLICAS:,} (an int32)")
    if min_replicas > max_replicas:
        fail(f"--min-replicas {min_replicas} is greater than --max-replicas {max_replicas}")
    return ReplaySettings(
        capacity_per_replica=capacity_per_replica,
        startup_delay=_duration("--startup-delay", startup_delay),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        quantile=quantile,
        retrain_every=_duration("--retrain-every", retrain_every),
        hpa_target=hpa_target,
    )


def _writable(option: str, path: Path | None, suffixes: tuple[str, ...]) -> None:
    """Refuse an output the replay could not write, before the replay runs: found after
    it, a wrong extension or a missing directory was a traceback and the run was lost."""
    if path is None:
        return
    if suffixes and path.suffix not in suffixes:
        fail(f"{option} {path}: unsupported extension {path.suffix!r}; use {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        fail(f"{option} {path}: no such directory {str(path.parent)!r}")


def _duration(option: str, text: str) -> timedelta:
    """A positive duration: a zero startup delay or retrain interval is a typo, not a plan.

    At most 400 days, as a scaler's history window: far longer ones (999999999d) were an
    OverflowError traceback or "Python int too large to convert to C long".
    """
    try:
        value = parse_duration(text)
    except ValueError as exc:
        fail(f"{option} {exc}")
    if value <= timedelta(0):
        fail(f"{option} {text} is not positive")
    if value > MAX_HISTORY:
        fail(f"{option} {text} is longer than {MAX_HISTORY.days}d")
    return value


def _in_utc(moment: pd.Timestamp) -> pd.Timestamp:
    """A time from :func:`_utc` as an aware UTC one, to compare a naive with an offset one."""
    return moment.tz_localize("UTC") if moment.tz is None else moment.tz_convert("UTC")


def _utc(option: str, text: str) -> pd.Timestamp:
    """A time, UTC unless it has an offset (:func:`controller.replay.replay` converts one
    that has to the series' naive UTC)."""
    try:
        moment = pd.Timestamp(text)
    except ValueError:
        moment = pd.NaT
    if pd.isna(moment):  # pandas reads "" as NaT
        fail(f"{option} {text!r} is not a time like 2026-10-14 06:00")
    return moment
