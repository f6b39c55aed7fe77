"""Engines: the same ingest, backtest and training on a real Dask cluster as in this process.

The dask tests share one LocalCluster of two single-threaded worker *processes*, so tasks
are pickled to other processes exactly as on a real cluster, and one of them can be killed.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from controller.cli import app
from forecaster.engine import DaskEngine, LocalEngine, open_engine
from forecaster.generate import TrafficProfile, generate_traffic, write_access_log
from forecaster.ingest import IngestError, ingest_logs
from forecaster.models import GradientBoostingForecaster, SeasonalNaive, SeasonalQuantile
from forecaster.training import forecast, select, train


@pytest.fixture(scope="module")
def dask_engine() -> Iterator[DaskEngine]:
    with DaskEngine(n_workers=2) as engine:
        yield engine


def fleet(count: int = 6, last_starts: int = 7 * 288) -> pd.DataFrame:
    """``count`` services at 5 minutes over 9 days; the last one starts on the 8th day, after
    the first backtest cutoff, so it is alone in its chunk and must miss that fold."""
    frames = []
    for n in range(count):
        profile = TrafficProfile(
            service=f"svc{n}", peak_rps=1.0 + n, maintenance_every_days=14 if n % 2 else 0
        )
        series = generate_traffic(profile, date(2026, 10, 5), 9, seed=n).true_counts("5min")
        frames.append(series.iloc[last_starts:] if n == count - 1 else series)
    return pd.concat(frames, ignore_index=True)


def candidates() -> dict[str, Callable[[], Any]]:
    """The registry's kinds of model (per series, and one global gradient boosting), with a
    small booster so the test stays quick."""
    return {
        "seasonal_naive": lambda: SeasonalNaive(season="1D"),
        "seasonal_quantile": lambda: SeasonalQuantile(country="CN", tz="Asia/Shanghai"),
        "gradient_boosting": lambda: GradientBoostingForecaster(max_iter=20, max_samples=4000),
    }


def test_local_engine_maps_in_order_in_this_process() -> None:
    with LocalEngine() as engine:
        assert engine.map(lambda x: (x, os.getpid()), [3, 1, 2]) == [
            (3, os.getpid()),
            (1, os.getpid()),
            (2, os.getpid()),
        ]
        assert engine.workers == 1


def test_open_engine_refuses_what_it_cannot_honour() -> None:
    with pytest.raises(ValueError, match="unknown --engine"):
        open_engine("spark")
    with pytest.raises(ValueError, match="--scheduler needs --engine dask"):
        open_engine("local", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(RuntimeError, match="not started"):
        DaskEngine().map(str, [1])
    # it said only "invalid literal for int() with base 10: '1x'"
    with pytest.raises(ValueError, match="--scheduler 'tcp://127.0.0.1:1x': invalid literal"):
        open_engine("dask", scheduler="tcp://127.0.0.1:1x").__enter__()


@pytest.mark.slow
def test_a_started_engine_refuses_to_start_again(dask_engine: DaskEngine) -> None:
    """A second ``__enter__`` started a second LocalCluster and dropped the first, whose
    worker processes then ran until the interpreter exited."""
    with pytest.raises(RuntimeError, match="already started"):
        dask_engine.__enter__()
    assert dask_engine.map(abs, [-1, 2]) == [1, 2]


DAMAGED = (
    b"not a log line\n\x00\x01\x02\n\n"
    b'10.0.0.1 - - [12/Oct/2026:10:00:00 +0800] "GET /\n'
    b"not one either\n"
)


def write_logs(tmp: Path) -> list[str]:
    """A day of logs of each of three services, one gzipped, with damaged lines in two."""
    paths = []
    for n, service in enumerate(("pension", "tax", "card")):
        traffic = generate_traffic(
            TrafficProfile(service=service, peak_rps=0.3), date(2026, 10, 12 + n), 1, seed=n
        )
        path = tmp / (f"{service}.log.gz" if n == 1 else f"{service}.log")
        write_access_log(traffic, path, seed=n)
        paths.append(path)
    with open(paths[0], "ab") as plain, gzip.open(paths[1], "ab") as packed:
        plain.write(DAMAGED)
        packed.write(DAMAGED)  # a second gzip member, as appending to a .gz log makes
    return [str(p) for p in paths]


@pytest.mark.slow
def test_ingest_on_dask_equals_local(tmp_path: Path, dask_engine: DaskEngine) -> None:
    files = write_logs(tmp_path)
    local = ingest_logs(files, freq="5min", by=["status"], gap="1h")
    remote = ingest_logs(files, freq="5min", by=["status"], gap="1h", engine=dask_engine)
    pd.testing.assert_frame_equal(remote.series, local.series, check_exact=True)
    assert remote.report.to_dict() == local.report.to_dict()
    malformed = {k: v for k, v in local.report.malformed.items() if v}
    assert malformed == {"unknown_format": 4, "binary": 2, "empty": 2, "truncated": 2}
    shown = local.report.examples["unknown_format"]  # two in each file, the first three kept
    assert [e.split(":")[0] for e in shown] == [files[0], files[0], files[1]]
    with pytest.raises(IngestError, match="standard input"):
        ingest_logs(["-"], engine=dask_engine)


@pytest.mark.slow
def test_cli_ingest_with_a_scheduler_address(tmp_path: Path, dask_engine: DaskEngine) -> None:
    files = write_logs(tmp_path)
    runs = {}
    for engine in ("local", "dask"):
        out = tmp_path / f"{engine}.csv"
        args = ["ingest", *files, "--freq", "5min", "-o", str(out), "--engine", engine]
        if engine == "dask":
            args += ["--scheduler", dask_engine.client.scheduler.address]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        accounting = next(x for x in result.output.splitlines() if x.startswith("read "))
        runs[engine] = (pd.read_csv(out), accounting)
    pd.testing.assert_frame_equal(runs["dask"][0], runs["local"][0])
    assert runs["dask"][1] == runs["local"][1]  # the line accounting


class ChunkingLocalEngine(LocalEngine):
    """In this process, but splitting work into chunks of series as for four workers."""

    @property
    def workers(self) -> int:
        return 4


def test_a_series_seen_once_at_a_cutoff_is_not_forecast_from_it_chunked_or_not() -> None:
    # Cutoffs of 3 folds, 12 steps, every 288, on 9 days: steps 2003, 2291 and 2579. The last
    # series starts at step 2291, so it has one value at the second cutoff: nothing to learn
    # an interval or a season from, alone in its chunk or among other series.
    frame = fleet(last_starts=2291)
    single = select(frame, candidates(), 12, 3, 288)
    chunked = select(frame, candidates(), 12, 3, 288, engine=ChunkingLocalEngine())
    for name, folds in single.results.items():
        pd.testing.assert_frame_equal(
            chunked.results[name], folds, check_exact=False, rtol=0, atol=1e-9
        )
        late = folds[folds["unique_id"] == "svc5"]
        assert sorted(late["cutoff"].unique()) == [frame["ds"].max() - pd.Timedelta("60min")]
    pd.testing.assert_frame_equal(chunked.scores, single.scores)


def test_a_cutoff_with_no_series_seen_twice_is_skipped_chunked_or_not() -> None:
    """One stray row long before the services started (a test request months ahead) let
    the first cutoff pass the history check with nothing to fit at it: every backtest, and
    so the whole training, failed with "cannot infer the interval"."""
    frame = fleet(last_starts=0)
    late = frame.groupby("unique_id").cumcount() >= 2100
    frame = frame[late | (frame.index == 0)]  # svc0's first row, then every series at 2100
    single = select(frame, candidates(), 12, 3, 288)
    chunked = select(frame, candidates(), 12, 3, 288, engine=ChunkingLocalEngine())
    for name, folds in single.results.items():
        pd.testing.assert_frame_equal(
            chunked.results[name], folds, check_exact=False, rtol=0, atol=1e-9
        )
        assert folds["cutoff"].nunique() == 2  # the cutoff at step 2003 is skipped
    pd.testing.assert_frame_equal(chunked.scores, single.scores)

    stray = frame[frame.index == 0]
    latest = frame[frame["ds"] > frame["ds"].max() - pd.Timedelta("30min")]  # after the cutoffs
    trained = train(pd.concat([stray, latest]), candidates(), "auto", 12, 3, 288)
    assert trained.scores is None
    assert "not backtested (no series has two rows by the last backtest cutoff" in trained.note
    assert set(trained.assignment.values()) == {"seasonal_quantile"}


@pytest.mark.slow
def test_backtest_and_train_on_dask_equal_local(dask_engine: DaskEngine) -> None:
    frame = fleet()
    local = select(frame, candidates(), 12, 3, 288)
    remote = select(frame, candidates(), 12, 3, 288, engine=dask_engine)
    pd.testing.assert_frame_equal(remote.scores, local.scores, check_exact=False, rtol=0, atol=1e-9)
    assert remote.results.keys() == local.results.keys()
    for name, folds in local.results.items():
        pd.testing.assert_frame_equal(
            remote.results[name], folds, check_exact=False, rtol=0, atol=1e-9
        )

    mine = train(frame, candidates(), "auto", 12, 3, 288)
    theirs = train(frame, candidates(), "auto", 12, 3, 288, engine=dask_engine)
    assert theirs.assignment == mine.assignment
    assert theirs.models.keys() == mine.models.keys()
    pd.testing.assert_frame_equal(
        forecast(theirs.models, 24), forecast(mine.models, 24), check_exact=False, rtol=0, atol=1e-9
    )


class KillsItsWorkerOnce(SeasonalNaive):
    """Seasonal naive that kills its own process the first time it sees ``victim``."""

    def __init__(self, season: str = "1D", marker: str = "", victim: str = "") -> None:
        super().__init__(season=season)
        self.marker = marker
        self.victim = victim

    def fit(self, df: pd.DataFrame, events: pd.DataFrame | None = None) -> KillsItsWorkerOnce:
        if self.victim in set(df["unique_id"]) and not Path(self.marker).exists():
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().fit(df, events)


@pytest.mark.slow
def test_a_task_whose_worker_died_runs_again(tmp_path: Path, dask_engine: DaskEngine) -> None:
    frame = fleet()
    marker = tmp_path / "killed"
    model = {"naive": lambda: KillsItsWorkerOnce(marker=str(marker), victim="svc2")}
    remote = select(frame, model, 12, 3, 288, engine=dask_engine)
    assert marker.exists()  # a worker did die
    local = select(frame, model, 12, 3, 288)
    pd.testing.assert_frame_equal(remote.scores, local.scores)
    pd.testing.assert_frame_equal(remote.results["naive"], local.results["naive"])
    assert sorted(remote.scores["unique_id"]) == [f"svc{n}" for n in range(6)]
    folds = remote.results["naive"].groupby(["unique_id", "cutoff"]).size()
    assert (folds == 12).all()  # every series and fold exactly once, none doubled
    assert len(folds) == 5 * 3 + 2  # the late service misses the first fold, as locally
    assert np.isfinite(remote.scores["selection_score"]).all()


def _dies(item: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return item


@pytest.mark.slow
def test_a_task_whose_worker_dies_at_every_attempt_is_one_clear_error(
    dask_engine: DaskEngine,
) -> None:
    """Dask's KilledWorker ended a traceback out of every command (which report an OSError
    in one line) and said nothing of memory, the usual cause with a fleet of long series."""
    with pytest.raises(ChildProcessError, match="on 4 different workers.*run out of memory"):
        dask_engine.map(_dies, [1])
    assert dask_engine.map(abs, [-3]) == [3]  # the cluster is still there


@pytest.mark.slow
def test_cli_train_with_a_scheduler_address(tmp_path: Path, dask_engine: DaskEngine) -> None:
    hourly = fleet().groupby(["unique_id", pd.Grouper(key="ds", freq="1h")])["y"].sum()
    hourly.reset_index().to_csv(tmp_path / "s.csv", index=False)
    stores = {}
    for engine in ("local", "dask"):
        store = tmp_path / engine
        args = ["train", "--series", str(tmp_path / "s.csv"), "-o", str(store), "--horizon", "6"]
        args += ["--engine", engine]
        if engine == "dask":
            args += ["--scheduler", dask_engine.client.scheduler.address]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        (manifest,) = store.glob("*/manifest.json")
        out = tmp_path / f"{engine}.csv"
        result = CliRunner().invoke(
            app, ["forecast", "--model", str(store), "--horizon", "12", "-o", str(out)]
        )
        assert result.exit_code == 0, result.output
        stores[engine] = (json.loads(manifest.read_text()), pd.read_csv(out))
    (mine, my_forecast), (theirs, their_forecast) = stores["local"], stores["dask"]
    assert theirs["series"] == mine["series"]  # the same model for every series
    pd.testing.assert_frame_equal(
        pd.DataFrame(theirs["backtest"]),
        pd.DataFrame(mine["backtest"]),
        check_exact=False,
        rtol=0,
        atol=1e-9,
    )
    pd.testing.assert_frame_equal(their_forecast, my_forecast, check_exact=False, rtol=0, atol=1e-9)
