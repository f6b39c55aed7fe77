"""Fleet scale: backtest and train N services with the local engine and the Dask engine.

    .venv/bin/python benchmarks/fleet.py [--sizes 10,100,1000] [--engines local,dask]
        [--workers 2] [--cache DIR]

Generates N synthetic services with the project's seeded generator (14 days at 5 minutes;
each its own seed and profile: kind of portal, peak, noise, growth, flash crowds,
maintenance), then per engine times what ``surgecast backtest --model auto --horizon 1h``
does (every fast model, 3 folds; ``select``) and what ``surgecast train --model auto``
does (the same backtest, then the final fits; ``train``), and checks that the engines
agreed: same chosen models, same scores.

Every task runs on one thread in both engines: Dask's workers run with OMP_NUM_THREADS=1,
and the local run is held to one thread too (``threadpoolctl``), so the comparison is of
engines, not of scikit-learn's OpenMP threads (which, on a machine also busy with other
work, made one gradient-boosting backtest 7x slower than with one thread).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import dask
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from forecaster.engine import DaskEngine, Engine, LocalEngine
from forecaster.generate import TrafficProfile, generate_traffic
from forecaster.models import registry
from forecaster.training import select, train

DAYS = 14
FREQ = "5min"
HORIZON = 12  # one hour at 5 minutes
FOLDS = 3
KINDS = ("pension", "tax", "card", "einvoice")


def service(n: int) -> pd.DataFrame:
    """Service ``n``: a profile and a seed of its own, as a 5-minute series."""
    rng = np.random.default_rng([n, 2026])
    kind = KINDS[n % len(KINDS)]
    profile = TrafficProfile(
        service=f"{kind}-{n:04d}",
        peak_rps=float(np.exp(rng.uniform(np.log(0.5), np.log(50)))),
        dispersion=float(rng.uniform(8, 60)),
        growth_per_week=float(rng.uniform(0.0, 0.05)),
        flash_crowds_per_week=float(rng.uniform(0.0, 2.0)),
        maintenance_every_days=int(rng.choice([0, 7, 14])),
    )
    return generate_traffic(profile, date(2026, 10, 5), DAYS, seed=n).true_counts(FREQ)


def fleet(size: int, cache: Path, workers: int) -> pd.DataFrame:
    """Services 0 to ``size - 1``, generated once (on a Dask cluster) and kept in ``cache``."""
    path = cache / f"fleet-{size}.parquet"
    if not path.exists():
        with DaskEngine(n_workers=workers) as engine:
            pd.concat(engine.map(service, range(size)), ignore_index=True).to_parquet(path)
    return pd.read_parquet(path)


def run(frame: pd.DataFrame, engine: Engine) -> tuple[float, float, pd.DataFrame, dict]:
    """Seconds to backtest, seconds to train, and the scores and choices to compare."""
    start = time.perf_counter()
    selection = select(frame, registry(), HORIZON, FOLDS, engine=engine)
    backtested = time.perf_counter()
    trained = train(frame, registry(), "auto", HORIZON, FOLDS, engine=engine)
    done = time.perf_counter()
    return backtested - start, done - backtested, selection.scores, trained.assignment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="Fleet sizes, comma-separated.")
    parser.add_argument("--engines", default="local,dask", help="local, dask or both.")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="Dask workers.")
    parser.add_argument("--cache", type=Path, default=None, help="Keep generated fleets here.")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    engines = args.engines.split(",")
    cache = args.cache or Path(tempfile.mkdtemp(prefix="surgecast-fleet-"))
    cache.mkdir(parents=True, exist_ok=True)

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, dask {dask.__version__}; "
        f"load average {os.getloadavg()[0]:.1f} at start (the machine is shared)"
    )
    print(
        f"{DAYS} days at {FREQ} per service; every fast model ({', '.join(registry())}), "
        f"{FOLDS} folds "
        f"{HORIZON} steps ahead; dask: LocalCluster of {args.workers} single-threaded "
        "worker processes; seconds\n"
    )
    header = (
        f"{'series':>7} {'engine':>6} {'start':>6} {'backtest':>9} {'train':>8} "
        f"{'total':>8} {'speed-up':>8} {'same result':>11} {'load':>5}"
    )
    print(header)
    print("-" * len(header))
    everyone = fleet(max(sizes), cache, args.workers)
    for size in sizes:
        frame = everyone[everyone["unique_id"].isin(everyone["unique_id"].unique()[:size])]
        reference = None
        for name in engines:
            began = time.perf_counter()
            engine = LocalEngine() if name == "local" else DaskEngine(n_workers=args.workers)
            with engine, threadpool_limits(1):
                started = time.perf_counter() - began
                backtest_s, train_s, scores, choice = run(frame, engine)
            total = started + backtest_s + train_s
            if reference is None:
                reference = (total, scores, choice)
                same = "-"
            else:
                same = "yes" if _same(reference[1:], (scores, choice)) else "NO"
            print(
                f"{size:>7} {name:>6} {started:>6.1f} {backtest_s:>9.1f} {train_s:>8.1f} "
                f"{total:>8.1f} {reference[0] / total:>7.2f}x {same:>11} "
                f"{os.getloadavg()[0]:>5.1f}",
                flush=True,
            )


def _same(a: tuple[pd.DataFrame, dict], b: tuple[pd.DataFrame, dict]) -> bool:
    try:
        pd.testing.assert_frame_equal(a[0], b[0], check_exact=False, rtol=0, atol=1e-9)
    except AssertionError:
        return False
    return a[1] == b[1]


if __name__ == "__main__":
    main()
