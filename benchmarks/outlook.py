"""Are the busy-hours ratings honest? Weekly origins on the NASA 1995 per-minute trace.

    .venv/bin/python benchmarks/outlook.py [--top 0.1] [--quantile 0.9]

At each weekly origin (local midnight), the seasonal-quantile model the controller uses by
default is fitted on the four weeks before, forecasts the next seven days, and each coming
hour is rated quiet / normal / busy against the bands of those four weeks
(:func:`controller.outlook.typical_bands`), exactly as the controller rates them. The
following week then shows which hours were really the busiest (the top ``--top`` share of
its observed hours by mean load): the figure is the share of them that had been rated busy
a week ahead. For scale, the share of all hours rated busy (what rating at random would
catch) and a naive rating from the same hour one week earlier are printed beside it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from controller.outlook import hourly_load, project, rate, typical_bands
from forecaster.ingest import load_counts
from forecaster.models import SeasonalQuantile

NASA = (
    Path(__file__).resolve().parents[1].parent
    / "shared/data/nasa-http/per-minute/requestdata-20240626.csv"
)
ZONE = "America/New_York"  # the trace's -04:00 is EDT all summer
FIRST, LAST = pd.Timestamp("1995-07-08"), pd.Timestamp("1995-08-26")
"""Local midnights of the first and last origin: a week of history at least, and a
following week inside the trace (which ends on 31 August)."""

HISTORY = pd.Timedelta(days=28)
MIN_OBSERVED_HOURS = 72
"""A week with fewer observed hours than this (the hurricane outage) is not scored."""


def score(rated: pd.Series, actual: pd.Series, top: float) -> dict[str, float]:
    """How the ratings of a week's hours match what the week brought.

    ``rated`` (quiet/normal/busy) and ``actual`` (mean load) are indexed by hour start; only
    hours observed in ``actual`` count.
    """
    rated = rated.reindex(actual.index)
    cut = np.quantile(actual.to_numpy(), 1 - top)
    busiest = actual >= cut
    return {
        "hours": float(len(actual)),
        "rated_busy": float((rated == "busy").mean()),
        "busiest": float(busiest.sum()),
        "busiest_rated_busy": float((rated[busiest] == "busy").mean()),
        "busiest_rated_quiet": float((rated[busiest] == "quiet").mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=float, default=0.1, help="share of hours called busiest")
    parser.add_argument("--quantile", type=float, default=0.9, help="the outlook's quantile")
    args = parser.parse_args()
    if not NASA.is_file():
        sys.exit(f"skipped: {NASA} not found (see shared/data/README.md)")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    series = load_counts(NASA, tz="-04:00", freq="1min")
    hourly = hourly_load(series)
    started = time.perf_counter()
    rows = []
    for origin_local in pd.date_range(FIRST, LAST, freq="7D"):
        origin = origin_local.tz_localize(ZONE).tz_convert("UTC")
        cut = origin.tz_localize(None)
        history = series[(series["ds"] >= cut - HISTORY) & (series["ds"] < cut)]
        week = hourly[(hourly.index >= cut) & (hourly.index < cut + pd.Timedelta(days=7))]
        if len(week) < MIN_OBSERVED_HOURS:
            print(f"  {origin_local:%Y-%m-%d}: {len(week)} observed hours in the week, skipped")
            continue
        model = SeasonalQuantile(country=None, tz=ZONE, weeks=4, normalize=True).fit(history)
        steps = int(
            (cut + pd.Timedelta(days=7, hours=1) - history["ds"].max()) / pd.Timedelta("1min")
        )
        predicted = model.predict(steps, quantiles=(0.5, args.quantile))
        hours = project(predicted, args.quantile, origin.to_pydatetime(), days=7)
        bands = typical_bands(history)
        assert bands is not None
        rated = pd.Series(rate(hours["expected"].to_numpy(), bands), index=hours["ds"])
        last_week = hourly.reindex(week.index - pd.Timedelta(days=7))
        naive = pd.Series(rate(last_week.to_numpy(), bands), index=week.index)
        naive[last_week.isna().to_numpy()] = "normal"  # nothing seen a week before
        model_score = score(rated, week, args.top)
        naive_score = score(naive, week, args.top)
        rows.append(
            {
                "origin": f"{origin_local:%a %Y-%m-%d}",
                **model_score,
                "naive_busiest_rated_busy": naive_score["busiest_rated_busy"],
            }
        )
    table = pd.DataFrame(rows)
    weights = table["busiest"]
    pooled = {
        "origin": "all weeks",
        "hours": table["hours"].sum(),
        "rated_busy": float(np.average(table["rated_busy"], weights=table["hours"])),
        "busiest": weights.sum(),
        "busiest_rated_busy": float(np.average(table["busiest_rated_busy"], weights=weights)),
        "busiest_rated_quiet": float(np.average(table["busiest_rated_quiet"], weights=weights)),
        "naive_busiest_rated_busy": float(
            np.average(table["naive_busiest_rated_busy"], weights=weights)
        ),
    }
    table = pd.concat([table, pd.DataFrame([pooled])], ignore_index=True)
    print(
        f"\nNASA 1995, per minute; seasonal-quantile model on the 4 weeks before each origin,"
        f" 7 days ahead; the busiest = top {args.top:.0%} of each week's observed hours"
    )
    share = "{:.0%}".format
    print(
        table.to_string(
            index=False,
            columns=[
                "origin",
                "hours",
                "rated_busy",
                "busiest",
                "busiest_rated_busy",
                "busiest_rated_quiet",
                "naive_busiest_rated_busy",
            ],
            header=[
                "origin",
                "observed hours",
                "rated busy",
                "busiest hours",
                "of which rated busy",
                "rated quiet",
                "naive: rated busy",
            ],
            formatters={
                "hours": "{:.0f}".format,
                "busiest": "{:.0f}".format,
                "rated_busy": share,
                "busiest_rated_busy": share,
                "busiest_rated_quiet": share,
                "naive_busiest_rated_busy": share,
            },
        )
    )
    print(
        f"\n  {pooled['busiest_rated_busy']:.0%} of the busiest hours had been rated busy a week"
        f" ahead, where {pooled['rated_busy']:.0%} of all hours were rated busy; rating by the"
        f" same hour a week earlier catches {pooled['naive_busiest_rated_busy']:.0%}"
        f" ({time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
