"""Forecast accuracy and fit time of every model, for issue #3 "Forecasting engine".

    .venv/bin/python benchmarks/forecast.py [--data ../shared/data] [--quick] [--no-prophet]
        [--part nasa m4 fit-time] [--m4-test Hourly-test.csv] [--m4-forecasts-out FILE]

1. NASA 1995 per-minute trace, at 1 and 5 minutes: rolling-origin backtests
   (``forecaster.backtest``: every fold refits a fresh model on the data up to its cutoff)
   with cutoffs every 11 hours (so they walk through every hour of the day) from a day
   after the hurricane outage to the end of August; July is the first training data. MASE,
   pinball loss and peak recall within 5, 15 and 60 minutes ahead, relative to seasonal
   naive. ``auto`` is what ``training.select`` chooses on July alone, then scored in August.
   Prophet refits for up to a minute on per-minute data, so it runs on every fifth cutoff
   and is compared with seasonal naive on those same cutoffs.
2. M4 Hourly (414 series, horizon 48): every model and ``auto`` validated on the last 48
   values of each training series, as sMAPE, MASE and OWA against Naive2 (``m4.py``); then
   ``auto`` refitted on the whole training series for the official test, which is held back
   and scored separately (``--m4-test`` scores it when you have it).
3. Fit time of Prophet and the two scikit-learn models (gradient boosting, linear) on 14
   days of NASA data, one series, and their pinball loss on the same splits.

Every fit runs on one thread: on a shared two-core machine, OpenMP's spinning threads made
HistGradientBoosting about ten times slower whenever the other core was busy, and Prophet
(one Stan optimisation) uses one thread anyway, so timings compare one core with one core.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import m4
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from forecaster.backtest import backtest, score
from forecaster.frames import quantile_column
from forecaster.ingest import load_counts
from forecaster.metrics import pinball
from forecaster.models import registry
from forecaster.training import forecast, select, train

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NASA_FILE = Path("nasa-http/per-minute/requestdata-20240626.csv")
M4_TRAIN = Path("m4-hourly/Hourly-train.csv")
M4_RESULTS = Path("m4-hourly/m4_hourly_point_forecast_results.csv")

NASA_TZ = "America/New_York"  # EDT, -04:00, in July and August
AUGUST = pd.Timestamp("1995-08-01 04:00")  # local midnight, in UTC like every ds
FIRST_CUTOFF = pd.Timestamp("1995-08-04 10:00")
"""06:00 local, a day after the outage ended (08-03 04:36): the day-ago values every model
reads at the first cutoff are observed, not missing."""
HORIZONS = (5, 15, 60)  # minutes ahead
UPPER = 0.9  # the quantile a scaler provisions for; peak recall and coverage use it
QUANTILES = (0.5, UPPER)
SELECTION_FOLDS = 14  # cutoffs of the choice made on July, as the demo uses
M4_FOLDS = 6
"""Cutoffs of each M4 series' choice: with the default 3 (144 hours scored) the choice is
noisier, OWA 0.508 rather than 0.478 on the validation split."""

FIT_WINDOW = pd.Timedelta("14D")
FIT_FIRST = pd.Timestamp("1995-08-18 04:00")  # local midnight: 14 days after the outage
FIT_EVERY = pd.Timedelta("7h")
"""Cutoffs 7 h apart walk through every time of day; from FIT_FIRST to the end of August
that is 48 cutoffs. (The first measurement took 12 cutoffs 13 h apart, 144 five-minute
values: too few to tell two models' q0.9 loss apart, a different 36 put them the other way.)"""
FIT_LAST = pd.Timestamp("1995-09-01 03:00")  # the last cutoff whose hour ahead is in August


def machine() -> str:
    """CPU model, cores, memory and Python, for the first line of the output."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        model = names[0].split(":", 1)[1].strip() if names else model
    memory = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = f", {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB"
    return (
        f"machine: {model}, {os.cpu_count()} cores{memory}, Python {platform.python_version()},"
        f" every fit on one thread; load average at start {os.getloadavg()[0]:.1f} (timings"
        " stretch when others share the cores)"
    )


def table(rows: list[dict[str, Any]], formats: dict[str, str]) -> str:
    """A plain text table; ``formats`` gives each numeric column's format."""
    frame = pd.DataFrame(rows)
    formatters = {c: f.format for c, f in formats.items() if c in frame.columns}
    return frame.to_string(index=False, formatters=formatters, na_rep="-")


# --- 1. NASA: rolling origin at 1 and 5 minutes ---------------------------------------------


def observed_july(frame: pd.DataFrame) -> pd.DataFrame:
    """July up to its last observed minute (the July log ends on the 28th at 13:32 local)."""
    july = frame[frame["ds"] < AUGUST]
    return july[july["ds"] <= july.loc[july["y"].notna(), "ds"].max()]


def horizon_scores(results: pd.DataFrame, frame: pd.DataFrame, step: pd.Timedelta) -> list[dict]:
    """The library's scores of the forecasts within each of :data:`HORIZONS` minutes ahead."""
    season = int(pd.Timedelta("1D") / step)
    rows = []
    for minutes in HORIZONS:
        part = results[results["h"] <= pd.Timedelta(minutes=minutes) / step]
        scores = score(part, frame, season, UPPER, QUANTILES).iloc[0]
        rows.append({"horizon": minutes, "n": int(part["y"].notna().sum()), **scores.to_dict()})
    return rows


def relative_rows(
    results: dict[str, pd.DataFrame],
    chosen: str,
    seconds: dict[str, float],
    frame: pd.DataFrame,
    step: pd.Timedelta,
) -> list[dict[str, Any]]:
    """Scores of every model by horizon, each next to seasonal naive's on the same cutoffs."""
    rows = []
    for name, result in results.items():
        baseline = results["seasonal_naive"]
        baseline = baseline[baseline["cutoff"].isin(result["cutoff"].unique())]
        label = f"auto ({chosen})" if name == "auto" else name
        if name == "prophet":
            label = f"prophet ({result['cutoff'].nunique()} cutoffs)"
        ours = horizon_scores(result, frame, step)
        theirs = horizon_scores(baseline, frame, step)
        for mine, naive in zip(ours, theirs, strict=True):
            rows.append(
                {
                    "horizon": f"{mine['horizon']} min",
                    "model": label,
                    "MASE": mine["mase"],
                    "MASE/SN": mine["mase"] / naive["mase"],
                    "pinball q0.5": mine["pinball_q0.5"],
                    "q0.5/SN": mine["pinball_q0.5"] / naive["pinball_q0.5"],
                    "pinball q0.9": mine["pinball_q0.9"],
                    "q0.9/SN": mine["pinball_q0.9"] / naive["pinball_q0.9"],
                    "cover q0.9": mine["coverage"],
                    "peak recall": mine["peak_recall"],
                    "SN peak recall": naive["peak_recall"],
                    "n": mine["n"],
                    "s/cutoff": seconds[name] / result["cutoff"].nunique(),
                }
            )
    return sorted(rows, key=lambda r: int(r["horizon"].split()[0]))


def nasa(data: Path, every_hours: int, prophet_nth: int, with_prophet: bool) -> None:
    path = data / NASA_FILE
    candidates = registry(country="US", tz=NASA_TZ, include_slow=with_prophet)
    auto_pool = registry(country="US", tz=NASA_TZ)  # what --model auto scores
    verdicts = []
    for freq in ("1min", "5min"):
        frame = load_counts(path, tz="-04:00", freq=freq)
        step = pd.Timedelta(freq)
        horizon = int(pd.Timedelta(minutes=max(HORIZONS)) / step)
        every = int(pd.Timedelta(hours=every_hours) / step)
        final = frame["ds"].max() - step * horizon
        folds = int((final - FIRST_CUTOFF) / (step * every)) + 1

        started = time.perf_counter()
        selection = select(
            observed_july(frame), auto_pool, horizon, SELECTION_FOLDS, every, UPPER, "1D"
        )
        chosen = selection.chosen()[frame["unique_id"].iloc[0]]
        print(
            f"\nNASA {freq}: auto chose {chosen} on July ({SELECTION_FOLDS} cutoffs every "
            f"{every_hours} h, {horizon}-step horizon, selection score of q{UPPER:g}) "
            f"in {time.perf_counter() - started:.0f} s"
        )

        results, seconds = {}, {}
        for name, make in candidates.items():
            started = time.perf_counter()
            if name == "prophet":
                sparse = -(-folds // prophet_nth)
                results[name] = backtest(
                    make(), frame, horizon, sparse, every * prophet_nth, QUANTILES
                )
            else:
                results[name] = backtest(make(), frame, horizon, folds, every, QUANTILES)
            seconds[name] = time.perf_counter() - started
        results["auto"] = results[chosen]
        seconds["auto"] = seconds[chosen]

        cutoffs = sorted(results["seasonal_naive"]["cutoff"].unique())
        local = pd.DatetimeIndex([cutoffs[0], cutoffs[-1]]).tz_localize("UTC").tz_convert(NASA_TZ)
        print(
            f"{folds} cutoffs every {every_hours} h, {local[0]:%m-%d %H:%M} to "
            f"{local[1]:%m-%d %H:%M} local; every fold refits on all data up to its cutoff"
        )
        rows = relative_rows(results, chosen, seconds, frame, step)
        print(
            table(
                rows,
                {
                    "MASE": "{:.3f}",
                    "MASE/SN": "{:.3f}",
                    "pinball q0.5": "{:.3f}",
                    "q0.5/SN": "{:.3f}",
                    "pinball q0.9": "{:.3f}",
                    "q0.9/SN": "{:.3f}",
                    "cover q0.9": "{:.1%}",
                    "peak recall": "{:.1%}",
                    "SN peak recall": "{:.1%}",
                    "s/cutoff": "{:.1f}",
                },
            )
        )
        auto_rows = [r for r in rows if r["model"].startswith("auto")]
        beats = [r["q0.5/SN"] < 1 and r["q0.9/SN"] < 1 for r in auto_rows]
        verdicts.append(
            f"{freq}: {'yes' if all(beats) else 'NO'} ("
            + ", ".join(f"{r['horizon']} {r['q0.5/SN']:.2f}/{r['q0.9/SN']:.2f}x" for r in auto_rows)
            + ")"
        )
    print(
        "\nMASE: scaled by the in-sample MAE of the one-day seasonal naive; x/SN: ratio to"
        " seasonal naive on the same cutoffs (below 1 is better); cover: share of intervals at"
        " or below q0.9; peak recall: share of the busiest 5 % of scored intervals that q0.9"
        " covered; n: scored intervals; s/cutoff: fit and predict per cutoff"
    )
    print(
        "check: the chosen model beats seasonal naive on pinball loss (q0.5 and q0.9) "
        "at every horizon: " + "; ".join(verdicts)
    )


# --- 2. M4 Hourly -----------------------------------------------------------------------


def auto_forecast(
    frame: pd.DataFrame, candidates: dict[str, Callable[[], Any]], horizon: int
) -> tuple[pd.DataFrame, dict[str, str]]:
    """``--model auto``: choose per series by backtest, fit, and forecast ``horizon`` ahead.

    The project's backtest places every cutoff back from the frame's common last timestamp,
    as for the series of one service. M4 series end at different hours, so series are
    chosen and fitted in groups that end together, each by :data:`M4_FOLDS` cutoffs a
    horizon apart (``surgecast train --folds 6``) and the selection score of q0.9.
    """
    ends = frame.groupby("unique_id")["ds"].transform("max")
    forecasts, assignment = [], {}
    for _, group in frame.groupby(ends):
        trained = train(group, candidates, "auto", horizon=horizon, folds=M4_FOLDS, upper=UPPER)
        forecasts.append(forecast(trained.models, horizon, quantiles=QUANTILES))
        assignment.update(trained.assignment)
    return pd.concat(forecasts, ignore_index=True), assignment


def by_series(forecasts: pd.DataFrame) -> dict[str, np.ndarray]:
    return {
        uid: one["yhat"].to_numpy() for uid, one in forecasts.sort_values("ds").groupby("unique_id")
    }


def m4_row(
    name: str,
    actual: dict[str, np.ndarray],
    predicted: dict[str, np.ndarray],
    history: dict[str, np.ndarray],
    naive2: tuple[float, float],
    seconds: float | None,
) -> dict[str, Any]:
    smape_value, mase_value = m4.scores(actual, predicted, history)
    return {
        "model": name,
        "sMAPE": smape_value,
        "MASE": mase_value,
        "OWA": m4.owa(smape_value, mase_value, naive2),
        "fit+predict s": seconds,
    }


M4_FORMATS = {"sMAPE": "{:.3f}", "MASE": "{:.3f}", "OWA": "{:.3f}", "fit+predict s": "{:.1f}"}


def m4_part(
    data: Path, quick: bool, with_prophet: bool, test: Path | None, out: Path | None
) -> None:
    series = m4.read_wide(data / M4_TRAIN)
    if quick:
        series = {uid: y for n, (uid, y) in enumerate(series.items()) if n % 10 == 0}
    history = {uid: y[: -m4.HORIZON] for uid, y in series.items()}
    actual = {uid: y[-m4.HORIZON :] for uid, y in series.items()}
    frame = m4.to_frame(history)
    naive2 = m4.scores(actual, {u: m4.naive2(y) for u, y in history.items()}, history)
    print(
        f"\nM4 Hourly, validation: {len(series)} series, each trained on all but its last "
        f"{m4.HORIZON} values and scored on those; hourly index from {m4.START:%Y-%m-%d %H:%M}"
        " (no real dates: day-of-week and holiday features mean nothing here)"
    )
    candidates = registry(country=None, tz=None, include_slow=with_prophet)
    rows: list[dict[str, Any]] = [
        {"model": "Naive2 (M4 rules)", "sMAPE": naive2[0], "MASE": naive2[1], "OWA": 1.0}
    ]
    for name, make in candidates.items():
        started = time.perf_counter()
        predicted = by_series(make().fit(frame).predict(m4.HORIZON, quantiles=QUANTILES))
        rows.append(m4_row(name, actual, predicted, history, naive2, time.perf_counter() - started))
    auto_pool = registry(country=None, tz=None)
    started = time.perf_counter()
    forecasts, assignment = auto_forecast(frame, auto_pool, m4.HORIZON)
    seconds = time.perf_counter() - started
    rows.append(m4_row("auto", actual, by_series(forecasts), history, naive2, seconds))
    print(table(rows, M4_FORMATS))
    picks = Counter(assignment.values()).most_common()
    print("auto chose: " + ", ".join(f"{name} {count}" for name, count in picks))
    official = pd.read_csv(data / M4_RESULTS).set_index("method_id")
    print(
        "official M4 test, for comparison: "
        + ", ".join(
            f"{m} sMAPE {official.loc[m, 'smape_hourly']:.3f} MASE "
            f"{official.loc[m, 'mase_hourly']:.3f} OWA {official.loc[m, 'owa_hourly']:.3f}"
            for m in ("Naive2", "sNaive")
        )
    )

    frame = m4.to_frame(series)
    started = time.perf_counter()
    forecasts, assignment = auto_forecast(frame, auto_pool, m4.HORIZON)
    seconds = time.perf_counter() - started
    picks = Counter(assignment.values()).most_common()
    print(
        f"\nM4 Hourly, official test: auto refitted on the full training series: choice, fit "
        f"and predict of all {len(series)} series in {seconds:.1f} s wall time; chose "
        + ", ".join(f"{name} {count}" for name, count in picks)
    )
    if out is not None:
        # By position, not by timestamp: series of different lengths end at different hours.
        columns = [f"F{n}" for n in range(1, m4.HORIZON + 1)]
        wide = pd.DataFrame.from_dict(by_series(forecasts), orient="index", columns=columns)
        wide.loc[list(series)].to_csv(out, index_label="id")
        print(f"forecasts written to {out} (M4 layout: id, F1..F{m4.HORIZON})")
    if test is None:
        print(
            "the official test part is held back (not in the data folder) and scored "
            "separately: pass --m4-test Hourly-test.csv to score it here"
        )
        return
    held = {uid: y[: m4.HORIZON] for uid, y in m4.read_wide(test).items() if uid in series}
    naive2 = m4.scores(held, {u: m4.naive2(y) for u, y in series.items()}, series)
    seasonal = {u: np.resize(y[-m4.PERIOD :], m4.HORIZON) for u, y in series.items()}
    rows = [
        {"model": "Naive2 (M4 rules)", "sMAPE": naive2[0], "MASE": naive2[1], "OWA": 1.0},
        m4_row("seasonal naive", held, seasonal, series, naive2, None),
        m4_row("auto", held, by_series(forecasts), series, naive2, seconds),
    ]
    print(table(rows, M4_FORMATS))


# --- 3. Fit time on 14 days -------------------------------------------------------------


def fit_time(data: Path, folds: int | None, with_prophet: bool) -> None:
    """Fit time and pinball loss of the fast models and Prophet on the same cutoffs.

    ``folds`` None: every cutoff from ``FIT_FIRST`` to ``FIT_LAST``.
    """
    candidates = registry(country="US", tz=NASA_TZ, include_slow=True)
    fast = ["gradient_boosting", "linear"]
    names = [*fast, "prophet"] if with_prophet else fast
    cutoffs = list(pd.date_range(FIT_FIRST, FIT_LAST, freq=FIT_EVERY))[:folds]
    print(
        f"\nFit time on {FIT_WINDOW.days} days of NASA data, one series: {len(cutoffs)} cutoffs every "
        f"{FIT_EVERY.seconds // 3600} h from 08-18 00:00 local, each fitted on the "
        f"{FIT_WINDOW.days} days before it and scored {max(HORIZONS)} minutes ahead"
    )
    rows = []
    for freq in ("1min", "5min"):
        frame = load_counts(data / NASA_FILE, tz="-04:00", freq=freq)
        horizon = int(pd.Timedelta(minutes=max(HORIZONS)) / pd.Timedelta(freq))
        for name in names:
            seconds, parts = [], []
            for cutoff in cutoffs:
                window = frame[(frame["ds"] > cutoff - FIT_WINDOW) & (frame["ds"] <= cutoff)]
                model = candidates[name]()
                started = time.perf_counter()
                model.fit(window)
                seconds.append(time.perf_counter() - started)
                predicted = model.predict(horizon, quantiles=QUANTILES)
                parts.append(predicted.merge(frame, on=["unique_id", "ds"]))
            joined = pd.concat(parts)
            row = {"resolution": freq, "model": name, "rows": len(window)}
            row["fit s (median)"] = float(np.median(seconds))
            for q in QUANTILES:
                column = quantile_column(q)
                row[f"pinball {column}"] = pinball(joined["y"], joined[column], q)
            row["per cutoff"] = [
                pinball(part["y"], part[quantile_column(UPPER)], UPPER) for part in parts
            ]
            rows.append(row)
    print(
        table(
            [{k: v for k, v in r.items() if k != "per cutoff"} for r in rows],
            {"fit s (median)": "{:.2f}", "pinball q0.5": "{:.3f}", "pinball q0.9": "{:.3f}"},
        )
    )
    if not with_prophet:
        return
    for freq in ("1min", "5min"):
        prophet = next(r for r in rows if r["resolution"] == freq and r["model"] == "prophet")
        for model in (r for r in rows if r["resolution"] == freq and r["model"] in fast):
            speed = prophet["fit s (median)"] / model["fit s (median)"]
            pinballs = ", ".join(
                f"{c} {'equal or better' if model[f'pinball {c}'] <= prophet[f'pinball {c}'] else 'WORSE'}"
                for c in ("q0.5", "q0.9")
            )
            wins = sum(
                a <= b for a, b in zip(model["per cutoff"], prophet["per cutoff"], strict=True)
            )
            print(
                f"check {freq} {model['model']}: Prophet's fit takes {speed:.2f}x its fit "
                f"(target >= 10x: {'met' if speed >= 10 else 'NOT met'}); its pinball loss "
                f"against Prophet's: {pinballs}; q0.9 equal or better on {wins} of "
                f"{len(model['per cutoff'])} cutoffs"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="the shared data folder (its README.md)"
    )
    parser.add_argument(
        "--part", nargs="+", choices=["nasa", "m4", "fit-time"], default=["nasa", "m4", "fit-time"]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small subset: NASA cutoffs every 47 h, every tenth M4 series, 3 fit-time cutoffs",
    )
    parser.add_argument("--no-prophet", action="store_true", help="skip Prophet everywhere")
    parser.add_argument(
        "--m4-test", type=Path, default=None, help="the official M4 Hourly-test.csv, if you have it"
    )
    parser.add_argument(
        "--m4-forecasts-out", type=Path, default=None, help="write auto's official-test forecasts"
    )
    args = parser.parse_args()
    missing = [p for p in (NASA_FILE, M4_TRAIN, M4_RESULTS) if not (args.data / p).is_file()]
    if missing:
        sys.exit(
            f"{args.data}: data not found ({', '.join(map(str, missing))} missing); "
            "pass --data pointing at the shared data folder described by its README.md"
        )
    print(machine())
    started = time.perf_counter()
    with_prophet = not args.no_prophet
    with threadpool_limits(limits=1):
        if "nasa" in args.part:
            nasa(args.data, 47 if args.quick else 11, 3 if args.quick else 5, with_prophet)
        if "m4" in args.part:
            m4_part(args.data, args.quick, with_prophet, args.m4_test, args.m4_forecasts_out)
        if "fit-time" in args.part:
            fit_time(args.data, 3 if args.quick else None, with_prophet)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
