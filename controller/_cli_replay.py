"""``surgecast replay``: a recorded series through the predictive policy, the HPA and an oracle."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer
from pandas.tseries.frequencies import to_offset

from controller.decisions import DecisionLog, DecisionRecord, record_from_decision
from controller.policy import Decision, PolicySpec, lead_time, needed_replicas
from controller.replay import POLICIES, ReplayResult, ReplaySettings, replay
from controller.report import summary_table, write_report
from controller.spec import parse_duration
from forecaster._cli_common import fail
from forecaster.frames import read_series, series_freq, write_frame
from forecaster.models import SeasonalQuantile

app = typer.Typer()


@app.command("replay")
def replay_command(
    series: Path = typer.Option(..., "--series", help="Long-format series (.csv or .parquet)."),
    capacity_per_replica: float = typer.Option(
        ...,
        "--capacity-per-replica",
        help="Requests per interval one pod serves (the series' unit).",
    ),
    startup_delay: str = typer.Option(
        "3m", "--startup-delay", help="From asking for a pod to it serving."
    ),
    start: str = typer.Option(
        ..., "--start", help="Replay from this UTC time; earlier data is history."
    ),
    end: str | None = typer.Option(
        None, "--end", help="Stop before this UTC time (default: the end)."
    ),
    policy: str = typer.Option("all", "--policy", help="predictive, hpa, oracle or all."),
    retrain_every: str = typer.Option(
        "1d", "--retrain-every", help="How often the model is refitted."
    ),
    quantile: float = typer.Option(
        0.9, "--quantile", help="Forecast quantile the predictive policy covers."
    ),
    hpa_target: float = typer.Option(0.7, "--hpa-target", help="The HPA's target utilisation."),
    min_replicas: int = typer.Option(1, "--min-replicas"),
    max_replicas: int = typer.Option(10_000, "--max-replicas"),
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
        None, "--scaler", help="Scaler name in the decision log (default: replay/SERIES-ID)."
    ),
) -> None:
    """Replay a series and compare policies on unserved requests and replica-minutes."""
    policies = list(POLICIES) if policy == "all" else [policy]
    if policy != "all" and policy not in POLICIES:
        fail(f"unknown --policy {policy!r}; choose predictive, hpa, oracle or all")
    if decision_log is not None and "predictive" not in policies:
        fail("--decision-log records the predictive policy: use --policy predictive or all")
    try:
        frame = read_series(series)
        if unique_id is not None:
            frame = frame[frame["unique_id"] == unique_id]
        elif frame["unique_id"].nunique() > 1:
            fail(f"{series} has {frame['unique_id'].nunique()} series; pick one with --id")
        if frame.empty:
            fail(f"no series {unique_id!r} in {series}")
        settings = ReplaySettings(
            capacity_per_replica=capacity_per_replica,
            startup_delay=parse_duration(startup_delay),
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            quantile=quantile,
            retrain_every=parse_duration(retrain_every),
            hpa_target=hpa_target,
        )
        result = replay(
            frame,
            pd.Timestamp(start),
            settings,
            policies=policies,
            model_factory=lambda: SeasonalQuantile(country=country, tz=tz, normalize=True),
            end=pd.Timestamp(end) if end else None,
        )
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    if decisions_out is not None:
        write_frame(result.decisions, decisions_out)
    if decision_log is not None:
        name = scaler or f"replay/{frame['unique_id'].iloc[0]}"
        records = replay_records(result, frame, name, SeasonalQuantile.__name__)
        try:
            with DecisionLog(decision_log) as log:
                log.record_many(records)
        except Exception as exc:  # SQLAlchemy and the drivers raise many kinds; all mean this
            fail(f"cannot write the decision log {decision_log}: {exc}")
    if html_out is not None:
        write_report(result, html_out, f"Replay of {series.name}")
    if as_json:
        typer.echo(json.dumps(result.summary.to_dict(orient="records"), indent=2))
    else:
        typer.echo(summary_table(result.summary))


def replay_records(
    result: ReplayResult, series: pd.DataFrame, scaler: str, model_version: str
) -> list[DecisionRecord]:
    """The predictive policy's decisions of a replay as ForecastOnly decision records.

    The replay keeps, per interval, the chosen count, the reason, the reactive floor and
    the forecast peak; the rest is derived here: the count before the decision is the
    previous interval's (the first interval's is its ready count: the replay starts warm,
    every pod ready), the load observed is the previous interval's, and the bounds are the
    settings' (a replay has no overrides). The policy's clamps and message are not in the
    replay's output, so they are recorded empty. ``hpa_replicas`` is the HPA run's count at
    the same interval when it ran.
    """
    settings = result.settings
    step = series_freq(series)
    spec = PolicySpec(
        min_replicas=settings.min_replicas,
        max_replicas=settings.max_replicas,
        capacity_per_replica=settings.capacity_per_replica,
        startup_delay=settings.startup_delay,
        sync_period=step,
        quantile=settings.quantile,
    )
    runs = result.decisions
    rows = runs[runs["policy"] == "predictive"].reset_index(drop=True)
    hpa = runs[runs["policy"] == "hpa"].set_index("ds")["replicas"]
    load = series.set_index("ds")["y"]
    before = rows["replicas"].shift(1).fillna(rows["ready"]).astype(int)
    target = f"Series/{series['unique_id'].iloc[0]}"
    unit = f"req/{to_offset(step).freqstr}"
    records = []
    for row, current in zip(rows.itertuples(index=False), before, strict=True):
        observed = float(load.get(row.ds - step, np.nan))
        decision = _replayed_decision(row, int(current), observed, spec)
        hpa_replicas = hpa.get(row.ds)
        record = record_from_decision(
            decision,
            scaler=scaler,
            target=target,
            mode="ForecastOnly",
            ready_replicas=int(row.ready),
            spec=spec,
            forecast=None,
            hpa_replicas=None if hpa_replicas is None else int(hpa_replicas),
            at=row.ds.to_pydatetime(),
            load_unit=unit,
        )
        records.append(replace(record, model_version=model_version))
    return records


def _replayed_decision(row: Any, current: int, observed: float, spec: PolicySpec) -> Decision:
    """A replay row as a policy :class:`Decision` (see :func:`replay_records`)."""
    peak = float(row.forecast_peak) if np.isfinite(row.forecast_peak) else None
    predictive = needed_replicas(peak, spec.capacity_per_replica) if peak is not None else None
    load = observed if np.isfinite(observed) else None
    floor = int(row.reactive_floor)
    if predictive is None and load is None:
        recommendation = current  # no forecast, no load: the policy keeps the count
    else:
        recommendation = max(predictive or 0, floor)
    family, _, detail = str(row.reason).partition("/")
    return Decision(
        replicas=int(row.replicas),
        reason=str(row.reason),
        message="",
        recommendation=recommendation,
        reactive_floor=floor,
        predictive=predictive,
        forecast_peak=peak,
        window_start=row.ds.to_pydatetime(),
        window_end=(row.ds + lead_time(spec)).to_pydatetime(),
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        current_replicas=current,
        observed_load=load,
        fallback=detail if family == "FallbackReactive" else None,
    )
