"""The public busy-hours feed: per scaler, a JSON document and an embeddable HTML widget.

It answers the service's own users ("when is the portal quiet this week?") with each coming
hour rated quiet, normal or busy and the next quiet daytime windows, in the service's time
zone, in Chinese or English (``?lang=``, else ``Accept-Language``). It runs on a port of
its own (``surgecast controller run --feed-port``), so it can be exposed to the internet
without ``/metrics`` or ``/ui``.

Everything it shows comes from the scaler's ``status.outlook`` (written by the leader), so
every controller replica serves it, standbys included, and it survives restarts. Only
scalers with ``spec.feed.public`` are served, and an unknown scaler and a private one get
the same 404. It shows no cluster details (no replicas, capacity, model or risks) and no
numbers unless ``spec.feed.showNumbers``.

Routes: ``/feeds/NAMESPACE/NAME.json`` (the document) and ``/feeds/NAMESPACE/NAME`` (the
widget, for an ``iframe``: inline CSS, no scripts, nothing fetched). Answers carry
``Cache-Control: public, max-age``, an ``ETag`` and ``Last-Modified``; conditional requests
get 304.
"""

from __future__ import annotations

import email.utils
import hashlib
import html
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from controller.http import ThreadedServer, write_body
from controller.outlook import (
    RATINGS,
    TEXT,
    Ratings,
    amount,
    day_label,
    language,
    quiet_windows,
    window_label,
)
from controller.spec import FeedSettings, SpecError, parse_scaler

log = logging.getLogger("surgecast.feed")

CACHE_SECONDS = 300
"""How long browsers and CDNs may reuse an answer: ratings change at most hourly, and a
shared cache in front then meets the controller a few times an hour per scaler. Never past
the end of the hour under way, when that hour leaves the answer."""

_PATH = re.compile(r"^/feeds/(?P<ns>[a-z0-9-]+)/(?P<name>[a-z0-9.-]+?)(?P<json>\.json)?$")
HEALTH_PATHS = ("/", "/healthz")
"""Paths the feed port answers 200 on for health checks, whatever the scalers' state."""
_COLOURS = {"quiet": "#cdebc5", "normal": "#fbe3a0", "busy": "#f3a29c"}

Lookup = Callable[[str], dict[str, Any] | None]
"""The PredictiveScaler object of ``namespace/name`` as last seen, or None."""


class Headers(Protocol):
    """Request headers, looked up case-insensitively (``http.server``'s message, or a dict
    with canonical names in tests)."""

    def get(self, name: str, /) -> str | None: ...


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def respond(lookup: Lookup, target: str, headers: Headers, now: datetime) -> Response:
    """The answer to ``GET target`` (path with query) with request ``headers`` at ``now``.

    ``/`` and ``/healthz`` answer 200: a load balancer in front of the feed (a GKE Ingress,
    an AWS ALB) checks ``GET /`` by default and would take a 404 for a dead backend.
    """
    url = urlsplit(target)
    if url.path in HEALTH_PATHS:
        return _plain(200, "ok\n")
    match = _PATH.match(url.path)
    obj = lookup(f"{match['ns']}/{match['name']}") if match else None
    settings = _public(obj)
    if match is None or obj is None or settings is None:
        return _plain(404, "not found\n")
    outlook = (obj.get("status") or {}).get("outlook") or {}
    if isinstance(outlook, dict) and outlook and "ratings" not in outlook:
        # An outlook without ratings: under a day of load history to rate against, which
        # the hourly outlook will have only once that day has passed.
        return _plain(503, "not enough history yet to rate hours\n", {"Retry-After": "3600"})
    try:
        ratings = Ratings.from_status(outlook)
    except ValueError:
        return _plain(503, "no outlook yet: try again in a minute\n", {"Retry-After": "60"})
    if not ratings.hours(now):  # all ended (no fresh outlook since), or none forecast
        return _plain(503, "no outlook for the coming hours\n", {"Retry-After": "300"})
    asked = parse_qs(url.query).get("lang", [None])[0]
    lang = language(asked, headers.get("Accept-Language"))
    if match["json"]:
        payload = json.dumps(document(ratings, settings, lang, now), ensure_ascii=False)
        body, kind = payload.encode(), "application/json; charset=utf-8"
        extra = {"Access-Control-Allow-Origin": "*"}
    else:
        body, kind = widget(ratings, settings, lang, now).encode(), "text/html; charset=utf-8"
        extra = {
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        }
    # The body also changes when an hour ends (it drops out), not only when regenerated.
    modified = max(pd.Timestamp(ratings.generated_at), pd.Timestamp(now).floor("h"))
    # ... so a copy is not kept past that: it would show an hour that has ended as the first.
    until_hour = pd.Timestamp(now).floor("h") + pd.Timedelta(hours=1) - pd.Timestamp(now)
    max_age = min(CACHE_SECONDS, math.ceil(until_hour.total_seconds()))
    cache = {
        "Cache-Control": f"public, max-age={max_age}",
        "ETag": f'"{hashlib.sha256(body).hexdigest()[:32]}"',
        "Last-Modified": email.utils.format_datetime(modified.to_pydatetime(), usegmt=True),
        "Vary": "Accept-Language",
    }
    if _not_modified(headers, cache["ETag"], modified):
        return Response(304, cache, b"")
    headers_out = {"Content-Type": kind, "X-Content-Type-Options": "nosniff", **extra, **cache}
    return Response(200, headers_out, body)


def document(ratings: Ratings, settings: FeedSettings, lang: str, now: datetime) -> dict[str, Any]:
    """The JSON feed: every coming hour rated, and the next quiet windows, in local time."""
    text, tz = TEXT[lang], settings.time_zone
    hours = ratings.hours(now)
    rows = []
    for start, rating, expected in hours:
        row: dict[str, Any] = {
            "start": start.tz_convert(tz).isoformat(),
            "rating": rating,
            "label": text[rating],
        }
        if settings.show_numbers and expected is not None:
            row["expected"] = expected
        rows.append(row)
    return {
        "generatedAt": f"{pd.Timestamp(ratings.generated_at).tz_convert('UTC'):%Y-%m-%dT%H:%M:%SZ}",
        "timeZone": tz,
        "language": lang,
        "labels": {rating: text[rating] for rating in RATINGS},
        "hours": rows,
        "quietWindows": [
            {"start": a.isoformat(), "end": b.isoformat(), "text": window_label(a, b, lang)}
            for a, b in quiet_windows(hours, tz)
        ],
    }


def widget(ratings: Ratings, settings: FeedSettings, lang: str, now: datetime) -> str:
    """The HTML widget: a day-by-hour grid coloured by rating, a legend, the quiet windows.

    Each cell carries its rating as ``data-rating`` and as hidden text for screen readers.
    On a day the clocks go back, an hour that occurs twice shows the busier rating.
    """
    text, tz = TEXT[lang], settings.time_zone
    hours = ratings.hours(now)
    grid: dict[date, dict[int, tuple[str, pd.Timestamp, float | None]]] = {}
    for start, rating, expected in hours:
        local = start.tz_convert(tz)
        row = grid.setdefault(local.date(), {})
        before = row.get(local.hour)
        if before is None or RATINGS.index(rating) > RATINGS.index(before[0]):
            row[local.hour] = (rating, local, expected)
    head = "".join(f"<th scope='col'>{h}</th>" for h in range(24))
    body = []
    for day, row in grid.items():
        cells = []
        for hour in range(24):
            if hour not in row:
                cells.append("<td class='none'></td>")
                continue
            rating, local, expected = row[hour]
            title = f"{day_label(day, lang)} {local:%H:%M} {text[rating]}"
            if settings.show_numbers and expected is not None:
                title += f" ({amount(expected)})"
            cells.append(
                f"<td class='{rating}' data-rating='{rating}' data-start='{local.isoformat()}'"
                f" title='{html.escape(title, quote=True)}'>"
                f"<span class='sr'>{html.escape(text[rating])}</span></td>"
            )
        body.append(
            f"<tr><th scope='row'>{html.escape(day_label(day, lang))}</th>{''.join(cells)}</tr>"
        )
    legend = "".join(
        f"<li><span class='swatch {r}'></span><span class='label' data-rating='{r}'>"
        f"{html.escape(text[r])}</span></li>"
        for r in RATINGS
    )
    windows = quiet_windows(hours, tz)
    quiet = (
        "".join(f"<li>{html.escape(window_label(a, b, lang))}</li>" for a, b in windows)
        if windows
        else f"<li class='empty'>{html.escape(text['no_quiet'])}</li>"
    )
    updated = pd.Timestamp(ratings.generated_at).tz_convert(tz)
    colours = "".join(f"td.{r},.swatch.{r}{{background:{c}}}" for r, c in _COLOURS.items())
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(text["title"])}</title>
<style>
body{{font:13px/1.4 system-ui,sans-serif;margin:8px;color:#222}}
h1{{font-size:15px;margin:0 0 6px}} h2{{font-size:13px;margin:10px 0 4px}}
table{{border-collapse:separate;border-spacing:2px}}
th{{font-weight:normal;font-size:11px;color:#555;text-align:right;padding-right:4px}}
thead th{{text-align:center;padding:0}}
td{{width:14px;height:14px;border-radius:2px}} td.none{{background:#f2f2f2}}
{colours}
.sr{{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}}
ul.legend{{list-style:none;padding:0;margin:6px 0}} ul.legend li{{display:inline;margin-right:10px}}
.swatch{{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}}
ol{{margin:0;padding-left:20px}} .updated{{color:#777;font-size:11px;margin-top:8px}}
</style></head>
<body>
<h1>{html.escape(text["title"])}</h1>
<table><thead><tr><th></th>{head}</tr></thead><tbody>
{"".join(body)}
</tbody></table>
<ul class="legend">{legend}</ul>
<h2>{html.escape(text["next_quiet"])}</h2>
<ol class="quiet-windows">{quiet}</ol>
<p class="updated">{html.escape(text["updated"])} {updated:%Y-%m-%d %H:%M} ({html.escape(tz)})</p>
</body></html>
"""


class FeedServer(ThreadedServer):
    """Serves :func:`respond` on ``host:port`` in a daemon thread; ``port=0`` picks one.

    Not a :class:`controller.http.RouteServer`: its routes see only the path, and the feed
    reads request headers (language, conditional requests) and sets its own.
    """

    def __init__(
        self,
        lookup: Lookup,
        host: str = "0.0.0.0",
        port: int = 8081,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                self._answer(with_body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(with_body=False)

            def _answer(self, with_body: bool) -> None:
                try:
                    response = respond(lookup, self.path, self.headers, clock())
                except Exception:  # a broken scaler must not take the feed down
                    log.exception("feed GET %s failed", self.path)
                    response = _plain(500, "internal error\n")
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if with_body:
                    write_body(self, response.body)

            def log_message(self, format: str, *args: object) -> None:
                return None  # public traffic would drown the controller's JSON logs

        super().__init__(Handler, host, port, "feed")


def _public(obj: dict[str, Any] | None) -> FeedSettings | None:
    """The feed settings of a scaler that publishes its feed, else None.

    A scaler whose outlook is off publishes nothing either: there will never be ratings to
    serve, and "try again in a minute" would be answered forever.
    """
    if obj is None:
        return None
    try:
        config = parse_scaler(obj)
    except SpecError:
        return None
    return config.feed if config.feed.public and config.outlook.enabled else None


def _not_modified(headers: Headers, etag: str, modified: pd.Timestamp) -> bool:
    """RFC 9110: If-None-Match decides when present; else If-Modified-Since."""
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    since = headers.get("If-Modified-Since")
    if since is None:
        return False
    try:
        when = email.utils.parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    if when.tzinfo is None:
        return False
    return modified.floor("s") <= pd.Timestamp(when)


def _plain(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    extra = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
    return Response(status, {**extra, **(headers or {})}, text.encode())
