"""The Prometheus bearer token: read from a file, sent only to the Prometheus it is for,
picked up again when rotated, and never written anywhere: not in logs, Events, status,
the decision log, metrics or error messages, even when a proxy echoes it back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from typer.testing import CliRunner

from controller.cli import app
from controller.decisions import DecisionLog
from controller.prometheus import PrometheusUnavailable, client_factory
from tests import prom_server as promfake
from tests.test_faults import RETRY, WARM, api, drive, proxy, reconciler  # noqa: F401

TOKEN = "s3cr3t-t0ken-7f1d2c"
NO_SLEEP = {"retry": RETRY, "sleep": lambda _: None}


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("http://prometheus.monitoring:9090", True),
        ("http://prometheus.monitoring:9090/", True),
        ("http://prometheus.monitoring:9090/tenant/a", True),
        ("https://prometheus.monitoring:9090", False),  # another scheme
        ("http://prometheus.monitoring:9091", False),  # another port
        ("http://prometheus.monitoring.evil.example:9090", False),
        ("http://attacker.example/http://prometheus.monitoring:9090", False),
    ],
)
def test_the_token_goes_only_to_its_prometheus(token_file: Path, url: str, sent: bool) -> None:
    build = client_factory(token_file, "http://prometheus.monitoring:9090")
    assert (build(url).auth is not None) == sent


def test_a_token_file_needs_its_url_and_back(token_file: Path) -> None:
    with pytest.raises(ValueError):
        client_factory(token_file, None)
    with pytest.raises(ValueError):
        client_factory(None, "http://prometheus:9090")
    result = CliRunner().invoke(
        app, ["controller", "run", "--prometheus-token-file", str(token_file)]
    )
    assert result.exit_code == 2 and "--prometheus-token-url" in result.output


def test_the_token_is_sent_and_rotation_is_picked_up(proxy, token_file: Path) -> None:  # noqa: F811
    client = client_factory(token_file, proxy.url, **NO_SLEEP)(proxy.url)
    client.instant("vector(1)")
    token_file.write_text("rotated-token\n")
    client.instant("vector(1)")
    assert proxy.authorizations == [f"Bearer {TOKEN}", "Bearer rotated-token"]


def test_a_missing_token_file_is_a_clear_error_without_a_request(proxy, tmp_path: Path) -> None:  # noqa: F811
    client = client_factory(tmp_path / "absent", proxy.url, **NO_SLEEP)(proxy.url)
    with pytest.raises(PrometheusUnavailable, match="cannot read the bearer token file"):
        client.instant("vector(1)")
    assert proxy.requests == []


@pytest.mark.slow
@pytest.mark.parametrize("status", [503, 200], ids=["error echoing the token", "non-JSON echo"])
def test_the_token_is_never_written_anywhere(
    api,  # noqa: F811
    proxy,  # noqa: F811
    prom,
    tmp_path: Path,
    token_file: Path,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 and requests included
    echo = f"bad gateway; you sent Authorization: Bearer {TOKEN}".encode()
    fault = promfake.Fault(status, times=10_000, body=echo)
    rec = reconciler(api, tmp_path, client_factory(token_file, proxy.url, **NO_SLEEP))
    rec.decisions = DecisionLog(f"sqlite:///{tmp_path / 'decisions.db'}")
    run = drive(api, proxy, prom, tmp_path, prom_fault=fault, rec=rec)

    assert set(proxy.authorizations) == {f"Bearer {TOKEN}"}  # it was sent, every time
    fallback = next(c for c in run.statuses[WARM + 5]["conditions"] if c["type"] == "Fallback")
    assert "[redacted]" in fallback["message"]  # the echo is quoted, without the token
    written = {
        "logs": caplog.text,
        "events": str([c.body for c in api.state.calls("POST", "/events")]),
        "status": str(run.statuses),
        "status writes": str([c.body for c in api.state.calls("PATCH", "/status")]),
        "decision log": str(rec.decisions.list(None, limit=100_000)),
        "metrics": generate_latest(rec.metrics.registry).decode(),
    }
    assert {where: TOKEN in text for where, text in written.items()} == dict.fromkeys(
        written, False
    )
