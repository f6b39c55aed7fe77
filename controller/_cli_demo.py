"""``surgecast demo``: the offline story on built-in synthetic portal traffic.

Each step calls the same library functions as the individual commands, and leaves its
output in the demo folder so a newcomer can open every artefact.
"""

from __future__ import annotations

import gzip
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import typer

from controller.replay import ReplaySettings, replay
from controller.report import summary_table, write_report
from forecaster._cli_ingest import describe_report, describe_series
from forecaster.frames import write_frame
from forecaster.generate import TrafficProfile, generate_traffic, write_access_log
from forecaster.ingest import ingest_logs
from forecaster.models import SeasonalQuantile
from forecaster.plots import plot_series

app = typer.Typer()

DEMO_START = date(2026, 10, 12)
DEMO_DAYS = 35
DEMO_DEADLINE = date(2026, 11, 10)
REPLAY_FROM = pd.Timestamp("2026-11-01 16:00")  # local midnight of 2 November, in UTC
CAPACITY = 20.0  # requests per minute one pod serves
STARTUP = timedelta(minutes=3)
# Real logs are never clean; the demo damages a few lines to show how they are reported.
DAMAGED_LINES = (
    b'10.1.2.3 - - [12/Nov/2026:09:41:07 +0800] "GET /api/pension/sta\n',
    b"\x00\x13\xfe\xff binary junk from a crashed writer\n",
    b"\n",
)


@app.command()
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

    typer.echo(
        f"3. replaying from {REPLAY_FROM:%Y-%m-%d}: {CAPACITY:g} requests/min per pod, pods take "
        f"{STARTUP.total_seconds() / 60:g} min to start; the model is refitted daily on the past"
    )
    settings = ReplaySettings(capacity_per_replica=CAPACITY, startup_delay=STARTUP, quantile=0.975)
    result = replay(
        result.series, REPLAY_FROM, settings, model_factory=lambda: SeasonalQuantile(normalize=True)
    )
    write_frame(result.decisions, out / "decisions.csv")
    report = write_report(result, out / "report.html", "surgecast demo: pension portal, two weeks")
    typer.echo(_indent(summary_table(result.summary)))
    typer.echo(f"   wrote {out / 'decisions.csv'} and {report}")


def _append_damaged_lines(log: Path) -> None:
    with gzip.open(log, "ab") as handle:  # a second gzip member: readers concatenate them
        handle.writelines(DAMAGED_LINES)


def _indent(text: str) -> str:
    return "\n".join("   " + line for line in text.splitlines())
