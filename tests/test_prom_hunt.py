"""Edge cases of the Prometheus client and of the model jobs that a user meets first:
times given as ``datetime.now()`` returns them, a brand-new service, a clock in another
time zone. Against the session's real Prometheus (tests/prom_server.py)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from controller.kube import RetryPolicy
from controller.prometheus import PrometheusClient
from tests import prom_server
from tests.prom_server import PromServer

prom = prom_server.prom

LOAD = 'sum(rate(http_requests_total{service="portal"}[1m]))'
DAY2 = pd.Timestamp("2026-03-02 16:00")


def client_for(url: str) -> PrometheusClient:
    retry = RetryPolicy(attempts=2, base=0.001, cap=1.0, timeout=5.0)
    return PrometheusClient(url, retry=retry, sleep=lambda seconds: None)


def test_a_range_from_a_time_with_microseconds_has_its_values(prom: PromServer) -> None:
    # datetime.now() has microseconds; the API answers at whole milliseconds, and every
    # answer used to miss the microsecond grid: a full hour of data came back as all NaN.
    start = (DAY2 + timedelta(seconds=5, microseconds=123_456)).to_pydatetime()
    end = start + timedelta(hours=1)
    client = client_for(prom.url)

    got = client.range(LOAD, start, end, "1min")
    many = client.range_many([LOAD, f"{LOAD} * 2"], start, end, "1min")

    assert len(got) == 61 and got.notna().all()
    assert got.index[0] == pd.Timestamp(start).floor("ms")
    aligned = client.range(LOAD, DAY2 + timedelta(seconds=5), end, "1min")
    pd.testing.assert_series_equal(got, aligned, check_index=False)
    assert isinstance(many[0], pd.Series) and isinstance(many[1], pd.Series)
    pd.testing.assert_series_equal(many[0], got)
    pd.testing.assert_series_equal(many[1], got * 2)
