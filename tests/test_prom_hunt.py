"""Edge cases of the Prometheus client and of the model jobs that a user meets first:
times given as ``datetime.now()`` returns them, a brand-new service, a clock in another
time zone. Against the session's real Prometheus (tests/prom_server.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from controller.kube import RetryPolicy
from controller.modelling import ModelJob, run_job
from controller.prometheus import (
    Duration,
    HistoryCache,
    PrometheusClient,
    PrometheusError,
    PrometheusQueryError,
    PrometheusUnavailable,
    client_factory,
)
from controller.reconciler import LEVEL_WINDOW
from controller.spec import ScalerConfig, parse_scaler
from tests import prom_server
from tests.kubefake import FakeKubeServer
from tests.prom_server import Fault, FaultProxy, PromServer, free_port
from tests.test_controller_e2e import DEPLOYMENT, START, scaler
from tests.test_faults import reconciler

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


# -- model jobs ------------------------------------------------------------------------------


def config(**spec: object) -> ScalerConfig:
    obj = scaler("http://prometheus.test:9090", "ForecastOnly", **spec)
    obj["metadata"].update(namespace="gov", uid="uid-1", generation=1)
    return parse_scaler(obj)


def daily_history(key: str, end: pd.Timestamp, span: timedelta) -> pd.DataFrame:
    ds = pd.date_range(end - span, end, freq="1min")
    minutes = np.arange(len(ds))
    return pd.DataFrame(
        {"unique_id": key, "ds": ds, "y": 5 + 3 * np.sin(2 * np.pi * minutes / 1440)}
    )


NOW = datetime(2026, 3, 5, 12, 0, 30, tzinfo=UTC)


def test_a_job_at_a_non_utc_now_forecasts_as_at_the_same_instant_in_utc() -> None:
    # An aware now in +02:00 used to be read as its wall-clock time: the model was fitted
    # two hours further (nothing held out for the nowcast), its forecast ended two hours
    # short, and its version was named after a time that never was.
    scaler_config = config()
    history = daily_history(scaler_config.key, pd.Timestamp("2026-03-05 12:00"), timedelta(days=3))
    berlin = NOW.astimezone(timezone(timedelta(hours=2)))

    in_utc = run_job(ModelJob("train", scaler_config, history, NOW, hold_out=LEVEL_WINDOW))
    local = run_job(ModelJob("train", scaler_config, history, berlin, hold_out=LEVEL_WINDOW))

    assert local.forecast.times[0] == np.datetime64("2026-03-05T10:01")
    np.testing.assert_array_equal(local.forecast.times, in_utc.forecast.times)
    np.testing.assert_allclose(local.forecast.upper, in_utc.forecast.upper)
    assert local.model.version == in_utc.model.version == "20260305T120030Z-memory"


def test_a_service_younger_than_the_hold_out_is_not_told_its_query_is_wrong() -> None:
    scaler_config = config()
    young = daily_history(scaler_config.key, pd.Timestamp("2026-03-05 12:00"), timedelta(days=3))
    young.loc[young["ds"] < pd.Timestamp("2026-03-05 11:00"), "y"] = np.nan

    with pytest.raises(ValueError) as raised:
        run_job(ModelJob("start", scaler_config, young, NOW, hold_out=LEVEL_WINDOW))

    message = str(raised.value)
    assert "data only since 2026-03-05 11:00 UTC" in message
    assert "up to 2026-03-05 10:00 UTC" in message and "newest 2h are held out" in message
    assert "check spec.metric.query" not in message


def test_a_history_window_within_the_hold_out_is_named_as_the_problem() -> None:
    scaler_config = config(retrain={"historyWindow": "90m"})
    history = daily_history(
        scaler_config.key, pd.Timestamp("2026-03-05 12:00"), timedelta(minutes=89)
    )

    with pytest.raises(ValueError, match=r"historyWindow \(90m\) leaves no history.*longer"):
        run_job(ModelJob("train", scaler_config, history, NOW, hold_out=LEVEL_WINDOW))


def test_a_query_with_no_data_is_still_called_wrong() -> None:
    scaler_config = config()
    empty = daily_history(scaler_config.key, pd.Timestamp("2026-03-05 12:00"), timedelta(days=1))
    empty["y"] = np.nan

    with pytest.raises(ValueError, match="no data in the history window.*check spec.metric.query"):
        run_job(ModelJob("train", scaler_config, empty, NOW, hold_out=LEVEL_WINDOW))


# -- a Prometheus URL that cannot be sent to -------------------------------------------------


BAD_URLS = ["http://prometheus:99999", "http://prometheus:9090:9090", "http://[::1", "http://a..b"]
"""URLs that pass the spec's http(s) check (a typo'd port, a stray colon, an unclosed IPv6
bracket, an empty host label) but that no request can be sent to."""


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_url_that_cannot_be_sent_to_is_unavailable_at_once(url: str) -> None:
    sleeps: list[float] = []
    retry = RetryPolicy(attempts=3, base=0.001, cap=1.0, timeout=1.0)
    client = PrometheusClient(url, retry=retry, sleep=sleeps.append)

    with pytest.raises(PrometheusUnavailable, match="cannot be asked"):
        client.instant(LOAD)
    answers = client.instant_many([LOAD, f"{LOAD} * 2"])
    assert all(isinstance(answer, PrometheusUnavailable) for answer in answers)
    assert sleeps == []  # asking again cannot mend a URL
    assert client_factory("/no/token", "http://prometheus:9090")(url).auth is None


def test_a_scaler_with_an_unusable_url_says_so_in_its_status(tmp_path: Path) -> None:
    # Its reconcile used to fail with requests' InvalidURL: logged, but no status, no Event.
    with FakeKubeServer() as api:
        api.state.put("deployments", "gov", DEPLOYMENT)
        api.state.put("predictivescalers", "gov", scaler("http://prometheus:99999", "Scale"))
        rec = reconciler(api, tmp_path)
        obj = api.state.get("predictivescalers", "gov", "portal")
        rec.prefetch([obj], START)
        decision = rec.reconcile(obj, START)

        assert decision is not None and decision.observed_load is None
        got = api.state.get("predictivescalers", "gov", "portal")["status"]
        fallback = {c["type"]: c for c in got["conditions"]}["Fallback"]
        assert fallback["status"] == "True" and "cannot be asked" in fallback["message"]
        reasons = [c.body["reason"] for c in api.state.calls("POST", "/events")]
        assert "MetricUnavailable" in reasons


def test_dot_segments_do_not_carry_the_token_out_of_its_path(
    prom: PromServer, tmp_path: Path
) -> None:
    # The token is for URLs under BASE; "BASE/../other" reaches "/other", which a
    # path-routing gateway (one tenant per path) may hand to someone else.
    token = tmp_path / "token"
    token.write_text("s3cret-token")
    proxy = FaultProxy(prom.url)
    try:
        build = client_factory(token, f"{proxy.url}/tenant-a", sleep=lambda seconds: None)
        for path in ["/tenant-a/../tenant-b", "/tenant-a/%2e%2E/tenant-b", "/tenant-a/./x"]:
            with contextlib.suppress(PrometheusError):
                build(proxy.url + path).instant(LOAD)
    finally:
        proxy.close()

    assert [request["path"] for request in proxy.requests] == [
        "/tenant-b/api/v1/query",
        "/tenant-a/../tenant-b/api/v1/query",
        "/tenant-a/x/api/v1/query",
    ]
    assert proxy.authorizations == ["", "", ""]
    assert build(f"{proxy.url}/tenant-a/").auth is not None
    assert build(f"{proxy.url}/tenant-a/v1").auth is not None


# -- redirects -------------------------------------------------------------------------------


@contextlib.contextmanager
def redirecting(status: int, to: str) -> Iterator[str]:
    """A server that answers every request with ``status`` and ``Location: TO + path``."""

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(status)
            self.send_header("Location", to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_redirect_that_drops_the_query_names_the_url_to_use(
    prom: PromServer, status: int
) -> None:
    # requests follows these as a GET without the form body, and Prometheus then said
    # "no expression found in input": a good query reported as bad PromQL.
    with redirecting(status, prom.url) as url:
        with pytest.raises(PrometheusUnavailable) as raised:
            client_for(url).instant(LOAD, DAY2)

    message = str(raised.value)
    assert f"HTTP {status} redirect" in message and message.endswith(f"redirects to: {prom.url}")


@pytest.mark.parametrize("status", [307, 308])
def test_a_redirect_that_keeps_the_post_is_followed(prom: PromServer, status: int) -> None:
    with redirecting(status, prom.url) as url:
        value = client_for(url).instant(LOAD, DAY2 + timedelta(hours=10))

    assert value == pytest.approx(client_for(prom.url).instant(LOAD, DAY2 + timedelta(hours=10)))


def test_a_step_with_more_than_six_digits_is_sent_whole(prom: PromServer) -> None:
    # The spec takes steps to the millisecond; "16m40s1ms" was sent as "1000" (six
    # significant digits), so Prometheus answered on another grid and all but the first
    # value came back NaN.
    step = pd.Timedelta("1000.001s")
    got = client_for(prom.url).range(LOAD, DAY2, DAY2 + 20 * step, step)

    assert len(got) == 21 and got.notna().all()


# -- the history cache -----------------------------------------------------------------------


class HeavyBackfills(PrometheusClient):
    """A Prometheus that answers short ranges but times out on a day or more: a slow
    Thanos store, say, behind a new scaler's first pull of weeks."""

    def range_many(
        self, queries: Sequence[str], start: datetime, end: datetime, step: Duration
    ) -> list[pd.Series | PrometheusError]:
        if pd.Timestamp(end) - pd.Timestamp(start) >= pd.Timedelta("1D"):
            return [PrometheusUnavailable("Timeout: read timed out")] * len(queries)
        return super().range_many(queries, start, end, step)


def test_a_new_querys_failed_backfill_leaves_the_others_up_to_date(prom: PromServer) -> None:
    # The tails of established series were pulled after the new query's weeks, and once
    # those failed, not at all: one new scaler on a slow Prometheus blinded every other.
    proxy = FaultProxy(prom.url)
    try:
        client = HeavyBackfills(proxy.url, retry=RetryPolicy(attempts=1), sleep=lambda s: None)
        cache = HistoryCache()
        old = [f"{LOAD} * {k}" for k in (2, 3, 4)]
        for query in old:  # established a while ago, a day at a time
            cache.get(client, query, DAY2, "20h")
            cache.get(client, query, DAY2 + timedelta(hours=12), "2D")
        new = f"{LOAD} * 1"  # sorts first, as the reconciler orders its queries
        later = DAY2 + timedelta(hours=12, minutes=5)

        errors = cache.prefetch(client, sorted([new, *old]), later, "2D")
        asked = len(proxy.requests)
        for query in old:
            cache.get(client, query, later, "2D")
    finally:
        proxy.close()

    assert list(errors) == [new]
    assert len(proxy.requests) == asked  # the others were brought up to date


# -- a token withheld ------------------------------------------------------------------------


def test_a_401_says_when_the_token_was_withheld_from_the_url(
    prom: PromServer, tmp_path: Path
) -> None:
    # The same Prometheus spelt another way than --prometheus-token-url gets no token, by
    # design; its 401 used to read as if the token had been sent and refused.
    token = tmp_path / "token"
    token.write_text("s3cret-token")
    proxy = FaultProxy(prom.url)
    try:
        build = client_factory(token, proxy.url, retry=RetryPolicy(attempts=1))
        other_spelling = proxy.url.replace("127.0.0.1", "localhost")
        proxy.faults.append(Fault(401, times=2))
        with pytest.raises(PrometheusUnavailable) as withheld:
            build(other_spelling).instant(LOAD, DAY2)
        with pytest.raises(PrometheusUnavailable) as refused:
            build(proxy.url).instant(LOAD, DAY2)
    finally:
        proxy.close()

    assert proxy.authorizations == ["", "Bearer s3cret-token"]
    assert str(withheld.value).endswith(
        f"HTTP 401: unavailable: injected; no bearer token was sent, as it is only for URLs"
        f" under {proxy.url}"
    )
    assert "bearer" not in str(refused.value) and "s3cret" not in str(refused.value)


# -- queries copied from Grafana -------------------------------------------------------------


def test_a_grafana_variable_in_a_rejected_query_is_named(prom: PromServer) -> None:
    # Prometheus says "missing unit character in duration", which does not say why.
    query = 'sum(rate(http_requests_total{service="portal"}[$__rate_interval]))'
    client = client_for(prom.url)
    hint = "$__rate_interval is a Grafana variable, not PromQL: write the value instead"

    with pytest.raises(PrometheusQueryError, match="missing unit character") as raised:
        client.instant(query, DAY2)
    batched = client.range_many([LOAD, query], DAY2, DAY2 + timedelta(minutes=5), "1min")

    assert str(raised.value).endswith(hint)
    assert isinstance(batched[1], PrometheusQueryError) and str(batched[1]).endswith(hint)
    replaced = 'label_replace(sum(rate(http_requests_total[1m])), "a", "$1", "b", "(.*)") +'
    with pytest.raises(PrometheusQueryError) as unrelated:
        client.instant(replaced, DAY2)
    assert "Grafana" not in str(unrelated.value)  # $1 is label_replace's, not Grafana's


def test_a_grafana_variable_in_a_query_with_no_data_is_named() -> None:
    # {service="$service"} is valid PromQL that matches nothing: no error, no data.
    scaler_config = config(
        metric={
            "prometheusUrl": "http://prometheus.test:9090",
            "query": 'sum(rate(http_requests_total{service="$service"}[${window}]))',
        }
    )
    empty = daily_history(scaler_config.key, pd.Timestamp("2026-03-05 12:00"), timedelta(days=1))
    empty["y"] = np.nan

    with pytest.raises(ValueError) as raised:
        run_job(ModelJob("train", scaler_config, empty, NOW, hold_out=LEVEL_WINDOW))
    assert str(raised.value).endswith(
        "check spec.metric.query; $service, ${window} are Grafana variables, not PromQL:"
        " write the value instead"
    )


@pytest.mark.parametrize(
    "content",
    ["abc123secret\nsecond-line-secret\n", "abc123 secret", "abc123sécret", "", b"\xffsecret"],
)
def test_a_token_file_that_holds_no_single_token_is_refused_without_quoting_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str | bytes
) -> None:
    # http.client refused the header with "Invalid header value b'Bearer abc123secret\n...'":
    # a ValueError out of the reconcile, token and all, into the controller's log.
    token = tmp_path / "token"
    token.write_bytes(content if isinstance(content, bytes) else content.encode())
    with FakeKubeServer() as api:
        api.state.put("deployments", "gov", DEPLOYMENT)
        url = f"http://127.0.0.1:{free_port()}"
        api.state.put("predictivescalers", "gov", scaler(url, "Scale"))
        rec = reconciler(api, tmp_path, client_factory(token, url, sleep=lambda seconds: None))
        obj = api.state.get("predictivescalers", "gov", "portal")
        with caplog.at_level(logging.DEBUG):
            rec.prefetch([obj], START)
            decision = rec.reconcile(obj, START)
        got = api.state.get("predictivescalers", "gov", "portal")["status"]

    assert decision is not None and decision.observed_load is None
    fallback = {c["type"]: c for c in got["conditions"]}["Fallback"]
    assert f"the bearer token file {token}" in fallback["message"]
    assert "secret" not in caplog.text and "secret" not in json.dumps(got)
