"""``surgecast train`` and ``surgecast forecast``: fit models into a store, forecast from it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import typer

from forecaster import store
from forecaster._cli_common import (
    ENGINE_OPTION,
    SCHEDULER_OPTION,
    check_model_options,
    fail,
    load_models,
    steps,
)
from forecaster.engine import open_engine
from forecaster.frames import (
    quantile_columns,
    read_events,
    read_series,
    series_freq,
    write_frame,
)
from forecaster.models import registry
from forecaster.training import Trained, forecast, train

app = typer.Typer()

MAX_HORIZON = pd.Timedelta(days=400)
"""The furthest ``forecast`` reaches, as ``generate --days`` is capped: no sizing question
needs more, and a typo of a few digits more asked for years of intervals, minutes of CPU and
gigabytes of memory before the first line was written."""

MAX_HORIZON_STEPS = 576_000
"""The most intervals ``forecast`` computes per series: 400 days of minutes, a few seconds
and under 1 GB for one series; a 1-second series would otherwise get 34 million."""


@app.command("train")
def train_command(
    series_path: Path = typer.Option(
        ..., "--series", help="Long-format series (.csv or .parquet)."
    ),
    model: str = typer.Option("auto", "--model", help="auto, or one of the model names."),
    out: str = typer.Option(..., "--out", "-o", help="Model store: a directory or an fsspec URL."),
    horizon: str = typer.Option(
        "1h", "--horizon", help="Backtest horizon: intervals (48) or a duration (2h)."
    ),
    folds: int = typer.Option(3, "--folds", min=1, help="Backtest cutoffs per model."),
    every: str | None = typer.Option(
        None, "--every", help="Between cutoffs (default: the horizon)."
    ),
    upper: float = typer.Option(0.9, "--quantile", help="The upper quantile scored."),
    season: str = typer.Option("1D", "--season", help="Season of the MASE scale."),
    tz: str | None = typer.Option(None, "--tz", help="Service time zone for day types."),
    country: str | None = typer.Option(None, "--country", help="Holiday calendar, e.g. CN."),
    events_path: Path | None = typer.Option(
        None, "--events", help="Event calendar: ds, optionally unique_id, one column per event."
    ),
    engine_name: str = ENGINE_OPTION,
    scheduler: str | None = SCHEDULER_OPTION,
) -> None:
    """Train every series of a file and store the models as a new version in ``--out``.

    With ``--model auto`` each series gets the model with the best backtest selection score
    (as ``surgecast backtest`` prints); the scores are stored with the models.
    """
    check_model_options(upper, season, tz, country)
    _check_store_url(out)
    candidates = registry(country=country, tz=tz, include_slow=model != "auto")
    try:
        frame = read_series(series_path)
        events = read_events(events_path) if events_path else None
        step = series_freq(frame)
        h = steps("--horizon", horizon, step)
        stride = steps("--every", every, step) if every else None
        with open_engine(engine_name, scheduler) as engine:
            trained = train(
                frame, candidates, model, h, folds, stride, upper, season, events, engine
            )
    except (ValueError, OSError) as exc:
        fail(str(exc))
    per_series = _series_metadata(frame, trained)
    metadata = {
        "step": f"{int(step.total_seconds())}s",
        "series": per_series,
        "training": {
            "model": model,
            "horizon": h,
            "folds": folds,
            "every": stride,
            "quantile": upper,
            "season": season,
            "country": country,
            "tz": tz,
            "events": [] if events is None else sorted(set(events.columns) - {"ds", "unique_id"}),
        },
        "backtest": None if trained.scores is None else trained.scores.to_dict(orient="records"),
        "note": trained.note,
    }
    previous = _in_force(out)
    try:
        version = store.save(
            trained.models, out, metadata, store.fingerprint(frame), now=datetime.now(UTC)
        )
    except OSError as exc:  # no permission, a file where a folder goes, a full disk
        fail(f"cannot write the model store {out}: {exc}")
    if trained.note:
        typer.echo(f"note: {trained.note}", err=True)
    if previous is not None:
        _say_what_is_no_longer_in_force(previous, per_series)
    rows = pd.DataFrame([{"unique_id": uid, **info} for uid, info in per_series.items()]).fillna("")
    typer.echo(rows.to_string(index=False))
    typer.echo(f"stored version {version} in {out}")


def _check_store_url(out: str) -> None:
    """Refuse an ``-o`` no save could write before the training it would throw away: a
    protocol fsspec does not know or lacks the package for (``s3://`` without s3fs), or a
    path that is a file. Found at the save, these were tracebacks after the whole fleet had
    been backtested and fitted."""
    if not out.strip():
        fail("-o is empty; give a directory or an fsspec URL for the model store")
    try:
        fs, root = fsspec.core.url_to_fs(out)
    except (ValueError, ImportError) as exc:
        fail(f"-o {out}: {exc}")
    if fs.isfile(root):
        fail(f"-o {out} is a file; a model store is a directory")


def _in_force(out: str) -> dict[str, Any] | None:
    """The manifest of the version in force in ``out``, if there is one that can be read."""
    try:
        return store.manifest(out)
    except (store.StoreError, OSError):
        return None


def _say_what_is_no_longer_in_force(previous: dict[str, Any], trained: dict[str, Any]) -> None:
    """Warn when the version this training replaced had series this one lacks.

    ``surgecast forecast`` reads the version in force, which holds only the last file's
    series: training a fleet in batches into one store silently left every batch but the
    last without forecasts.
    """
    series = previous.get("series")
    gone = sorted(set(series) - set(map(str, trained))) if isinstance(series, dict) else []
    if gone:
        shown = ", ".join(gone[:5]) + (f" and {len(gone) - 5} more" if len(gone) > 5 else "")
        typer.echo(
            f"warning: version {previous['version']}, in force until now, also had models of"
            f" {len(gone)} series this file lacks ({shown}); forecasts now come from this"
            f" version only (train them together, or read the old one with --version"
            f" {previous['version']})",
            err=True,
        )


def _series_metadata(frame: pd.DataFrame, trained: Trained) -> dict[str, dict[str, Any]]:
    """Per series: the model, training window, data seen, score and any cold-start note."""
    info = {}
    scores = trained.scores
    for uid, one in frame.groupby("unique_id", sort=True):
        name = trained.assignment[uid]
        reasons = getattr(trained.models[name], "fallback_reason_", {})
        score = None
        if scores is not None:
            row = scores[(scores["unique_id"] == uid) & (scores["model"] == name)]
            score = float(row["selection_score"].iloc[0]) if len(row) else None
        info[uid] = {
            "model": name,
            "start": one["ds"].min().isoformat(),
            "end": one["ds"].max().isoformat(),
            "observed": int(one["y"].notna().sum()),
            "selection_score": score,
            "fallback": reasons.get(uid),
        }
    return info


@app.command("forecast")
def forecast_command(
    model_dir: str = typer.Option(
        ..., "--model", help="Model store written by surgecast train (directory or URL)."
    ),
    horizon: str = typer.Option(
        ..., "--horizon", help="How far: intervals (48) or a duration (48h)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Forecast file (.csv or .parquet)."),
    quantiles: str = typer.Option(
        "0.5,0.9", "--quantiles", help="Comma-separated quantile levels."
    ),
    version: str | None = typer.Option(
        None, "--version", help="A stored version (default: the latest)."
    ),
    events_path: Path | None = typer.Option(
        None, "--events", help="Event calendar covering the forecast window."
    ),
) -> None:
    """Forecast every stored series from the end of its training data.

    Writes ``unique_id, ds, yhat`` and one column per quantile (``q0.9``); a model store
    that fails its checks (tampered, truncated, from a newer format) is refused.
    """
    try:
        levels = tuple(float(q) for q in quantiles.split(","))
    except ValueError:
        fail(f"--quantiles {quantiles!r} is not a comma-separated list of numbers")
    if not all(0 < q < 1 for q in levels):
        fail(f"--quantiles {quantiles!r}: every level must be strictly between 0 and 1")
    columns = quantile_columns(sorted(set(levels)))
    if len(set(columns)) < len(columns) or "q1" in columns:
        # 0.99999999999 was written as column q1, and 0.1 and 0.100000000001 as one q0.1
        # column: one level's forecast lost without a word
        fail(
            f"--quantiles {quantiles!r} would be columns {', '.join(columns)}: a level is"
            " named to 10 significant digits, so it must differ from the others and from 1"
            " within them"
        )
    stored, events = load_models(model_dir, version, events_path)
    if stored.step is None:
        fail(f"{model_dir}: the model store records no interval (step), and its models know none")
    h = steps("--horizon", horizon, stored.step)
    if h > MAX_HORIZON_STEPS or h * stored.step > MAX_HORIZON:
        fail(
            f"--horizon {horizon!r} is {h:,} intervals ({h * stored.step}); forecast reaches"
            f" at most {MAX_HORIZON.days} days and {MAX_HORIZON_STEPS:,} intervals"
        )
    try:
        frame = forecast(stored.models, h, levels, events)
        write_frame(frame, out)
    except (ValueError, OSError) as exc:  # a calendar without the models' events; no folder
        fail(str(exc))
    typer.echo(
        f"{frame['unique_id'].nunique()} series x {h} intervals from version {stored.version}"
        f" written to {out}"
    )
