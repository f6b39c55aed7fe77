"""A real Prometheus on loopback, backfilled with a known series, and a fault-injecting proxy.

The session fixture :func:`prom` writes four working days of a counter,
``http_requests_total{service="portal"}``, scraped every 15 s from the project's seeded
traffic generator, converts it to TSDB blocks with ``promtool tsdb create-blocks-from
openmetrics``, and starts the Debian ``prometheus`` binary on it with no scrape targets.
Tests get its URL and the ground truth (requests per minute). A second, steady series
(``service="admin"``) lets tests check that an unaggregated query is refused, and a
30-minute scrape outage on the first afternoon shows up as missing values.

The week is fixed (2026-03-02, a Monday) rather than "the last few days": Prometheus
measures retention back from its newest sample, not from the wall clock, so old blocks are
kept, and fixed dates make every run see the same series and the same day types.

:class:`FaultProxy` sits between a client and that Prometheus over real HTTP: it records
every request's parameters and answers the next requests with injected statuses (429 with
``Retry-After``, 503) or delays, then forwards again.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd
import pytest

from forecaster.generate import TrafficProfile, generate_traffic

START = date(2026, 3, 2)
"""A Monday: Monday to Thursday are ordinary working days in China that week."""

DAYS = 4
SCRAPE_SECONDS = 15
PROFILE = TrafficProfile(service="portal", peak_rps=8.0, maintenance_every_days=0)
GAP = (pd.Timestamp("2026-03-02 06:00"), pd.Timestamp("2026-03-02 06:30"))
"""UTC times (Monday 14:00 in Shanghai) between which nothing was scraped: an outage."""


@dataclass(frozen=True)
class PromServer:
    url: str
    per_minute: pd.Series
    """Requests of the portal in each minute, indexed by the minute's start (naive UTC)."""

    start: pd.Timestamp
    end: pd.Timestamp
    """First and last sample times (naive UTC)."""


def write_openmetrics(path: Path) -> tuple[pd.Series, pd.Timestamp, pd.Timestamp]:
    """Write the counters as OpenMetrics text; return the truth and the first/last sample."""
    traffic = generate_traffic(PROFILE, START, DAYS, seed=7)
    before = np.concatenate([[0], np.cumsum(traffic.counts)])  # requests before each second
    offsets = np.arange(0, traffic.seconds + 1, SCRAPE_SECONDS)
    first = traffic.start_utc.tz_localize(None)
    times = first + pd.to_timedelta(offsets, "s")
    scraped = ~((times >= GAP[0]) & (times < GAP[1]))
    epoch = int(traffic.start_utc.timestamp())
    lines = ["# HELP http_requests Requests served.", "# TYPE http_requests counter"]
    for offset in offsets[scraped]:
        stamp = epoch + int(offset)
        lines.append(f'http_requests_total{{service="portal"}} {before[offset]} {stamp}')
        lines.append(f'http_requests_total{{service="admin"}} {offset // 10} {stamp}')
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")
    truth = traffic.true_counts("1min").set_index("ds")["y"]
    return truth, first, times[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromServer]:
    """A backfilled Prometheus on loopback for the whole session, stopped at its end."""
    missing = [name for name in ("prometheus", "promtool") if shutil.which(name) is None]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not installed: run scripts/test-services.sh prometheus"
        )
    root = tmp_path_factory.mktemp("prometheus")
    data = root / "data"
    truth, start, end = write_openmetrics(root / "series.om")
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", "series.om", str(data)],
        cwd=root,
        check=True,
        capture_output=True,
    )
    (root / "prometheus.yml").write_text("scrape_configs: []\n")
    port = free_port()
    log = open(root / "prometheus.log", "wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=3650d",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, root / "prometheus.log")
        yield PromServer(url, truth, start, end)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 30) -> None:
    """Poll ``/-/ready``; fail with the server's log if it exits or never gets ready."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"prometheus not ready after {seconds} s:\n{log.read_text()[-2000:]}")


@dataclass
class Fault:
    """Answer the next ``times`` requests with ``status`` (after ``delay`` seconds), and
    ``body`` (default: a Prometheus error) — a 200 with a crafted body fakes bad data."""

    status: int
    times: int = 1
    retry_after: str | None = None
    delay: float = 0.0
    body: bytes | None = None
    path: str | None = None
    """Only requests to this path (``/api/v1/query``); None: every request."""


@dataclass
class FaultProxy:
    """A loopback HTTP proxy to ``upstream`` that records requests and injects faults."""

    upstream: str
    faults: list[Fault] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    """Path and parameters (query string and form body) of every request, in order."""
    authorizations: list[str] = field(default_factory=list)
    """The ``Authorization`` header of every request ("" when absent), in order."""

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        serve = self.server.serve_forever
        threading.Thread(target=serve, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next_fault(self, path: str) -> Fault | None:
        with self.lock:
            fault = next((f for f in self.faults if f.path in (None, path)), None)
            if fault is None:
                return None
            fault.times -= 1
            if fault.times <= 0:
                self.faults.remove(fault)
            return fault

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                params = dict(parse_qsl(parts.query)) | dict(parse_qsl(body.decode()))
                with proxy.lock:
                    proxy.requests.append({"path": parts.path, **params})
                    proxy.authorizations.append(self.headers.get("Authorization", ""))
                fault = proxy._next_fault(parts.path)
                if fault is not None:
                    time.sleep(fault.delay)
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    error = {"status": "error", "errorType": "unavailable", "error": "injected"}
                    body = fault.body if fault.body is not None else json.dumps(error).encode()
                    self._reply(fault.status, body, headers)
                    return
                request = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body if self.command == "POST" else None,
                    method=self.command,
                    headers={"Content-Type": self.headers.get("Content-Type", "")},
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        self._reply(answer.status, answer.read())
                except urllib.error.HTTPError as answer:
                    self._reply(answer.code, answer.read())

            def _reply(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout was shorter than the delay)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
