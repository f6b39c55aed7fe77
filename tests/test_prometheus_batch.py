"""PrometheusClient.instant_many and range_many against the real, backfilled Prometheus.

Each answer must be what instant() or range() gives for that query alone (the value, or the
error it raises), with the requests counted through the recording proxy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import TypeAlias

import pandas as pd
import pytest

from controller.prometheus import (
    BATCH_LABEL,
    PrometheusDataError,
    PrometheusError,
    PrometheusQueryError,
    PrometheusUnavailable,
)
from tests import prom_server
from tests import test_prometheus as base
from tests.prom_server import Fault, FaultProxy, PromServer, free_port
from tests.test_prometheus import (
    DAY2,
    LOAD,
    QUERIES,
    client_for,
    points,
    range_requests,
    tags,
)

prom = prom_server.prom
proxy = base.proxy

AT = DAY2 + timedelta(hours=10)

EDGES = {
    "several series": ("rate(http_requests_total[1m])", False),
    "no series": ('sum(rate(http_requests_total{service="nobody"}[1m]))', False),
    "a vector without labels": ("vector(1)", False),
    "a trailing comment": (f"{LOAD} # requests per second", False),
    "an unaggregated selector": ('http_requests_total{service="admin"}', False),
    "a bare scalar": ("1", True),
    "scalar()": (f"scalar({LOAD})", True),
    "bad PromQL": ("sum(rate(http_requests_total[1m])", True),
    "a string": ('"portal"', True),
    "a range vector": ("http_requests_total[5m]", True),
}
"""Queries that a batch must answer exactly as each is answered alone, and whether
Prometheus refuses them inside a batch (``label_replace`` takes only an instant vector)."""

Answer: TypeAlias = float | None | pd.Series | PrometheusError


def alone(ask: Callable[[str], Answer], query: str) -> Answer:
    """What the single-query method gives, with its error returned instead of raised."""
    try:
        return ask(query)
    except PrometheusError as exc:
        return exc


def assert_same(got: Answer, want: Answer) -> None:
    if isinstance(want, PrometheusError):
        assert type(got) is type(want) and str(got) == str(want)
    elif isinstance(want, pd.Series):
        assert isinstance(got, pd.Series)
        pd.testing.assert_series_equal(got, want)
    else:
        assert got == want


# -- the same answers with fewer requests --------------------------------------------------


def test_instant_many_answers_each_query_in_one_request(
    prom: PromServer, proxy: FaultProxy
) -> None:
    values = client_for(proxy.url).instant_many(QUERIES, AT)

    assert len(proxy.requests) == 1 and tags(proxy.requests[0]) == 50
    client = client_for(prom.url)
    assert values == [client.instant(query, AT) for query in QUERIES]
    assert all(isinstance(value, float) for value in values)


def test_range_many_answers_each_query_in_one_request(prom: PromServer, proxy: FaultProxy) -> None:
    start, end = DAY2, DAY2 + timedelta(hours=2)

    many = client_for(proxy.url).range_many(QUERIES, start, end, "1min")

    assert len(proxy.requests) == 1 and tags(proxy.requests[0]) == 50
    client = client_for(prom.url)
    for query, series in zip(QUERIES, many, strict=True):
        assert_same(series, client.range(query, start, end, "1min"))


def test_range_many_chunks_long_ranges_as_range_does(prom: PromServer, proxy: FaultProxy) -> None:
    start, end = DAY2, DAY2 + timedelta(days=1)  # 1441 points
    queries = QUERIES[:6]

    many = client_for(proxy.url, max_points=500).range_many(queries, start, end, "1min")

    assert [points(r) for r in range_requests(proxy)] == [500, 500, 441]
    assert all(tags(r) == 6 for r in proxy.requests)
    client = client_for(prom.url, max_points=2000)
    for query, series in zip(queries, many, strict=True):
        assert_same(series, client.range(query, start, end, "1min"))


def test_range_many_keeps_batches_of_long_ranges_small(proxy: FaultProxy) -> None:
    start, end = DAY2, DAY2 + timedelta(minutes=999)  # 1000 points a query

    client_for(proxy.url, max_batch_points=20_000).range_many(QUERIES, start, end, "1min")

    assert [tags(r) for r in proxy.requests] == [20, 20, 10]


# -- edge cases ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", EDGES)
def test_each_edge_case_is_answered_as_alone_and_costs_the_others_nothing(
    prom: PromServer, proxy: FaultProxy, case: str
) -> None:
    """Between two good queries, each edge case gets its own answer; a query Prometheus
    refuses in a batch (a scalar, bad PromQL) is then sent on its own from the next call."""
    edge, refused = EDGES[case]
    queries = [QUERIES[0], edge, QUERIES[1]]
    start, end = AT - timedelta(minutes=30), AT
    client = client_for(prom.url)
    batched = client_for(proxy.url)

    values = batched.instant_many(queries, AT)
    series = batched.range_many(queries, start, end, "1min")

    for query, value, one in zip(queries, values, series, strict=True):
        assert_same(value, alone(lambda q: client.instant(q, AT), query))
        assert_same(one, alone(lambda q: client.range(q, start, end, "1min"), query))
    assert all(isinstance(v, float) for v in (values[0], values[2]))
    # A refused batch is asked again query by query, the refused one also untagged;
    # range_many already knows to send that one alone.
    assert [tags(r) for r in proxy.requests] == ([3, 1, 1, 1, 1, 1, 2] if refused else [3, 3])
    del proxy.requests[:]
    batched.instant_many(queries, AT)
    batched.range_many(queries, start, end, "1min")
    if refused:
        assert sorted(tags(r) for r in proxy.requests) == [1, 1, 2, 2]
    else:
        assert [tags(r) for r in proxy.requests] == [3, 3]


def test_a_refused_batch_is_asked_query_by_query_once(proxy: FaultProxy) -> None:
    queries = [*QUERIES[:4], "1", *QUERIES[4:8]]
    client = client_for(proxy.url)

    first = client.instant_many(queries, AT)
    # The batch, each query in a batch of its own, and the scalar once more untagged.
    assert [tags(r) for r in proxy.requests] == [9] + [1] * 10
    assert [r["query"] for r in proxy.requests].count("1") == 1
    del proxy.requests[:]

    assert client.instant_many(queries, AT) == first and first[4] == 1.0
    assert sorted(tags(r) for r in proxy.requests) == [1, 8]


def test_bad_promql_errors_alone_with_the_servers_message(prom: PromServer) -> None:
    bad = "sum(rate(http_requests_total[1m])"
    values = client_for(prom.url).instant_many([QUERIES[0], bad, QUERIES[1]], AT)

    assert isinstance(values[0], float) and isinstance(values[2], float)
    assert isinstance(values[1], PrometheusQueryError)
    assert "unclosed left parenthesis" in str(values[1]) and BATCH_LABEL not in str(values[1])


def test_several_series_error_names_the_querys_own_labels(prom: PromServer) -> None:
    [error] = client_for(prom.url).range_many(["http_requests_total"], DAY2, AT, "1min")

    assert isinstance(error, PrometheusDataError)
    assert "2 series" in str(error) and "'service': 'admin'" in str(error)
    assert BATCH_LABEL not in str(error)


def test_a_query_with_no_data_is_none_and_an_empty_grid(prom: PromServer) -> None:
    nobody = 'sum(rate(http_requests_total{service="nobody"}[1m]))'
    client = client_for(prom.url)

    assert client.instant_many([nobody, LOAD], AT)[0] is None
    series, load = client.range_many([nobody, LOAD], DAY2, AT, "1min")
    assert isinstance(series, pd.Series) and isinstance(load, pd.Series)
    assert series.index.equals(pd.date_range(DAY2, AT, freq="1min")) and series.isna().all()
    assert load.notna().all()


def test_duplicates_are_asked_once_and_answered_in_place(
    prom: PromServer, proxy: FaultProxy
) -> None:
    queries = [QUERIES[0], QUERIES[1], QUERIES[0], "1", "1"]
    client = client_for(proxy.url)

    values = client.instant_many(queries, AT)
    series = client.range_many(queries, DAY2, AT, "1min")

    assert len(values) == len(series) == 5
    assert values[0] == values[2] and values[3] == values[4] == 1.0
    assert isinstance(series[0], pd.Series) and isinstance(series[2], pd.Series)
    pd.testing.assert_series_equal(series[0], series[2])
    assert series[0] is not series[2]  # changing one answer does not change the other
    assert proxy.requests[0]["query"].count(QUERIES[0]) == 1


# -- batch sizes ---------------------------------------------------------------------------


def test_batches_are_capped_by_count_and_by_promql_length(
    prom: PromServer, proxy: FaultProxy
) -> None:
    client_for(proxy.url, max_batch=16).instant_many(QUERIES, AT)
    assert [tags(r) for r in proxy.requests] == [16, 16, 16, 2]
    del proxy.requests[:]

    same_length = QUERIES[9:34]
    long = "sum(" * 300 + LOAD + ")" * 300
    client = client_for(proxy.url, max_batch_chars=10 * len(same_length[0]))
    values = client.instant_many([*same_length, long], AT)
    assert [tags(r) for r in proxy.requests] == [10, 10, 5, 1]
    assert len(proxy.requests[-1]["query"]) > len(long)  # over the cap, so in a batch alone
    assert values[-1] == client_for(prom.url).instant(LOAD, AT)


# -- failures ------------------------------------------------------------------------------


def test_unavailable_server_fails_every_query_after_one_batch_of_retries() -> None:
    sleeps: list[float] = []
    client = client_for(f"http://127.0.0.1:{free_port()}", sleeps, max_batch=10)

    values = client.instant_many(QUERIES, AT)

    assert all(isinstance(v, PrometheusUnavailable) for v in values)
    assert "after 3 attempts" in str(values[0]) and len(sleeps) == 2  # not 5 batches of it


def test_passing_failure_is_retried_for_the_batch(prom: PromServer, proxy: FaultProxy) -> None:
    proxy.faults.append(Fault(503, times=2))

    values = client_for(proxy.url).instant_many(QUERIES, AT)

    assert all(isinstance(v, float) for v in values) and len(proxy.requests) == 3


def test_an_answer_that_is_not_prometheus_fails_that_batch_only(proxy: FaultProxy) -> None:
    proxy.faults.append(Fault(200, body=b"<html>login</html>"))
    client = client_for(proxy.url, max_batch=25)

    values = client.instant_many(QUERIES, AT)

    assert all(isinstance(v, PrometheusDataError) for v in values[:25])
    assert all(isinstance(v, float) for v in values[25:]) and len(proxy.requests) == 2


def test_a_batch_answer_without_the_tags_is_a_data_error(proxy: FaultProxy) -> None:
    untagged = {"resultType": "vector", "result": [{"metric": {}, "value": [1, "2"]}]}
    body = {"status": "success", "data": untagged}
    proxy.faults.append(Fault(200, body=json.dumps(body).encode()))

    values = client_for(proxy.url).instant_many(QUERIES[:3], AT)

    assert all(isinstance(v, PrometheusDataError) and "no query" in str(v) for v in values)
