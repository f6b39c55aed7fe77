"""Every Prometheus call surgecast makes, and nothing else.

The rest of the controller receives plain data: a float for the load now, and a
long-format frame (``unique_id, ds, y``, ``ds`` naive UTC, NaN for missing steps) for the
history a model trains on. Two things live here:

* :class:`PrometheusClient` runs instant and range queries over the HTTP API, one at a
  time or many in one request (a controller of 1,000 scalers would otherwise send 1,000
  requests each cycle). Range queries are split into chunks the server accepts (it
  refuses more than 11,000 points per series). Passing failures (a refused connection, a
  timeout, 429, 5xx) are retried with the project's :class:`~controller.kube.RetryPolicy`;
  a bad query fails at once.
* :class:`HistoryCache` keeps the history of every scaler's query, so every loop pulls
  only the last few minutes instead of weeks, and optionally keeps it on disk across
  restarts.

Errors are typed so the caller can act on them: :class:`PrometheusUnavailable` means
"decide reactively for now" (the Fallback condition), :class:`PrometheusQueryError` means
the PromQL in the spec is wrong, :class:`PrometheusDataError` means the query returned
something other than one series.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias, TypeVar
from urllib.parse import unquote, urljoin, urlsplit

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import requests
import urllib3

from controller.kube import RetryPolicy

log = logging.getLogger(__name__)

MAX_POINTS = 10_000
"""Points per range request; Prometheus refuses more than 11,000 per series."""

Duration: TypeAlias = timedelta | str
"""A step or window: a ``timedelta`` (or ``pd.Timedelta``), or a string like ``"1min"``."""

BATCH_LABEL = "surgecast_batch"
"""The label that tells, in a batched answer, which query a series answers."""

_T = TypeVar("_T")


class PrometheusError(Exception):
    """Any failure to get usable data from Prometheus."""


class PrometheusUnavailable(PrometheusError):
    """Prometheus could not answer (network, timeout, 5xx, 429) after every retry, or
    refused us (401, 403, 404). Decide reactively until it is back."""


class PrometheusQueryError(PrometheusError):
    """Prometheus rejected the query (400/422); the message is Prometheus's own."""


class PrometheusDataError(PrometheusError):
    """The answer was not what the caller needs: several series, a wrong result type,
    or a body that is not the Prometheus API's JSON."""


class BearerTokenFile(requests.auth.AuthBase):
    """``Authorization: Bearer TOKEN`` with the token read from a file at every request.

    The file is a mounted Secret (or a projected service-account token): reading it each
    time picks up a rotated token without a restart, and the token never sits in a
    command line, an environment variable or the PredictiveScaler spec.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.token = ""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        try:
            token = self.path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise PrometheusUnavailable(
                f"cannot read the bearer token file {self.path}: {reason}"
            ) from None
        if not _TOKEN.fullmatch(token):
            # A header cannot carry it, and the HTTP library's error would quote it, into
            # the logs: say what is wrong without a character of it.
            raise PrometheusUnavailable(
                f"the bearer token file {self.path} does not hold one token: it is empty or"
                " has spaces, line breaks or characters a token cannot have"
            )
        self.token = token
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


_TOKEN = re.compile(r"[\x21-\x7e]+")
"""A bearer token: printable ASCII with no space (RFC 6750's token68, and the JWTs and
opaque tokens of real servers, are all of it)."""


def client_factory(
    token_file: str | Path | None = None, token_url: str | None = None, **options: Any
) -> Callable[[str], PrometheusClient]:
    """Builds the client for a scaler's Prometheus URL, with the bearer token only for
    URLs under ``token_url``: a scaler's author chooses its URL, so a token sent to every
    URL would be handed to whoever asks for it. ``options`` go to every client."""
    if (token_file is None) != (token_url is None):
        raise ValueError("a bearer token file needs the Prometheus URL it is for, and back")
    auth = BearerTokenFile(token_file) if token_file is not None else None

    def build(url: str) -> PrometheusClient:
        if auth is None or _under(url, token_url):
            return PrometheusClient(url, auth=auth, **options)
        # The usual cause of a 401 here is the same Prometheus spelt another way
        # ("prometheus.monitoring" against "prometheus.monitoring.svc"): say so.
        withheld = f"no bearer token was sent, as it is only for URLs under {token_url}"
        return PrometheusClient(url, withheld=withheld, **options)

    return build


def _under(url: str, base: str | None) -> bool:
    if base is None:
        return False
    try:
        one, two = urlsplit(url), urlsplit(base)
    except ValueError:  # e.g. "http://[::1": no request can go there, so no token either
        return False
    if {".", ".."} & set(unquote(one.path).split("/")):
        # "BASE/../other" is not under BASE: the request goes to "/other" (the client
        # or the server resolves the dots), which a path-routing gateway may send to
        # another tenant or backend.
        return False
    prefix = two.path.rstrip("/")
    return (one.scheme, one.netloc) == (two.scheme, two.netloc) and (
        one.path.rstrip("/") == prefix or one.path.startswith(prefix + "/")
    )


class PrometheusClient:
    """Instant and range queries against one Prometheus (or a compatible API: Thanos,
    Mimir, VictoriaMetrics).

    Args:
        url: base URL, e.g. ``http://prometheus.monitoring:9090``.
        timeout: seconds before one request is abandoned and retried; defaults to
            ``retry.timeout``.
        retry: attempts and backoff for passing failures (shared with the Kubernetes client).
        headers: sent with every request, e.g. ``X-Scope-OrgID``.
        auth: a bearer token read from a file; the token never appears in errors.
        max_points: most points a single range request may ask for.
        max_batch: most queries :meth:`instant_many` and :meth:`range_many` put in one
            request: 64 turns the instant queries of 1,000 scalers into 16 requests.
        max_batch_points: most points (queries times steps) in one batched range request.
            Prometheus evaluates a batch step by step through every ``or``, which costs
            more than separate requests once the ranges are long (Prometheus 2.42, 64
            queries of 10,000 steps: 1.7 s batched, 0.44 s one by one), while for the
            few steps of a cache's tail batching is what pays (64 queries of 9 steps:
            8 ms batched, 97 ms one by one). 100,000 lets 64 tails of up to 26 hours
            share a request, and 10 queries of a whole 10,000-step chunk.
        max_batch_chars: most PromQL characters in one batched request, so the form body
            (up to three times longer once URL-encoded) stays below the 1 MB a proxy such
            as nginx accepts by default. A longer query is sent in a batch of its own.
        withheld: why no token is sent to this URL though the controller has one; a 401
            or 403 answer then says it.
        sleep, rng: injectable so tests run retries instantly and repeatably.
    """

    def __init__(
        self,
        url: str,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        headers: dict[str, str] | None = None,
        auth: BearerTokenFile | None = None,
        max_points: int = MAX_POINTS,
        max_batch: int = 64,
        max_batch_points: int = 100_000,
        max_batch_chars: int = 100_000,
        withheld: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_points < 1:
            raise ValueError("max_points must be at least 1")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.url = url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.timeout = self.retry.timeout if timeout is None else timeout
        self.max_points = max_points
        self.max_batch = max_batch
        self.max_batch_points = max_batch_points
        self.max_batch_chars = max_batch_chars
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        self.session.auth = auth
        self.auth = auth
        self.withheld = withheld
        self._alone: set[str] = set()
        """Queries Prometheus refused inside a batch (a scalar such as ``scalar(...)``,
        which ``label_replace`` cannot take, or bad PromQL): they are sent on their own."""

    def instant(self, query: str, at: datetime | None = None) -> float | None:
        """The value of ``query`` at ``at`` (default: the server's now).

        None when there is no data (an empty result, NaN or ±Inf): the caller treats the
        load as unknown rather than zero. The query must aggregate to one series (wrap it
        in ``sum(...)``); several series raise :class:`PrometheusDataError`, because
        picking one of them silently would scale on part of the load.
        """
        data = self._post("/api/v1/query", {"query": query, **_time_param(at)})
        return _instant_value(data, query)

    def instant_many(
        self, queries: Sequence[str], at: datetime | None = None
    ) -> list[float | None | PrometheusError]:
        """What :meth:`instant` gives for each query, in order, with few requests.

        A failure is returned in the query's place rather than raised, so one scaler's
        bad query does not cost the others their load. See :meth:`_many` for how queries
        share a request.
        """
        params = _time_param(at)

        def ask(batch: list[str]) -> list[float | None | PrometheusError]:
            data = self._post("/api/v1/query", {"query": _tagged(batch), **params})
            answers: list[float | None | PrometheusError] = []
            for query, part in zip(batch, _split(data, "vector", len(batch)), strict=True):
                try:
                    answers.append(_instant_value({"resultType": "vector", "result": part}, query))
                except PrometheusDataError as exc:
                    answers.append(exc)
            return answers

        return self._many(queries, self.max_batch, ask, lambda query: self.instant(query, at))

    def range(self, query: str, start: datetime, end: datetime, step: Duration) -> pd.Series:
        """Values of ``query`` at ``start``, ``start + step``, ... up to ``end``.

        The series always has the full regular grid as its index (naive UTC, from
        ``start`` taken to the millisecond as the API takes it), with NaN
        where Prometheus has no value, so a gap stays visible as a gap. Long windows are
        fetched in chunks of at most ``max_points`` points each.
        """
        first, last, step = _range_grid(start, end, step)
        chunks = [
            _matrix_series(self._post("/api/v1/query_range", _range_params(query, *chunk)), query)
            for chunk in self._chunks(first, last, step)
        ]
        return _on_grid(chunks, first, last, step)

    def range_many(
        self, queries: Sequence[str], start: datetime, end: datetime, step: Duration
    ) -> list[pd.Series | PrometheusError]:
        """What :meth:`range` gives for each query, in order, with few requests.

        Every query shares ``start``, ``end`` and ``step``; each batch is chunked as
        :meth:`range` chunks one query. A failure is returned in the query's place rather
        than raised. See :meth:`_many` for how queries share a request.
        """
        first, last, step = _range_grid(start, end, step)

        def ask(batch: list[str]) -> list[pd.Series | PrometheusError]:
            chunks: list[list[pd.Series]] = [[] for _ in batch]
            errors: list[PrometheusError | None] = [None for _ in batch]
            for chunk in self._chunks(first, last, step):
                data = self._post("/api/v1/query_range", _range_params(_tagged(batch), *chunk))
                for i, part in enumerate(_split(data, "matrix", len(batch))):
                    if errors[i] is None:
                        try:
                            matrix = {"resultType": "matrix", "result": part}
                            chunks[i].append(_matrix_series(matrix, batch[i]))
                        except PrometheusDataError as exc:
                            errors[i] = exc  # range() would have stopped at this chunk
            return [
                _on_grid(parts, first, last, step) if error is None else error
                for error, parts in zip(errors, chunks, strict=True)
            ]

        points = min((last - first) // step + 1, self.max_points)
        size = max(1, min(self.max_batch, self.max_batch_points // points))
        return self._many(queries, size, ask, lambda query: self.range(query, first, last, step))

    def _many(
        self,
        queries: Sequence[str],
        size: int,
        ask: Callable[[list[str]], list[_T | PrometheusError]],
        alone: Callable[[str], _T],
    ) -> list[_T | PrometheusError]:
        """The answer to each query, asked in batches of at most ``size`` distinct queries.

        A batch is one PromQL expression: each query tagged with its position by
        ``label_replace`` and joined with ``or``; ``ask`` splits the answer by that tag.
        Prometheus rejects a whole batch when one of its queries cannot be tagged (a
        scalar) or is bad PromQL, or when the batch together exceeds a limit (422, too
        many samples): the batch's queries are then asked one by one, and a query rejected
        even in a batch of its own is remembered in ``_alone`` and sent untagged from then
        on, so a scalar costs the extra requests once. Once Prometheus is unavailable,
        the remaining batches get the same error without being sent: retrying each of
        them with backoff would stall the loop for minutes when the server is down.
        """
        answers: dict[str, _T | PrometheusError] = {}
        down: PrometheusUnavailable | None = None
        for batch in self._batches(list(dict.fromkeys(queries)), size):
            if down is not None:
                answers.update(dict.fromkeys(batch, down))
                continue
            try:
                answers.update(zip(batch, self._answer(batch, ask, alone), strict=True))
            except PrometheusUnavailable as exc:
                answers.update(dict.fromkeys(batch, exc))
                down = exc
            except PrometheusError as exc:  # an answer that is not the API's: no batch retry
                answers.update(dict.fromkeys(batch, exc))
        return _spread(queries, answers)

    def _batches(self, queries: list[str], size: int) -> list[list[str]]:
        """Consecutive queries grouped by ``size`` and under ``max_batch_chars``;
        each query in ``_alone`` is a batch of its own."""
        batches: list[list[str]] = []
        batch: list[str] = []
        chars = 0
        for query in queries:
            if query in self._alone:
                batches.append([query])
                continue
            if batch and (len(batch) == size or chars + len(query) > self.max_batch_chars):
                batches.append(batch)
                batch, chars = [], 0
            batch.append(query)
            chars += len(query)
        if batch:
            batches.append(batch)
        return batches

    def _answer(
        self,
        batch: list[str],
        ask: Callable[[list[str]], list[_T | PrometheusError]],
        alone: Callable[[str], _T],
    ) -> list[_T | PrometheusError]:
        """The answers to one batch; raises only what fails the whole batch."""
        if batch[0] in self._alone:
            try:
                return [alone(batch[0])]
            except (PrometheusQueryError, PrometheusDataError) as exc:
                return [exc]
        try:
            return ask(batch)
        except PrometheusQueryError:
            if len(batch) == 1:
                self._alone.add(batch[0])
            return [answer for query in batch for answer in self._answer([query], ask, alone)]

    def _chunks(
        self, first: pd.Timestamp, last: pd.Timestamp, step: pd.Timedelta
    ) -> list[tuple[pd.Timestamp, pd.Timestamp, pd.Timedelta]]:
        """``first..last`` cut into ranges of at most ``max_points`` steps."""
        chunks = []
        start = first
        while start <= last:
            end = min(start + step * (self.max_points - 1), last)
            chunks.append((start, end, step))
            start = end + step
        return chunks

    def _post(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """One API call with retries; the ``data`` member of a successful answer.

        POST with a form body, as Grafana does: long PromQL does not fit in a URL. Errors
        quote the server's answer, which a misconfigured proxy may fill with the request's
        own credentials: they are redacted before the message goes to Events and status.
        """
        try:
            return self._post_with_retries(path, params)
        except PrometheusError as exc:
            raise type(exc)(self._redact(str(exc))) from None

    def _redact(self, text: str) -> str:
        secrets = [_password(self.url), self.auth.token if self.auth else None]
        for secret in secrets:
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    def _post_with_retries(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        failure = ""
        for attempt in range(self.retry.attempts):
            retry_after = None
            try:
                response = self.session.post(self.url + path, data=params, timeout=self.timeout)
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            except (requests.RequestException, urllib3.exceptions.LocationValueError) as exc:
                # A URL that cannot be sent to (a port out of range, a stray colon) or a
                # redirect loop: asking again cannot help, and the scaler's status must
                # say so rather than its reconcile fail with no word to its author.
                raise PrometheusUnavailable(
                    f"{self.url}{path}: cannot be asked: {type(exc).__name__}: {exc}"
                ) from None
            else:
                _refuse_lossy_redirect(response, path)
                if response.status_code not in self.retry.retry_statuses:
                    return _data(response, params["query"], self.withheld)
                failure = f"HTTP {response.status_code}: {_error_message(response)}"
                retry_after = _retry_after(response)
            if attempt == self.retry.attempts - 1:
                break
            if retry_after is not None and retry_after > self.retry.cap:
                # Waiting that long would stall the control loop: give up now, decide
                # reactively, and ask again at the next sync.
                raise PrometheusUnavailable(
                    f"{self.url}{path}: {failure}; asked to retry after {retry_after:g} s"
                )
            self.sleep(self.retry.delay(attempt, self.rng, retry_after))
        raise PrometheusUnavailable(
            f"{self.url}{path}: {failure} (after {self.retry.attempts} attempts)"
        )


class HistoryCache:
    """The history of each query, kept on a compact grid and extended incrementally.

    The cache is keyed by (Prometheus URL, query, step), so one cache serves every scaler
    of a controller, and scalers with the same query share one series. Per key it keeps
    the longest window ever asked for, ending at the newest ``end``: the reconciler asks
    for the last two hours every cycle and for four weeks every half hour, and a short
    :meth:`get` must not drop the weeks the long one would then pull again.

    The first :meth:`get` pulls the whole window; later ones pull only from the last
    cached step minus ``overlap`` (samples that arrived late, e.g. through remote write,
    replace the values computed before they came), so a 30-second loop over weeks of
    history costs one small request, and none when the series is already up to ``end``.
    :meth:`prefetch` brings many series up to date with a few batched requests.

    A series is stored as its first timestamp, its step and a float64 array on the implicit
    regular grid: 8 bytes a point, so 1,000 series of 28 days at 1 minute take 323 MB.

    With ``directory``, each series is also kept as a parquet file there, so a restarted
    controller does not pull weeks again. A file is rewritten when its series has moved
    on by ``save_every`` or got longer, not at every cycle: rewriting 1,000 files of four
    weeks every 30 s would write 10 MB/s to disk, and a file a few minutes old costs one
    small pull after a restart.

    One cache serves one loop: it is not locked for use from several threads.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        overlap: Duration = timedelta(minutes=5),
        save_every: Duration = timedelta(minutes=10),
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.overlap = pd.Timedelta(overlap)
        self.save_every = pd.Timedelta(save_every)
        self._series: dict[_Key, _Stored] = {}
        self._saved: dict[_Key, tuple[pd.Timestamp, int]] = {}
        """Last step and length of each series as last written to its file."""

    def __len__(self) -> int:
        """Series held in memory."""
        return len(self._series)

    @property
    def nbytes(self) -> int:
        """Bytes of the values held in memory (what grows with scalers and history)."""
        return sum(stored.values.nbytes for stored in self._series.values())

    def get(
        self,
        client: PrometheusClient,
        query: str,
        end: datetime,
        window: Duration,
        step: Duration = "1min",
        unique_id: str | None = None,
    ) -> pd.DataFrame:
        """History of ``query`` over ``window`` up to ``end``, as a long-format frame.

        Timestamps are multiples of ``step`` (so successive calls share one grid) in
        ``(end - window, end]``; ``y`` is NaN where Prometheus has no value. ``unique_id``
        names the series in the frame (default: the query itself).
        """
        step = _step(step)
        first, last = _window_grid(end, window, step)
        return pd.DataFrame(
            {
                "unique_id": unique_id or query,
                "ds": pd.date_range(first, last, freq=step, unit="ns"),
                "y": self.values(client, query, end, window, step),
            }
        )

    def values(
        self,
        client: PrometheusClient,
        query: str,
        end: datetime,
        window: Duration,
        step: Duration = "1min",
    ) -> npt.NDArray[np.float64]:
        """The ``y`` of :meth:`get` alone (a copy), for callers that need no frame: the
        controller reads the last two hours of every scaler at every cycle."""
        step = _step(step)
        first, last = _window_grid(end, window, step)
        key = (client.url, query, step)
        stored = self._stored(key)
        plan = _plan(stored, first, last, step, self.overlap)
        if plan.pulls:
            pieces = [client.range(query, since, until, step) for since, until in plan.pulls]
            stored = self._put(key, _merged(stored, plan, pieces, step))
        assert stored is not None  # a plan without pulls extends a stored series
        return _between(stored, first, last).copy()

    def prefetch(
        self,
        client: PrometheusClient,
        queries: Sequence[str],
        end: datetime,
        window: Duration,
        step: Duration = "1min",
    ) -> dict[str, PrometheusError]:
        """Brings every query's series up to ``end`` (over at least ``window``) with as
        few requests as possible, so that a :meth:`get` of one of them with this ``end``
        and a window up to ``window`` then asks Prometheus nothing.

        Series brought up to the same step in the last cycle need the same range, so
        their tails are pulled together with :meth:`PrometheusClient.range_many`, as are
        the full windows of new ones, after the tails. Returns the error of each query
        that could not be brought up to date; those keep the history they had.
        """
        step = _step(step)
        first, last = _window_grid(end, window, step)
        plans: dict[str, tuple[_Stored | None, _Plan]] = {}
        wanted: dict[tuple[pd.Timestamp, pd.Timestamp], list[str]] = {}
        for query in dict.fromkeys(queries):
            stored = self._stored((client.url, query, step))
            plan = _plan(stored, first, last, step, self.overlap)
            plans[query] = (stored, plan)
            for pull in plan.pulls:
                wanted.setdefault(pull, []).append(query)
        pieces: dict[str, list[pd.Series]] = {query: [] for query in plans}
        errors: dict[str, PrometheusError] = {}
        down: PrometheusUnavailable | None = None
        # Shortest ranges first: the tails that keep every established series current
        # are cheap, and a new query's weeks that time out must not cost them their turn
        # (once one range finds Prometheus unavailable, the rest are not asked).
        for (since, until), group in sorted(
            wanted.items(), key=lambda item: item[0][1] - item[0][0]
        ):
            # A slice at a time, and each series stored as soon as it is whole, so that
            # pulling weeks for 1,000 new queries never holds them all as pandas Series.
            for offset in range(0, len(group), client.max_batch):
                part = group[offset : offset + client.max_batch]
                answers: list[pd.Series | PrometheusError] = (
                    [down] * len(part)  # as range_many does: no retries once it is down
                    if down is not None
                    else client.range_many(part, since, until, step)
                )
                for query, answer in zip(part, answers, strict=True):
                    if isinstance(answer, PrometheusError):
                        errors.setdefault(query, answer)
                        pieces.pop(query, None)
                        if isinstance(answer, PrometheusUnavailable):
                            down = answer
                    elif query in pieces:
                        pieces[query].append(answer)
                        stored, plan = plans[query]
                        if len(pieces[query]) == len(plan.pulls):
                            merged = _merged(stored, plan, pieces.pop(query), step)
                            self._put((client.url, query, step), merged)
        return errors

    def forget(self, url: str, query: str, step: Duration) -> None:
        """Drops one series, and its file: a deleted scaler's history would otherwise be
        kept in memory, and read back at every start, for good. A scaler with the same
        query and step shares the series and pulls it again at its next :meth:`get`."""
        key = (url.rstrip("/"), query, _step(step))
        self._series.pop(key, None)
        self._saved.pop(key, None)
        path = self._path(key)
        if path is not None:
            path.unlink(missing_ok=True)

    def _stored(self, key: _Key) -> _Stored | None:
        """The series in memory, else the one saved by an earlier run, else None."""
        stored = self._series.get(key)
        if stored is None:
            stored = self._load(key)
            if stored is not None:
                self._series[key] = stored
                self._saved[key] = (stored.last, len(stored.values))
        return stored

    def _put(self, key: _Key, stored: _Stored) -> _Stored:
        self._series[key] = stored
        saved = self._saved.get(key)
        if (
            saved is None
            or stored.last - saved[0] >= self.save_every
            or len(stored.values) > saved[1]
        ):
            self._save(key, stored)
        return stored

    def _path(self, key: _Key) -> Path | None:
        if self.directory is None:
            return None
        url, query, step = key
        digest = hashlib.sha256(f"{url}\n{query}\n{step.total_seconds():g}".encode()).hexdigest()
        return self.directory / f"{digest[:24]}.parquet"

    def _load(self, key: _Key) -> _Stored | None:
        """The series saved by an earlier run, or None (a bad file is deleted, not fatal)."""
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            table = pq.read_table(path)
            about = json.loads((table.schema.metadata or {})[_FILE_KEY])
            if about.get("format") != _FILE_FORMAT:
                raise ValueError(f"format {about.get('format')!r}, not {_FILE_FORMAT}")
            start = pd.Timestamp(about["start_ns"], unit="ns")
            step = pd.Timedelta(about["step_ns"], unit="ns")
            values = np.array(table.column("y").to_numpy(), dtype=np.float64)
            if step != key[2] or start.value % step.value or not len(values):
                raise ValueError(f"a series of {len(values)} from {start} every {step}")
            return _Stored(start, step, values)
        except Exception as exc:  # a cache only saves time: any damage means pull again
            log.warning("discarding unreadable history cache %s: %s", path, exc)
            path.unlink(missing_ok=True)
            return None

    def _save(self, key: _Key, stored: _Stored) -> None:
        """Write through a temporary file, so a crash mid-write leaves the old file whole."""
        path = self._path(key)
        if path is None:
            return
        about = {
            "format": _FILE_FORMAT,
            "start_ns": stored.start.value,
            "step_ns": stored.step.value,
        }
        table = pa.table({"y": stored.values}).replace_schema_metadata(
            {_FILE_KEY: json.dumps(about)}
        )
        partial = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, partial)
            os.replace(partial, path)
        except OSError as exc:
            log.warning("cannot write history cache %s: %s", path, exc)
            return
        self._saved[key] = (stored.last, len(stored.values))


_Key: TypeAlias = tuple[str, str, pd.Timedelta]
"""(Prometheus URL, query, step): what identifies one cached series."""

_FILE_KEY = b"surgecast.history"
_FILE_FORMAT = 2
"""Format 1 kept a ``ds`` column beside ``y``; its files are discarded and pulled again."""


@dataclass(frozen=True)
class _Stored:
    """One series on its implicit regular grid: ``values[i]`` is at ``start + i * step``."""

    start: pd.Timestamp
    step: pd.Timedelta
    values: npt.NDArray[np.float64]

    @property
    def last(self) -> pd.Timestamp:
        return self.start + self.step * (len(self.values) - 1)


@dataclass(frozen=True)
class _Plan:
    """The grid a series covers after a get, and the ranges to pull to get there."""

    start: pd.Timestamp
    last: pd.Timestamp
    pulls: list[tuple[pd.Timestamp, pd.Timestamp]]


def _plan(
    stored: _Stored | None,
    first: pd.Timestamp,
    last: pd.Timestamp,
    step: pd.Timedelta,
    overlap: pd.Timedelta,
) -> _Plan:
    """What to pull so the series covers ``first..last`` and still its stored span.

    The stored span moves on to end at the newest step. When the stored series has no
    step left in that span (the controller was off for longer), it is pulled afresh.
    """
    if stored is not None:
        newest = max(last, stored.last)
        start = min(first, newest - (stored.last - stored.start))
        if stored.last >= start:
            pulls = []
            if start < stored.start:
                pulls.append((start, stored.start - step))
            if newest > stored.last:
                pulls.append((max(start, stored.last - max(overlap, step)), newest))
            return _Plan(start, newest, pulls)
    return _Plan(first, last, [(first, last)])


def _merged(
    stored: _Stored | None, plan: _Plan, pieces: list[pd.Series], step: pd.Timedelta
) -> _Stored:
    """The stored values on the plan's grid, overwritten by every pulled value that is not
    NaN: fresh values win, but a step Prometheus no longer answers keeps its old value."""
    merged = _Stored(plan.start, step, np.full((plan.last - plan.start) // step + 1, np.nan))
    if stored is not None and stored.last >= plan.start:  # else it is pulled afresh
        since = max(plan.start, stored.start)
        _between(merged, since, stored.last)[:] = _between(stored, since, stored.last)
    for piece in pieces:
        fresh = piece.to_numpy(dtype=np.float64)
        target = _between(merged, piece.index[0], piece.index[-1])
        np.copyto(target, fresh, where=~np.isnan(fresh))
    return merged


def _between(stored: _Stored, first: pd.Timestamp, last: pd.Timestamp) -> npt.NDArray[np.float64]:
    """A view of the values from ``first`` to ``last``, both on the series' grid and
    within it (a step outside would wrap around as a negative index)."""
    return stored.values[
        (first - stored.start) // stored.step : (last - stored.start) // stored.step + 1
    ]


def _window_grid(
    end: datetime, window: Duration, step: pd.Timedelta
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last multiple of ``step`` in ``(end - window, end]``."""
    last = _utc(end).floor(step)
    first = (last - pd.Timedelta(window)).floor(step) + step
    if first > last:
        raise ValueError(f"window {window!r} holds no step of {step}")
    return first, last


def _utc(moment: datetime | pd.Timestamp) -> pd.Timestamp:
    """A naive UTC timestamp; naive input is taken to be UTC already, as everywhere here."""
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.as_unit("ns")


def _step(step: Duration) -> pd.Timedelta:
    value = pd.Timedelta(step)
    if value <= pd.Timedelta(0):
        raise ValueError(f"step must be positive, got {step!r}")
    return value


def _unix(stamp: pd.Timestamp) -> str:
    """Seconds since the epoch with millisecond precision, as the API takes them."""
    return f"{stamp.value / 1e9:.3f}"


def _password(url: str) -> str | None:
    """The password in ``url``, if any; None also for a URL that cannot be parsed, as
    ``http://[::1`` (the error that says so must not fail in its turn)."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _sample_value(sample: Any, query: str) -> float:
    """The value of a ``[timestamp, "value"]`` pair (Prometheus sends values as strings)."""
    try:
        return float(sample[1])
    except (IndexError, TypeError, ValueError):
        raise PrometheusDataError(f"query {query!r}: malformed sample {sample!r}") from None


def _check_one_series(result: list[Any], query: str) -> None:
    if len(result) > 1:
        labels = ", ".join(str(series.get("metric", {})) for series in result[:3])
        raise PrometheusDataError(
            f"query {query!r} returned {len(result)} series ({labels}, ...); "
            "aggregate it to one, e.g. with sum(...)"
        )


def _time_param(at: datetime | None) -> dict[str, str]:
    return {} if at is None else {"time": _unix(_utc(at))}


def _instant_value(data: dict[str, Any], query: str) -> float | None:
    """The one value of an instant query's answer (see :meth:`PrometheusClient.instant`)."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return _finite(_sample_value(result, query))
    if kind != "vector" or not isinstance(result, list):
        raise PrometheusDataError(
            f"query {query!r} returned a {kind}; an instant query needs a vector or scalar"
        )
    if not result:
        return None
    _check_one_series(result, query)
    return _finite(_sample_value(result[0].get("value"), query))


def _range_grid(
    start: datetime, end: datetime, step: Duration
) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timedelta]:
    """The range's first and last time and its step. The API takes times to the
    millisecond and answers at ``start + k * step`` from the millisecond it was sent: a
    grid kept at the microseconds of ``datetime.now()`` would match none of its answers."""
    first, last, every = _utc(start).floor("ms"), _utc(end).floor("ms"), _step(step)
    if last < first:
        raise ValueError(f"range end {last} is before its start {first}")
    return first, last, every


def _range_params(
    query: str, start: pd.Timestamp, end: pd.Timestamp, step: pd.Timedelta
) -> dict[str, str]:
    return {
        "query": query,
        "start": _unix(start),
        "end": _unix(end),
        "step": repr(step.total_seconds()),  # all its digits: ":g" kept six
    }


def _matrix_series(data: dict[str, Any], query: str) -> pd.Series:
    """The one series of a range query's answer, indexed by its timestamps."""
    result = data.get("result")
    if data.get("resultType") != "matrix" or not isinstance(result, list):
        raise PrometheusDataError(
            f"range query {query!r} returned a {data.get('resultType')}, not a matrix"
        )
    if not result:
        return pd.Series(dtype=float, index=pd.DatetimeIndex([], dtype="datetime64[ns]"))
    _check_one_series(result, query)
    try:
        stamps = np.array([float(t) for t, _ in result[0]["values"]])
        values = np.array([float(v) for _, v in result[0]["values"]])
    except (KeyError, TypeError, ValueError) as exc:
        raise PrometheusDataError(f"range query {query!r}: malformed values: {exc}") from None
    values[~np.isfinite(values)] = np.nan
    index = pd.to_datetime(np.round(stamps * 1000).astype(np.int64), unit="ms")
    return pd.Series(values, index=index.as_unit("ns"))


def _on_grid(
    chunks: list[pd.Series], first: pd.Timestamp, last: pd.Timestamp, step: pd.Timedelta
) -> pd.Series:
    grid = pd.date_range(first, last, freq=step, unit="ns")
    return pd.concat(chunks).reindex(grid)


def _tagged(queries: list[str]) -> str:
    """One expression answering every query, each answer's series labelled with its
    query's position. The newlines end a ``# comment`` at the end of a query."""
    return _union(
        [
            f'label_replace((\n{query}\n), "{BATCH_LABEL}", "{i}", "", "")'
            for i, query in enumerate(queries)
        ]
    )


def _union(parts: list[str]) -> str:
    """``a or b or ...`` as a balanced tree rather than a chain: over a range, 64 queries
    chained took 1.4 to 2.4 times as long as the tree (Prometheus 2.42)."""
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return f"({_union(parts[:middle])}) or ({_union(parts[middle:])})"


def _split(data: dict[str, Any], kind: str, size: int) -> list[list[dict[str, Any]]]:
    """The series of a batch's answer, grouped by query, without the batch label."""
    result = data.get("result")
    if data.get("resultType") != kind or not isinstance(result, list):
        raise PrometheusDataError(
            f"a batch of queries returned a {data.get('resultType')}, not a {kind}"
        )
    parts: dict[str, list[dict[str, Any]]] = {str(i): [] for i in range(size)}
    for series in result:
        metric = dict(series.get("metric") or {})
        tag = metric.pop(BATCH_LABEL, None)
        if tag not in parts:
            raise PrometheusDataError(f"a batch answer has a series of no query: {series!r:.200}")
        parts[tag].append({**series, "metric": metric})
    return list(parts.values())


def _spread(
    queries: Sequence[str], answers: dict[str, _T | PrometheusError]
) -> list[_T | PrometheusError]:
    """Each query's answer in the order asked; a repeated query gets its own copy of a
    series, so that changing one answer does not change another."""
    spread: list[_T | PrometheusError] = []
    seen: set[str] = set()
    for query in queries:
        answer = answers[query]
        if query in seen and isinstance(answer, pd.Series):
            answer = answer.copy()
        spread.append(answer)
        seen.add(query)
    return spread


def _data(response: requests.Response, query: str, withheld: str | None = None) -> dict[str, Any]:
    """The ``data`` of a final (not retried) answer, or the matching typed error."""
    status = response.status_code
    if status in (400, 422):
        raise PrometheusQueryError(
            f"query {query!r} rejected: {_error_message(response)}{grafana_hint(query)}"
        )
    if status != 200:
        refused = f"; {withheld}" if withheld and status in (401, 403) else ""
        raise PrometheusUnavailable(
            f"{response.url}: HTTP {status}: {_error_message(response)}{refused}"
        )
    try:
        body = response.json()
        if body["status"] != "success" or not isinstance(body["data"], dict):
            raise ValueError(f"status {body['status']!r}")
        return body["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PrometheusDataError(
            f"{response.url}: not a Prometheus API answer ({exc}): {response.text[:200]!r}"
        ) from None


def _refuse_lossy_redirect(response: requests.Response, path: str) -> None:
    """Raise when a 301, 302 or 303 redirect turned the POST into a GET with no body.

    That is what those redirects mean to HTTP clients (an ingress sending ``http://`` to
    ``https://`` often answers 301), and Prometheus then answers that no query was given:
    the scaler's author would be told that a good query is bad PromQL. 307 and 308 keep
    the POST and its body, and are followed.
    """
    for hop in response.history:
        if hop.status_code in (301, 302, 303):
            target = urljoin(hop.url, hop.headers.get("Location", ""))
            base = target.removesuffix(path)
            raise PrometheusUnavailable(
                f"{hop.url}: HTTP {hop.status_code} redirect to {target}, which drops the query"
                f" (it turns the POST into a GET); use the URL it redirects to: {base}"
            )


_GRAFANA_VARIABLE = re.compile(r"\$\{?[A-Za-z_]\w*\}?|\[\[[A-Za-z_]\w*\]\]")
"""``$service``, ``${service}``, ``$__rate_interval``, ``[[service]]``; not ``$1``, which
``label_replace`` uses for its groups."""


def grafana_hint(query: str) -> str:
    """A note for a query copied from a Grafana panel with its template variables left in,
    else "". Prometheus answers ``[$__rate_interval]`` with "missing unit character in
    duration", and ``{service="$service"}`` with no data at all: neither says why."""
    found = list(dict.fromkeys(_GRAFANA_VARIABLE.findall(query)))
    if not found:
        return ""
    what = "is a Grafana variable" if len(found) == 1 else "are Grafana variables"
    return f"; {', '.join(found)} {what}, not PromQL: write the value instead"


def _error_message(response: requests.Response) -> str:
    """Prometheus's own ``errorType: error`` when the body has it, else the body's start."""
    try:
        body = response.json()
        return f"{body['errorType']}: {body['error']}"
    except (ValueError, KeyError, TypeError):
        return response.text[:300].strip() or response.reason or ""


def _retry_after(response: requests.Response) -> float | None:
    """Seconds the server asks us to wait: ``Retry-After`` as seconds or an HTTP date."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
