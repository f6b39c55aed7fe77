"""Helpers shared by the command modules."""

from __future__ import annotations

from datetime import UTC, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import typer
from pandas.tseries.frequencies import to_offset

from forecaster.frames import read_events

if TYPE_CHECKING:
    from forecaster.store import StoredModels

ENGINE_OPTION = typer.Option(
    "local",
    "--engine",
    help="local (this process) or dask (a Dask cluster: chunks of series in parallel, "
    "gradient boosting one fold per task; the same scores and models as local).",
)
SCHEDULER_OPTION = typer.Option(
    None,
    "--scheduler",
    help="With --engine dask: a running scheduler (tcp://host:8786); default a local "
    "cluster, one worker process per core.",
)
"""The options of the commands that backtest or train many series (train, backtest)."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear line on stderr and exit; used for every user-fixable error."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def zone_option(tz: str | None) -> tzinfo:
    """The time zone a ``--tz`` names (UTC when none), or one clear line and exit."""
    if not tz:
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe", a folder
        fail(f"--tz {tz!r} is not a time zone like Europe/Berlin or Asia/Shanghai")


def steps(option: str, text: str, step: pd.Timedelta) -> int:
    """A horizon given as a number of intervals (``48``) or a duration (``2h``), at least one
    interval: a forecast of none fails deep in the models."""
    if text.isdigit():
        count = float(text)
    else:
        try:
            count = pd.Timedelta(text) / step
        except ValueError:
            fail(f"{option} {text!r} is neither a number of intervals nor a duration like 2h")
    if not count >= 1 or count != int(count):  # "nan" and "NaT" read as a NaN count
        every = to_offset(step).freqstr  # "h", "5min": a count of one is left unsaid
        every = every if every[0].isdigit() else f"1{every}"
        fail(f"{option} {text!r} is not a whole, positive number of {every} intervals")
    return int(count)


def check_model_options(upper: float, season: str, tz: str | None, country: str | None) -> None:
    """Refuse a bad ``--quantile``, ``--season``, ``--tz`` or ``--country`` before any work.

    Found in a fit, they were tracebacks or, in ``train``, a backtest skipped as if the
    history were short and a model stored anyway.
    """
    if not 0 < upper < 1:
        fail(f"--quantile {upper} is not strictly between 0 and 1")
    try:
        season_ok = pd.Timedelta(season) > pd.Timedelta(0)
    except ValueError:
        season_ok = False
    if not season_ok:
        fail(f"--season {season!r} is not a positive duration like 1D")
    if tz is not None:
        zone_option(tz)
    if country is not None:
        from forecaster.calendar import check_country  # loads holidays: only when asked

        try:
            check_country(country)
        except ValueError:
            fail(f"--country {country!r} has no holiday calendar; use a code such as CN or US")


def load_models(
    model_dir: str, version: str | None, events_path: Path | None
) -> tuple[StoredModels, pd.DataFrame | None]:
    """The stored models and the event calendar to forecast with, or a clear exit.

    Models that learnt events but get no calendar assume none in the forecast window, so
    their surges go unforeseen: a warning says so rather than a quietly low forecast.
    """
    from forecaster import store  # the models' libraries: only commands that load pay

    try:
        stored = store.load(model_dir, version)
        events = read_events(events_path) if events_path else None
    except store.StoreError as exc:
        fail(f"refusing the model store: {exc}")
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    learnt = stored.manifest.get("training", {}).get("events") or []
    if learnt and events is None:
        typer.echo(
            f"warning: the models learnt events ({', '.join(learnt)}); without --events none"
            " is assumed in the forecast window, so their surges are not foreseen",
            err=True,
        )
    return stored, events
