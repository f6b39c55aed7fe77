"""controller.prometheus against a real Prometheus backfilled with a known series.

Faults (429, 503, slow answers) come from a loopback proxy in front of that Prometheus, so
every request is real HTTP and the client's own code runs unpatched; only its ``sleep`` is
replaced by a recorder so backoff takes no time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from controller.kube import RetryPolicy
from controller.policy import Forecast, PolicySpec, decide
from controller.prometheus import (
    BATCH_LABEL,
    HistoryCache,
    PrometheusClient,
    PrometheusDataError,
    PrometheusQueryError,
    PrometheusUnavailable,
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


def test_cache_pulls_only_what_is_new(prom: PromServer, proxy: FaultProxy) -> None:
    client, cache = client_for(proxy.url), HistoryCache()
    end = DAY2 + timedelta(days=1, hours=10, seconds=20)

    first = cache.get(client, LOAD, end, timedelta(days=2), unique_id="portal")
    assert list(first.columns) == ["unique_id", "ds", "y"] and len(first) == 2 * 1440
    assert first["ds"].iloc[-1] == end.floor("1min") and (first["unique_id"] == "portal").all()
    assert len(range_requests(proxy)) == 1

    later = end + timedelta(minutes=3)
    second = cache.get(client, LOAD, later, timedelta(days=2), unique_id="portal")
    request = range_requests(proxy)[-1]
    assert len(range_requests(proxy)) == 2
    assert points(request) == 5 + 3 + 1  # the overlap, the new minutes, and the last one again
    assert len(second) == 2 * 1440 and second["ds"].iloc[-1] == later.floor("1min")

    fresh = client.range(LOAD, second["ds"].iloc[0], second["ds"].iloc[-1], "1min")
    np.testing.assert_array_equal(second["y"].to_numpy(), fresh.to_numpy())

    longer = cache.get(client, LOAD, later, timedelta(days=3), unique_id="portal")
    head, tail = range_requests(proxy)[-2:]
    assert points(head) == 1440 and points(tail) == 6  # the day before, and the overlap
    assert len(longer) == 3 * 1440
    np.testing.assert_array_equal(longer["y"].to_numpy()[-len(second) :], second["y"].to_numpy())


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
    assert [points(r) for r in range_requests(proxy)] == [1440, 6]

    [saved] = tmp_path.glob("*.parquet")
    saved.write_bytes(b"PAR1 this is not parquet")
    with caplog.at_level(logging.WARNING, logger="controller.prometheus"):
        rebuilt = HistoryCache(tmp_path).get(client, LOAD, end, window)
    assert "discarding unreadable history cache" in caplog.text
    assert points(range_requests(proxy)[-1]) == 1440
    pd.testing.assert_frame_equal(rebuilt, before)


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
