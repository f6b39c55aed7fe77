"""``surgecast demo``: the offline story on built-in synthetic portal traffic.

Each step calls the same library functions as the individual commands, and leaves its
output in the demo folder so a newcomer can open every artefact.
"""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import typer
from threadpoolctl import threadpool_limits

from controller.replay import ReplayResult, ReplaySettings, replay, summarize
from controller.report import summary_table, write_report
from forecaster import store
from forecaster._cli_ingest import describe_report, describe_series
from forecaster.backtest import backtest, score
from forecaster.frames import write_frame
from forecaster.generate import TrafficProfile, generate_traffic, write_access_log
from forecaster.ingest import ingest_logs
from forecaster.models import registry
from forecaster.plots import plot_series

app = typer.Typer()

DEMO_START = date(2026, 10, 12)
DEMO_DAYS = 35
DEMO_DEADLINE = date(2026, 11, 10)
COUNTRY = "CN"  # the portal's holiday calendar; its zone is the profile's
REPLAY_DAY = date(2026, 11, 2)  # the last two weeks, from local midnight
CAPACITY = 20.0  # requests per minute one pod serves
STARTUP = timedelta(minutes=3)
# Real logs are never clean; the demo damages a few lines to show how they are reported.
DAMAGED_LINES = (
    b'10.1.2.3 - - [12/Nov/2026:09:41:07 +0800] "GET /api/pension/sta\n',
    b"\x00\x13\xfe\xff binary junk from a crashed writer\n",
    b"\n",
)


# One thread for the numeric libraries, as the controller's model workers: OpenMP starts a
# thread per core, and next to busy neighbours those spin-wait on each other; gradient
# boosting's fits then ran ten times slower and the demo took half an hour on 2 cores.
@app.command()
@threadpool_limits.wrap(limits=1)
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for every artefact."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic traffic."),
) -> None:
    """Generate five weeks of portal traffic, ingest it, then replay the last two weeks
    through the predictive policy, the HPA and an oracle, and write an HTML report."""
    out.mkdir(parents=True, exist_ok=True)
    profile = TrafficProfile(service="pension", peak_rps=2.0, deadlines=(DEMO_DEADLINE,))
    typer.echo(f"1. generating {DEMO_DAYS} days of synthetic pension-portal traffic (seed {seed})")
    traffic = generate_traffic(profile, DEMO_START, DEMO_DAYS, seed=seed)
    log = out / "access.log.gz"
    written = write_access_log(traffic, log, seed=seed)
    _append_damaged_lines(log)
    typer.echo(f"   {log}: {written:,} requests plus {len(DAMAGED_LINES)} damaged lines")

    typer.echo("2. ingesting the log into per-minute request counts")
    result = ingest_logs(log, freq="1min")
    typer.echo(_indent(describe_report(result.report)))
    typer.echo(_indent(describe_series(result.series, "1min")))
    series_path = out / "series.parquet"
    write_frame(result.series, series_path)
    picture = plot_series(
        result.series, out / "series.png", "Pension portal: requests per minute (UTC)"
    )
    typer.echo(f"   wrote {series_path} and {picture}")

    typer.echo("3. backtesting every model: 14 cutoffs 12 hours apart, forecasting the next hour")
    scores = []
    models = registry(country=COUNTRY, tz=profile.tz)
    for name, make in models.items():
        folds = backtest(
            make(), result.series, horizon=60, folds=14, every=721, quantiles=(0.5, 0.9)
        )
        scores.append(score(folds, result.series, season=1440, upper=0.9).assign(model=name))
    table = pd.concat(scores, ignore_index=True)
    columns = ["model", "mae", "mase", "coverage", "peak_recall", "selection_score"]
    typer.echo(_indent(table[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}")))
    best_scored = table.loc[table["selection_score"].idxmin(), "model"]
    typer.echo(f"   best forecast scores: {best_scored}")

    # Series are in UTC, the portal's days local: 2 November starts at 16:00 UTC on the 1st.
    replay_from = pd.Timestamp(REPLAY_DAY, tz=profile.tz).tz_convert("UTC").tz_localize(None)
    typer.echo(
        f"4. replaying from {REPLAY_DAY:%Y-%m-%d} 00:00 {profile.tz} ({replay_from:%Y-%m-%d %H:%M} "
        f"UTC): {CAPACITY:g} requests/min per pod, pods take "
        f"{STARTUP.total_seconds() / 60:g} min to start; models refitted daily on the past only"
    )
    settings = ReplaySettings(capacity_per_replica=CAPACITY, startup_delay=STARTUP, quantile=0.975)
    baselines = replay(result.series, replay_from, settings, policies=["hpa", "oracle"])
    # Last value is a yardstick for short-range point forecasts; repeated a day ahead with
    # random-walk bands it plans for almost any load, so it is left out of the replay.
    runs = {
        name: replay(result.series, replay_from, settings, ["predictive"], model_factory=make)
        for name, make in models.items()
        if name != "last_value"
    }
    hpa = baselines.summary.set_index("policy").loc["hpa"]
    oracle = baselines.summary.set_index("policy").loc["oracle", "replica_minutes"]
    by_model = pd.DataFrame(
        [{"model": name, **run.summary.iloc[0].to_dict()} for name, run in runs.items()]
    )
    by_model["cost_vs_oracle"] = by_model["replica_minutes"] / oracle
    safe = by_model[by_model["unserved_share"] <= hpa["unserved_share"] * 1.2]
    chosen = (safe if len(safe) else by_model).sort_values("replica_minutes").iloc[0]["model"]
    shown = by_model[["model", "unserved_share", "replica_minutes", "cost_vs_oracle"]].to_string(
        index=False,
        formatters={
            "unserved_share": "{:.3%}".format,
            "replica_minutes": "{:,.0f}".format,
            "cost_vs_oracle": "{:.2f}×".format,
        },
    )
    typer.echo(_indent(shown))
    typer.echo(
        f"   chosen by the replay: {chosen}, the cheapest with unserved requests within 20 % of "
        "the HPA's (judge models by what they do to users and cost, not by point accuracy)"
    )
    decisions = pd.concat([runs[chosen].decisions, baselines.decisions], ignore_index=True)
    final = ReplayResult(decisions, summarize(decisions, pd.Timedelta("1min")), settings)
    write_frame(final.decisions, out / "decisions.csv")
    report = write_report(final, out / "report.html", f"surgecast demo: pension portal, {chosen}")
    typer.echo(_indent(summary_table(final.summary)))
    typer.echo(f"   wrote {out / 'decisions.csv'} and {report}")

    typer.echo(f"5. training {chosen} on all the history into the model store {out / 'models'}")
    model = models[chosen]().fit(result.series)
    # The calendar goes into the manifest as surgecast train writes it: surgecast outlook
    # shows the hours in the training's zone, and in UTC when the manifest names none.
    training = {"model": chosen, "chosen_by": "replay", "tz": profile.tz, "country": COUNTRY}
    version = store.save(
        {chosen: model},
        str(out / "models"),
        {"step": "60s", "training": training},
        store.fingerprint(result.series),
        now=datetime.now(UTC),
    )
    typer.echo(
        f"   stored version {version}; forecast the next day with: surgecast forecast "
        f"--model {out / 'models'} --horizon 24h -o {out / 'forecast.csv'}"
    )


def _append_damaged_lines(log: Path) -> None:
    with gzip.open(log, "ab") as handle:  # a second gzip member: readers concatenate them
        handle.writelines(DAMAGED_LINES)


def _indent(text: str) -> str:
    return "\n".join("   " + line for line in text.splitlines())
