"""controller.prometheus against a real Prometheus backfilled with a known series.

Faults (429, 503, slow answers) come from a loopback proxy in front of that Prometheus, so
every request is real HTTP and the client's own code runs unpatched; only its ``sleep`` is
replaced by a recorder so backoff takes no time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.kube import RetryPolicy
from controller.policy import Forecast, PolicySpec, decide
from controller.prometheus import (
    BATCH_LABEL,
    HistoryCache,
    PrometheusClient,
    PrometheusDataError,
    PrometheusQueryError,
    PrometheusUnavailable,
    _Stored,
)
from forecaster.frames import quantile_column
from forecaster.models import registry
from tests import prom_server
from tests.prom_server import GAP, Fault, FaultProxy, PromServer, free_port

prom = prom_server.prom
"""The backfilled Prometheus of the session (see tests/prom_server.py)."""

PER_MINUTE = 'sum(rate(http_requests_total{service="portal"}[1m])) * 60'
"""Requests in the minute before each step: the ground truth's count, shifted by a minute."""

LOAD = 'sum(rate(http_requests_total{service="portal"}[1m]))'
"""Requests per second, the unit a PolicySpec's capacity is in."""

DAY2 = pd.Timestamp("2026-03-02 16:00")
"""Local midnight (Asia/Shanghai) starting Tuesday, the second day, in UTC."""

QUERIES = [f'sum(rate(http_requests_total{{service="portal"}}[{k}m])) * {k}' for k in range(1, 51)]
"""Fifty distinct queries with data, each aggregated to one series."""


def client_for(url: str, sleeps: list[float] | None = None, **kwargs: object) -> PrometheusClient:
    """A client with tiny backoff whose sleeps are recorded instead of slept."""
    retry = RetryPolicy(attempts=3, base=0.001, cap=5.0, timeout=5.0)
    record = sleeps.append if sleeps is not None else (lambda seconds: None)
    return PrometheusClient(url, retry=retry, sleep=record, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def proxy(prom: PromServer) -> Iterator[FaultProxy]:
    server = FaultProxy(prom.url)
    yield server
    server.close()


def range_requests(proxy: FaultProxy) -> list[dict[str, str]]:
    return [r for r in proxy.requests if r["path"] == "/api/v1/query_range"]


def points(request: dict[str, str]) -> int:
    """Points a range request asks for, as Prometheus counts them."""
    return int((float(request["end"]) - float(request["start"])) // float(request["step"])) + 1


def tags(request: dict[str, str]) -> int:
    """Queries in one request: tagged ones in a batch, else the one untagged query."""
    return max(1, request["query"].count(BATCH_LABEL))


# -- range queries -------------------------------------------------------------------------


def test_range_matches_the_ground_truth(prom: PromServer) -> None:
    start, end = DAY2 - timedelta(hours=15), DAY2 + timedelta(hours=8)
    got = client_for(prom.url).range(PER_MINUTE, start, end, "1min")

    assert got.index.equals(pd.date_range(start, end, freq="1min"))
    # The value at t counts the minute before t; the truth is labelled by the minute's start.
    # Prometheus 2.x includes both ends of [t - 1m, t], so this is exact; 3.x extrapolates.
    want = prom.per_minute.reindex(got.index - pd.Timedelta("1min")).to_numpy()
    outside_gap = (got.index < GAP[0]) | (got.index > GAP[1] + pd.Timedelta("2min"))
    assert got[outside_gap].notna().all()
    np.testing.assert_allclose(got[outside_gap], want[outside_gap], rtol=0.05, atol=2)
    assert abs(got[outside_gap].sum() / want[outside_gap].sum() - 1) < 0.01
    # Nothing was scraped in the outage: those steps are NaN on the grid, not dropped.
    inside_gap = (got.index >= GAP[0] + pd.Timedelta("1min")) & (got.index < GAP[1])
    assert got[inside_gap].isna().all() and inside_gap.sum() == 29


def test_range_is_chunked_below_max_points(prom: PromServer, proxy: FaultProxy) -> None:
    start, end = DAY2, DAY2 + timedelta(days=1)  # 1441 points
    chunked = client_for(proxy.url, max_points=500).range(LOAD, start, end, "1min")
    requests = range_requests(proxy)

    assert [points(r) for r in requests] == [500, 500, 441]
    one_shot = client_for(prom.url, max_points=2000).range(LOAD, start, end, "1min")
    pd.testing.assert_series_equal(chunked, one_shot)


def test_default_chunks_keep_below_the_servers_limit(
    prom: PromServer,
    proxy: FaultProxy,
) -> None:
    start, end = prom.start, prom.start + timedelta(minutes=15_000)
    with pytest.raises(PrometheusQueryError, match="11,000 points"):
        client_for(prom.url, max_points=20_000).range(LOAD, start, end, "1min")

    series = client_for(proxy.url).range(LOAD, start, end, "1min")
    assert len(series) == 15_001
    assert [points(r) for r in range_requests(proxy)] == [10_000, 5_001]


def test_range_of_several_series_is_refused(prom: PromServer) -> None:
    with pytest.raises(PrometheusDataError, match="2 series.*sum"):
        client_for(prom.url).range("rate(http_requests_total[1m])", DAY2, DAY2, "1min")


# -- instant queries -----------------------------------------------------------------------


def test_instant_query(prom: PromServer) -> None:
    client = client_for(prom.url)
    at = DAY2 + timedelta(hours=10)
    value = client.instant(LOAD, at)

    assert value == pytest.approx(client.range(LOAD, at, at, "1min").iloc[0])
    assert value == pytest.approx(prom.per_minute[at - pd.Timedelta("1min")] / 60, rel=0.05)
    assert client.instant(f"scalar({LOAD})", at) == pytest.approx(value)
    assert client.instant(LOAD, prom.end + timedelta(hours=1)) is None  # no data: empty
    assert client.instant("scalar(vector(1) / 0)", at) is None  # +Inf is no load either
    with pytest.raises(PrometheusDataError, match="aggregate"):
        client.instant("http_requests_total", at)


def test_bad_promql_raises_with_the_servers_message(prom: PromServer) -> None:
    with pytest.raises(PrometheusQueryError, match="parse error") as raised:
        client_for(prom.url).instant("sum(rate(http_requests_total[1m])", DAY2)
    assert "unclosed left parenthesis" in str(raised.value)


# -- failures and retries ------------------------------------------------------------------


def test_unreachable_server_raises_unavailable_after_retries() -> None:
    sleeps: list[float] = []
    client = client_for(f"http://127.0.0.1:{free_port()}", sleeps)

    with pytest.raises(PrometheusUnavailable, match="ConnectionError.*after 3 attempts"):
        client.instant(LOAD, DAY2)
    assert len(sleeps) == 2


def test_429_waits_for_retry_after(prom: PromServer, proxy: FaultProxy) -> None:
    sleeps: list[float] = []
    proxy.faults.append(Fault(429, retry_after="2"))

    value = client_for(proxy.url, sleeps).instant(LOAD, DAY2 + timedelta(hours=10))

    assert value is not None and len(proxy.requests) == 2
    assert sleeps and sleeps[0] >= 2.0


def test_503_is_retried_until_success(prom: PromServer, proxy: FaultProxy) -> None:
    sleeps: list[float] = []
    proxy.faults.append(Fault(503, times=2))

    series = client_for(proxy.url, sleeps).range(LOAD, DAY2, DAY2 + timedelta(hours=1), "1min")

    assert series.notna().all() and len(range_requests(proxy)) == 3 and len(sleeps) == 2


def test_slow_answer_times_out_and_is_retried(prom: PromServer, proxy: FaultProxy) -> None:
    proxy.faults.append(Fault(200, delay=1.0))

    value = client_for(proxy.url, timeout=0.2).instant(LOAD, DAY2 + timedelta(hours=10))

    assert value is not None and len(proxy.requests) == 2


def test_lasting_5xx_raises_unavailable_with_the_last_error(
    prom: PromServer,
    proxy: FaultProxy,
) -> None:
    proxy.faults.append(Fault(503, times=10))

    with pytest.raises(PrometheusUnavailable, match="HTTP 503: unavailable: injected"):
        client_for(proxy.url).instant(LOAD, DAY2)
    assert len(proxy.requests) == 3


def test_retry_after_longer_than_the_cap_gives_up_at_once(
    prom: PromServer,
    proxy: FaultProxy,
) -> None:
    proxy.faults.append(Fault(429, retry_after="3600"))

    with pytest.raises(PrometheusUnavailable, match="retry after 3600 s"):
        client_for(proxy.url).instant(LOAD, DAY2)
    assert len(proxy.requests) == 1


# -- the history cache ---------------------------------------------------------------------


def stored(cache: HistoryCache, query: str = LOAD) -> _Stored:
    """The one series the cache holds for ``query``."""
    [series] = [s for (_, q, _), s in cache._series.items() if q == query]
    return series


def test_cache_pulls_only_what_is_new(prom: PromServer, proxy: FaultProxy) -> None:
    client, cache = client_for(proxy.url), HistoryCache()
    end = DAY2 + timedelta(days=1, hours=10, seconds=20)

    first = cache.get(client, LOAD, end, timedelta(days=2), unique_id="portal")
    assert list(first.columns) == ["unique_id", "ds", "y"] and len(first) == 2 * 1440
    assert first["ds"].iloc[-1] == end.floor("1min") and (first["unique_id"] == "portal").all()
    assert len(range_requests(proxy)) == 1

    again = cache.get(
        client, LOAD, end + timedelta(seconds=30), timedelta(days=2), "1min", "portal"
    )
    pd.testing.assert_frame_equal(again, first)
    assert len(range_requests(proxy)) == 1  # already up to this minute: nothing to ask

    later = end + timedelta(minutes=3)
    second = cache.get(client, LOAD, later, timedelta(days=2), unique_id="portal")
    request = range_requests(proxy)[-1]
    assert len(range_requests(proxy)) == 2
    assert points(request) == 5 + 3 + 1  # the overlap, the new minutes, and the last one again
    assert len(second) == 2 * 1440 and second["ds"].iloc[-1] == later.floor("1min")

    fresh = client_for(prom.url).range(LOAD, second["ds"].iloc[0], second["ds"].iloc[-1], "1min")
    np.testing.assert_array_equal(second["y"].to_numpy(), fresh.to_numpy())

    longer = cache.get(client, LOAD, later, timedelta(days=3), unique_id="portal")
    assert [points(r) for r in range_requests(proxy)[2:]] == [1440]  # the day before only
    assert len(longer) == 3 * 1440
    np.testing.assert_array_equal(longer["y"].to_numpy()[-len(second) :], second["y"].to_numpy())

    past = cache.get(client, LOAD, end, timedelta(days=2), unique_id="portal")
    assert len(range_requests(proxy)) == 3  # an earlier end is answered from the cache
    np.testing.assert_array_equal(past["y"].to_numpy()[:-3], first["y"].to_numpy()[:-3])


def test_a_short_get_keeps_the_long_window(prom: PromServer, proxy: FaultProxy) -> None:
    """The reconciler's two-hour get between two four-week gets drops nothing, so the
    second four-week get pulls only the minutes since."""
    client, cache = client_for(proxy.url), HistoryCache()
    end, weeks = DAY2 + timedelta(days=2), timedelta(days=28)
    cache.get(client, LOAD, end, weeks)
    assert [points(r) for r in range_requests(proxy)] == [10_000] * 4 + [320]
    del proxy.requests[:]

    recent = cache.get(client, LOAD, end + timedelta(minutes=1), timedelta(hours=2))
    assert len(recent) == 120 and [points(r) for r in range_requests(proxy)] == [5 + 1 + 1]
    assert len(stored(cache).values) == 28 * 1440

    history = cache.get(client, LOAD, end + timedelta(minutes=2), weeks)
    assert [points(r) for r in range_requests(proxy)] == [7, 5 + 1 + 1]
    fresh = client_for(prom.url).range(LOAD, history["ds"].iloc[0], history["ds"].iloc[-1], "1min")
    np.testing.assert_array_equal(history["y"].to_numpy(), fresh.to_numpy())
    assert history["y"].notna().sum() > 4_000  # the three days backfilled before end


def test_cache_keeps_float64_values_on_an_implicit_grid(prom: PromServer) -> None:
    cache = HistoryCache()
    frame = cache.get(client_for(prom.url), LOAD, DAY2, timedelta(days=1))

    series = stored(cache)
    assert isinstance(series.values, np.ndarray) and series.values.dtype == np.float64
    assert series.values.nbytes / len(frame) == 8  # no timestamp stored per point
    assert series.values.base is None  # not a view that keeps a longer array alive
    assert series.start == frame["ds"].iloc[0] and series.step == pd.Timedelta("1min")
    np.testing.assert_array_equal(series.values, frame["y"].to_numpy())
    frame.loc[0, "y"] = -1.0
    assert series.values[0] != -1.0  # the frame is the caller's own copy


@pytest.mark.parametrize("later", [timedelta(hours=2, minutes=10), timedelta(days=1)])
def test_a_series_older_than_its_window_is_pulled_afresh(
    prom: PromServer, proxy: FaultProxy, later: timedelta
) -> None:
    client, cache = client_for(proxy.url), HistoryCache()
    cache.get(client, LOAD, DAY2, timedelta(hours=2))
    frame = cache.get(client, LOAD, DAY2 + later, timedelta(hours=2))

    assert [points(r) for r in range_requests(proxy)] == [120, 120]  # not the time between
    fresh = client_for(prom.url).range(LOAD, frame["ds"].iloc[0], DAY2 + later, "1min")
    np.testing.assert_array_equal(frame["y"].to_numpy(), fresh.to_numpy())


class Counter:
    """A stand-in for PrometheusClient whose value at each step is known in advance:
    minutes since the epoch, with every seventh minute missing."""

    url = "http://counter"

    def __init__(self) -> None:
        self.pulled: list[tuple[pd.Timestamp, pd.Timestamp]] = []

    def range(self, query: str, start: datetime, end: datetime, step: str) -> pd.Series:
        self.pulled.append((pd.Timestamp(start), pd.Timestamp(end)))
        return truth(pd.date_range(start, end, freq=step))


def truth(grid: pd.DatetimeIndex) -> pd.Series:
    minutes = (grid - pd.Timestamp(0)) // pd.Timedelta("1min")
    return pd.Series(np.where(minutes % 7 == 0, np.nan, minutes.astype(float)), index=grid)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-3000, 3000), st.integers(1, 3000)), max_size=8))
def test_any_sequence_of_gets_is_answered_exactly_and_keeps_the_longest_window(
    gets: list[tuple[int, int]],
) -> None:
    """Ends moving back and forth, windows long and short, gaps longer than a window:
    every get returns the truth, asking again asks nothing, and the series never
    shrinks unless it ended longer ago than its own span."""
    client, cache = Counter(), HistoryCache()
    for minute, window in gets:
        end, span = DAY2 + timedelta(minutes=minute, seconds=20), timedelta(minutes=window)
        before = cache._series.get((client.url, LOAD, pd.Timedelta("1min")))

        frame = cache.get(client, LOAD, end, span)  # type: ignore[arg-type]

        grid = pd.date_range(end.floor("1min") - span + timedelta(minutes=1), end, freq="1min")
        np.testing.assert_array_equal(frame["ds"].to_numpy(), grid.to_numpy())
        np.testing.assert_array_equal(frame["y"].to_numpy(), truth(grid).to_numpy())
        asked = len(client.pulled)
        again = cache.get(client, LOAD, end, span)  # type: ignore[arg-type]
        assert len(client.pulled) == asked
        pd.testing.assert_frame_equal(again, frame)
        after = stored(cache)
        assert after.start <= grid[0] and after.last >= grid[-1]
        if before is not None and after.last - before.last <= before.last - before.start:
            assert after.start <= after.last - (before.last - before.start)


def test_prefetch_brings_many_series_up_to_date_in_few_requests(
    prom: PromServer, proxy: FaultProxy
) -> None:
    client, cache = client_for(proxy.url), HistoryCache()
    end, window = DAY2 + timedelta(days=1, hours=10), timedelta(days=2)

    assert cache.prefetch(client, QUERIES, end, window) == {}
    # 2,880 points each: 34 queries fit under max_batch_points, so two requests.
    assert [tags(r) for r in proxy.requests] == [34, 16]
    assert all(points(r) == 2 * 1440 for r in proxy.requests)
    del proxy.requests[:]

    frames = [cache.get(client, query, end, window) for query in QUERIES]
    recent = [cache.get(client, query, end, timedelta(hours=2)) for query in QUERIES]
    assert proxy.requests == []
    truth = client_for(prom.url)
    for query, frame, tail in zip(QUERIES[:3], frames, recent, strict=False):
        fresh = truth.range(query, frame["ds"].iloc[0], end, "1min")
        np.testing.assert_array_equal(frame["y"].to_numpy(), fresh.to_numpy())
        pd.testing.assert_frame_equal(tail, frame.iloc[-120:].reset_index(drop=True))

    later = end + timedelta(minutes=3)
    newcomers = [f"{LOAD} + {k}" for k in range(5)]
    assert cache.prefetch(client, [*QUERIES, *newcomers], later, window) == {}
    tails, new = proxy.requests
    assert tags(tails) == 50 and points(tails) == 5 + 3 + 1
    assert tags(new) == 5 and points(new) == 2 * 1440
    del proxy.requests[:]
    for query in [*QUERIES, *newcomers]:
        cache.get(client, query, later, window)
    assert proxy.requests == []

    # A longer window a minute later: every tail in one request, then every head in another.
    latest, longer = later + timedelta(minutes=1), timedelta(days=3)
    assert cache.prefetch(client, [*QUERIES, *newcomers], latest, longer) == {}
    assert [(tags(r), points(r)) for r in proxy.requests] == [(55, 5 + 1 + 1), (55, 1440 - 1)]
    del proxy.requests[:]
    frames = [cache.get(client, query, latest, longer) for query in [*QUERIES, *newcomers]]
    assert proxy.requests == [] and all(len(frame) == 3 * 1440 for frame in frames)
    fresh = truth.range(newcomers[0], frames[-5]["ds"].iloc[0], latest, "1min")
    np.testing.assert_array_equal(frames[-5]["y"].to_numpy(), fresh.to_numpy())


def test_prefetch_returns_the_errors_and_keeps_the_old_data(
    prom: PromServer, proxy: FaultProxy
) -> None:
    client, cache = client_for(proxy.url), HistoryCache()
    end, window = DAY2 + timedelta(hours=12), timedelta(hours=6)
    bad, several = "sum(rate(http_requests_total[1m])", "rate(http_requests_total[1m])"

    errors = cache.prefetch(client, [LOAD, bad, several], end, window)
    assert set(errors) == {bad, several}
    assert isinstance(errors[bad], PrometheusQueryError)
    assert isinstance(errors[several], PrometheusDataError)
    before = cache.get(client, LOAD, end, window)
    assert before["y"].notna().all()

    proxy.faults.append(Fault(503, times=10))
    del proxy.requests[:]
    # Tails of LOAD, heads of the new QUERIES: once Prometheus is down, nothing more is sent.
    errors = cache.prefetch(client, [LOAD, *QUERIES], end + timedelta(minutes=5), window)
    assert set(errors) == {LOAD, *QUERIES} and len(proxy.requests) == 3
    assert all(isinstance(error, PrometheusUnavailable) for error in errors.values())
    pd.testing.assert_frame_equal(cache.get(client, LOAD, end, window), before)
    assert len(proxy.requests) == 3  # the old data answers without a request


def test_forget_drops_the_series_and_its_file(proxy: FaultProxy, tmp_path: Path) -> None:
    client, cache = client_for(proxy.url), HistoryCache(tmp_path)
    end, window = DAY2, timedelta(hours=2)
    cache.get(client, LOAD, end, window)
    cache.get(client, PER_MINUTE, end, window)

    cache.forget(proxy.url + "/", LOAD, timedelta(minutes=1))

    assert len(list(tmp_path.glob("*.parquet"))) == 1 and stored(cache, PER_MINUTE)
    cache.get(client, LOAD, end, window)
    cache.get(client, PER_MINUTE, end, window)
    assert [r["query"] for r in range_requests(proxy)] == [LOAD, PER_MINUTE, LOAD]


def test_cache_survives_a_restart_and_discards_a_corrupt_file(
    prom: PromServer,
    proxy: FaultProxy,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = client_for(proxy.url)
    end, window = DAY2 + timedelta(hours=20), timedelta(days=1)
    before = HistoryCache(tmp_path).get(client, LOAD, end, window)

    after_restart = HistoryCache(tmp_path).get(client, LOAD, end, window)
    pd.testing.assert_frame_equal(after_restart, before)
    assert [points(r) for r in range_requests(proxy)] == [1440]

    [saved] = tmp_path.glob("*.parquet")
    saved.write_bytes(b"PAR1 this is not parquet")
    with caplog.at_level(logging.WARNING, logger="controller.prometheus"):
        rebuilt = HistoryCache(tmp_path).get(client, LOAD, end, window)
    assert "discarding unreadable history cache" in caplog.text
    assert points(range_requests(proxy)[-1]) == 1440
    pd.testing.assert_frame_equal(rebuilt, before)


def test_a_file_of_the_first_format_is_pulled_again(
    proxy: FaultProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Format 1 stored a ``ds`` column beside ``y``: such a file is discarded."""
    client = client_for(proxy.url)
    end, window = DAY2, timedelta(hours=2)
    HistoryCache(tmp_path).get(client, LOAD, end, window)
    [saved] = tmp_path.glob("*.parquet")
    ds = pd.date_range(end - timedelta(minutes=119), end, freq="1min")
    pd.DataFrame({"ds": ds, "y": np.ones(120)}).to_parquet(saved, index=False)

    with caplog.at_level(logging.WARNING, logger="controller.prometheus"):
        frame = HistoryCache(tmp_path).get(client, LOAD, end, window)

    assert "discarding unreadable history cache" in caplog.text
    assert [points(r) for r in range_requests(proxy)] == [120, 120]
    assert (frame["y"] != 1).all()


def test_files_are_rewritten_every_save_every_not_every_cycle(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    """Rewriting four weeks of 1,000 series every 30 s would wear the disk; a file a few
    minutes behind costs one small pull after a restart."""
    client, cache = client_for(proxy.url), HistoryCache(tmp_path, save_every="10min")
    end, window = DAY2, timedelta(hours=2)
    cache.get(client, LOAD, end, window)
    [saved] = tmp_path.glob("*.parquet")
    written = saved.read_bytes()

    cache.get(client, LOAD, end + timedelta(minutes=3), window)
    assert saved.read_bytes() == written
    cache.get(client, LOAD, end + timedelta(minutes=3), timedelta(hours=3))
    assert saved.read_bytes() != written  # a longer window is saved at once
    written = saved.read_bytes()
    cache.get(client, LOAD, end + timedelta(minutes=12), window)
    assert saved.read_bytes() == written
    cache.get(client, LOAD, end + timedelta(minutes=13), window)
    assert saved.read_bytes() != written

    del proxy.requests[:]
    HistoryCache(tmp_path).get(client, LOAD, end + timedelta(minutes=14), window)
    assert [points(r) for r in range_requests(proxy)] == [5 + 1 + 1]


# -- from Prometheus to a decision ---------------------------------------------------------


def test_train_on_prometheus_history_and_decide(prom: PromServer) -> None:
    client = client_for(prom.url)
    now = pd.Timestamp("2026-03-05 01:30")  # Thursday 09:30 in Shanghai, the peak ahead
    spec = PolicySpec(
        min_replicas=1,
        max_replicas=40,
        capacity_per_replica=0.5,
        startup_delay=timedelta(minutes=5),
        level_window=30,
    )
    history = HistoryCache().get(client, LOAD, now, timedelta(days=3), unique_id="portal")
    model = registry()["seasonal_quantile"]().fit(history)
    predicted = model.predict(60, quantiles=(0.5, spec.quantile))
    forecast = Forecast(
        made_at=now.to_pydatetime(),
        times=predicted["ds"].to_numpy(dtype="datetime64[ns]"),
        upper=predicted[quantile_column(spec.quantile)].to_numpy(dtype=float),
        quantile=spec.quantile,
        median=predicted["yhat"].to_numpy(dtype=float),
    )
    load = client.instant(LOAD, now)
    recent = history["y"].to_numpy()[-spec.level_window :]

    decision = decide(spec, now.to_pydatetime(), 2, load, forecast, recent_load=recent)

    assert decision.fallback is None and decision.reason == "ScaleUp/ForecastPeak", decision
    lead = prom.per_minute[now : now + timedelta(minutes=5, seconds=30)] / 60
    assert decision.replicas * spec.capacity_per_replica >= lead.max()
    assert decision.reactive_floor * spec.capacity_per_replica < lead.max()  # reacting is late
