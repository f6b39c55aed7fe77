"""Hostile input in what people read: reasons and messages that hold markup or control
characters in the review page and the plain-language account, bad queries, and clients
that trickle, read slowly or arrive all at once on the controller's and the feed's ports."""

from __future__ import annotations

import html
import http.client
import socket
import threading
import time
import urllib.request
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from controller.decisions import DecisionLog
from controller.explain import applied_status, explain
from controller.feed import FeedServer
from controller.http import ControllerHTTPServer, RouteServer, ThreadedServer
from controller.review import review_page, review_route
from tests.test_decisions import T0, sample

EVIL = '</script><script>alert(1)</script><img src=x onerror="alert(1)">'


def test_review_table_escapes_the_recorded_reason_a_decision_was_not_applied() -> None:
    # The applied column shows the reason recorded in the log's not_applied column; it was
    # written into the table unescaped, so a log holding markup there ran it in the page.
    record = sample(0, not_applied=f"Conflicting{EVIL}: words", applied=False)
    text = review_page([record.scaler], {record.scaler: [record]}, since=T0)
    assert EVIL not in text
    assert f"<td>no (Conflicting{html.escape(EVIL)})</td>" in text


def test_explain_keeps_quoted_words_on_one_line_and_disarms_terminal_escapes() -> None:
    # A validating webhook's refusal, one violation a line, with an escape sequence in it
    # (clear the screen, retitle the terminal), and an override named with a colour code.
    refusal = (
        'ScaleFailed: could not apply 30 replicas: admission webhook "policy.example.com" '
        "denied the request:\n- [replicas] above the quota\r\n\x1b[2J\x1b]0;owned\x07- done"
    )
    record = sample(
        0,
        applied=False,
        not_applied=refusal,
        clamps=("ScheduledOverride/launch\x1b[31m\nday",),
        override="launch\x1b[31m\nday",
    )
    text = explain(record)
    assert "\n" not in text and "\r" not in text and "\x1b" not in text and "\x07" not in text
    assert "scheduled override launch\\x1b[31m day sets the bounds" in text
    assert (
        "denied the request: - [replicas] above the quota  \\x1b[2J\\x1b]0;owned\\x07- done."
        in text
    )
    odd = replace(record, not_applied="Scale\x1b[2JFailed: words")
    assert applied_status(odd) == "no (Scale\\x1b[2JFailed)"


@pytest.mark.parametrize("zone", ["Europe", "America", "a" * 300])
def test_review_route_answers_400_to_a_region_or_an_overlong_zone(
    tmp_path: Path, zone: str
) -> None:
    # ?tz=Europe (a region, no city) is a directory of the zone database and a 300-letter
    # name too long for a file name: zoneinfo raises OSError for both, which the page took
    # for a failure of its own (500, and a traceback in the controller's log).
    with DecisionLog(f"sqlite:///{tmp_path / 'decisions.db'}") as log:
        log.record(sample(0))
        route = review_route(log, clock=lambda: T0 + timedelta(hours=1))
        status, kind, body = route(f"/ui?tz={zone}")
    assert (status, kind) == (400, "text/plain; charset=utf-8")
    assert body.decode() == f"{zone!r} is not a time zone like Europe/Berlin or Asia/Shanghai\n"


def test_controller_endpoints_answer_head_as_get_without_a_body() -> None:
    # RFC 9110: a server supports HEAD wherever it supports GET. Uptime checkers and
    # `curl -I` send it; every endpoint answered 501 Unsupported method.
    server = ControllerHTTPServer(
        CollectorRegistry(), lambda: (True, "ok"), lambda: (False, "not leading"), "127.0.0.1", 0
    ).start()
    try:
        for path, status, length in (("/healthz", 200, 3), ("/readyz", 503, 12), ("/x", 404, 10)):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            connection.request("HEAD", path)
            response = connection.getresponse()
            assert (response.status, response.getheader("Content-Length")) == (status, str(length))
            assert response.read() == b""
            connection.close()
    finally:
        server.stop()


class _Watched(DecisionLog):
    """A log that notes how many pages read it at once (each page counts first)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.lock = threading.Lock()
        self.reading = self.most = 0

    def counts(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, int]:
        with self.lock:
            self.reading += 1
            self.most = max(self.most, self.reading)
        time.sleep(0.2)  # a page being rendered
        try:
            return super().counts(since, until)
        finally:
            with self.lock:
                self.reading -= 1


def test_review_route_renders_one_page_at_a_time(tmp_path: Path) -> None:
    # Each request has a thread of its own; pages rendered side by side each took their
    # memory (ten at the cap: 500 MB more), which the per-page cap was there to bound.
    with _Watched(f"sqlite:///{tmp_path / 'decisions.db'}") as log:
        log.record(sample(0))
        route = review_route(log, clock=lambda: T0 + timedelta(hours=1))
        answers: list[int] = []
        readers = [
            threading.Thread(target=lambda: answers.append(route("/ui")[0])) for _ in range(4)
        ]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
    assert answers == [200] * 4
    assert log.most == 1


def _dripped_until_closed(port: int, seconds: float) -> float | None:
    """Send a request head a byte every 0.1 s; when the server closed the connection
    (seconds after connecting), or None if it was still open after ``seconds``."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 1000
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=0.1) as sock:
        for byte in head:
            if time.monotonic() - start > seconds:
                return None
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1024) == b"":
                    return time.monotonic() - start
            except TimeoutError:
                pass
            except OSError:  # reset: closed too
                return time.monotonic() - start
            time.sleep(0.1)
    return None


@pytest.mark.parametrize("kind", ["controller", "feed"])
def test_a_request_head_sent_a_byte_at_a_time_is_cut_off(kind: str) -> None:
    # Slowloris: each byte well within the idle timeout, the head never finished. Each
    # connection holds a thread (and a file descriptor), for as long as the client liked:
    # on the public feed port, anyone could exhaust them.
    server: ThreadedServer
    if kind == "controller":
        server = ControllerHTTPServer(
            CollectorRegistry(), lambda: (True, "ok"), lambda: (True, "ok"), "127.0.0.1", 0, 0.5
        )
    else:
        server = FeedServer(lambda key: None, host="127.0.0.1", port=0)
        server.server.RequestHandlerClass.timeout = 0.5
    server.start()
    try:
        closed = _dripped_until_closed(server.port, 4.0)
        assert closed is not None and closed < 2.0
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as r:
            assert r.status == 200  # and the server serves the next client as before
    finally:
        server.stop()


def test_a_large_answer_to_a_steady_slow_reader_is_sent_whole() -> None:
    # The socket's timeout bounds a whole sendall: a review page (5-20 MB) to a reader
    # taking it steadily at 2 MB/s was cut off once the timeout had passed, mid-page.
    body = bytes(range(256)) * 12_000  # 3 MB
    server = RouteServer(
        {"/big": lambda _: (200, "text/plain", body)}, "127.0.0.1", 0, request_timeout=0.5
    )
    # Small buffers both ends (connections inherit the listener's), so the kernel cannot
    # take the whole answer at once and the reader's pace is what the server meets.
    server.server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    server.start()
    try:
        with socket.socket(server.server.address_family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.settimeout(5)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET /big HTTP/1.0\r\n\r\n")
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
                time.sleep(0.03)  # about 2 MB/s: 1.5 s in all, three times the timeout
    finally:
        server.stop()
    assert received.endswith(b"\r\n\r\n" + body)


def test_a_burst_of_connections_is_queued_not_dropped() -> None:
    # The standard library's listen backlog is 5: of 300 readers connecting at once, 92
    # were dropped by the kernel and waited 1 to 4.5 s to try again (past a probe's 1 s).
    server = FeedServer(lambda key: None, host="127.0.0.1", port=0).start()
    waits: list[float] = []

    def read() -> None:
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.0 200")
        waits.append(time.monotonic() - start)

    readers = [threading.Thread(target=read) for _ in range(200)]
    try:
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
    finally:
        server.stop()
    assert len(waits) == 200
    # A connection the kernel dropped waits at least a second for its first retry.
    assert sum(wait > 0.9 for wait in waits) <= 2
