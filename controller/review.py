"""The review page: each scaler's decisions on a chart and in a table, in one HTML file.

On-call opens it to see a morning at a glance: the load observed, the forecast quantile the
policy covered, the capacity its decisions provided and the replicas, with every decision
that changed the count (or fell back to reactive scaling) marked. Hovering a marker shows
the :func:`controller.explain.explain` sentence; clicking it puts the sentence under the
chart and highlights its row in the table below, which lists every decision and filters by
reason, applied or not, and time range (plain JavaScript in the page).

The page is self-contained: plotly.js is inlined from the installed plotly package and
nothing is fetched, so it works in an air-gapped cluster and as a file attached to an
incident ticket (about 5 MB, nearly all of it plotly.js).

:func:`review_page` is pure, records in and HTML out; :func:`render_review` reads the log
for it; :func:`review_route` serves it, at ``/ui`` on the controller and for
``surgecast review --serve``.
"""

from __future__ import annotations

import html
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from itertools import pairwise
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from controller.decisions import DecisionLog, DecisionRecord
from controller.explain import applied_status, explain, format_number
from controller.http import Route
from controller.spec import parse_duration

DEFAULT_WINDOW = timedelta(hours=24)
"""How far back the page looks unless told otherwise: a working day and the night before."""

DEFAULT_LIMIT = 10_000
"""Decisions per page at most: two days of one scaler at the default 30 s sync period, a
5 MB table. It bounds the page, not each scaler: the controller renders ``/ui`` in its own
memory (some 15 KB a decision while rendering), and a page of every scaler of a fleet
would otherwise take that for each of them, enough to get the controller OOM-killed."""

MARKERS = {
    "ScaleUp": ("triangle-up", "#d62728"),
    "ScaleDown": ("triangle-down", "#1f77b4"),
    "FallbackReactive": ("x", "#555555"),
}
"""Marker (symbol, colour) per reason family marked on the chart. Holds are not marked:
they are most decisions, and the table lists them."""

_COLOURS = {"forecast": "#ff7f0e", "load": "#1f77b4", "capacity": "#2ca02c", "replicas": "#9467bd"}


def review_page(
    scalers: Sequence[str],
    records: Mapping[str, Sequence[DecisionRecord]],
    *,
    since: datetime,
    until: datetime | None = None,
    tz: str | None = None,
    limit: int | None = None,
    totals: Mapping[str, int] | None = None,
) -> str:
    """The page for ``records``: each shown scaler's decisions in the window, oldest first.

    ``scalers`` are every scaler in the log, listed so the reader sees what else there is;
    ``since``/``until`` are the window the records were read for (``until`` None: up to
    now), and either ``limit`` the per-scaler cap they were read with or ``totals`` how many
    each scaler has in the window, so the page can say when a window was cut short. Times
    are shown in ``tz`` (an IANA zone; default UTC).
    """
    zone = ZoneInfo(tz) if tz else UTC
    minute = "%Y-%m-%d %H:%M"
    window = (
        f"from {wall_time(since, zone, minute)} to "
        f"{wall_time(until, zone, minute) if until else 'now'} ({zone})"
    )
    several = len(records) > 1
    sections = [
        _section(
            index, name, recs, tz, zone, _cut(recs, limit, totals, name, several), name in scalers
        )
        for index, (name, recs) in enumerate(records.items())
    ]
    if not scalers:
        intro = (
            '<p class="empty">The decision log holds no decisions yet. The controller '
            "records one per PredictiveScaler every sync period once it leads; a replay "
            "records them with <code>surgecast replay --decision-log</code>.</p>"
        )
    else:
        intro = f"<p>Decisions {html.escape(window)}. {_LEGEND}</p>{_nav(scalers, records)}"
    charted = any(records.values())
    plotly_js = f"<script>{_plotly_js()}</script>" if charted else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>surgecast: scaling decisions</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
{plotly_js}
<script>{_SCRIPT}</script>
</head><body>
<h1>surgecast: scaling decisions</h1>
{intro}
{"".join(sections)}
</body></html>
"""


def render_review(
    log: DecisionLog,
    *,
    since: datetime,
    until: datetime | None = None,
    scaler: str | None = None,
    tz: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> str:
    """The page for the decisions in ``[since, until)`` of ``scaler`` (default: all).

    At most ``limit`` decisions in all (see :data:`DEFAULT_LIMIT`): the scalers with fewer
    than an even share show all of theirs, and the others share the rest, newest first.
    """
    known = log.scalers()
    shown = [scaler] if scaler is not None else known
    counted = log.counts(since=since, until=until)
    totals = {name: counted.get(name, 0) for name in shown}
    shares = _shares(totals, limit)
    records = {
        name: log.list(name, since=since, until=until, limit=shares[name]) if shares[name] else []
        for name in shown
    }
    return review_page(known, records, since=since, until=until, tz=tz, totals=totals)


def _shares(totals: Mapping[str, int], budget: int) -> dict[str, int]:
    """How many decisions of each scaler a page of ``budget`` shows: quietest first, each
    takes all it has up to an even share of what is left (at least one, so none of the
    scalers with decisions reads as having none)."""
    shares = {}
    names = sorted(totals, key=lambda name: totals[name])
    for index, name in enumerate(names):
        shares[name] = min(totals[name], max(1, budget // (len(names) - index)))
        budget = max(0, budget - shares[name])
    return shares


def _cut(
    records: Sequence[DecisionRecord],
    limit: int | None,
    totals: Mapping[str, int] | None,
    name: str,
    several: bool,
) -> str:
    """The sentence saying a section shows only the newest of its decisions, if it does."""
    advice = "show this scaler alone or narrow the window" if several else "narrow the window"
    if totals is not None:
        total = totals.get(name, 0)
        if len(records) < total:
            return f" Only the newest {len(records):,} of {total:,} are shown: {advice}."
        return ""
    if limit is not None and len(records) >= limit:
        return f" Only the newest {limit:,} are shown: {advice}."
    return ""


def review_route(
    log: DecisionLog,
    *,
    clock: Callable[[], datetime],
    since: datetime | timedelta = DEFAULT_WINDOW,
    until: datetime | None = None,
    scaler: str | None = None,
    tz: str | None = None,
) -> Route:
    """A :mod:`controller.http` route serving the page, read afresh at every request.

    A duration ``since`` is counted back from ``clock()`` at each request, so a reload
    shows the newest decisions. The query may choose ``scaler=NS/NAME``, ``tz=Area/City``
    and ``since=DURATION`` (``6h``, ``2d``), in place of these defaults.
    """

    # One page at a time. DEFAULT_LIMIT bounds what one page takes while it renders (about
    # 100 MB at the cap), but the server gives every request a thread of its own, and
    # reloads and tabs during an incident rendered side by side (ten took 500 MB more,
    # towards the controller's 1 GiB limit). Rendering holds the GIL, so side by side was
    # no faster: a request now waits for the one before it, and memory stays one page's.
    rendering = threading.Lock()

    def route(target: str) -> tuple[int, str, bytes]:
        query = parse_qs(urlsplit(target).query)
        chosen = query.get("scaler", [scaler])[-1] or None
        zone = query.get("tz", [tz])[-1] or None
        try:
            if "since" in query:
                text = query["since"][-1]
                start = count_back(clock(), parse_duration(text), text)
            else:
                start = since if isinstance(since, datetime) else clock() - since
            if zone is not None:
                _check_zone(zone)
        except ValueError as exc:
            return 400, "text/plain; charset=utf-8", f"{exc}\n".encode()
        with rendering:
            page = render_review(log, since=start, until=until, scaler=chosen, tz=zone)
        return 200, "text/html; charset=utf-8", page.encode()

    return route


def count_back(now: datetime, back: timedelta, text: str) -> datetime:
    """``now - back``; a ValueError naming ``text`` (the duration typed) when that would be
    before the year 1, since a duration can be valid and still reach past what a datetime
    holds (``999999d``)."""
    try:
        return now - back
    except OverflowError:
        raise ValueError(f"{text} reaches back before the year 1") from None


def _check_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a region alone (``Europe``) is a directory of the zone database, and a
        # name too long for a file name is refused by the file system, not by zoneinfo.
        raise ValueError(
            f"{name!r} is not a time zone like Europe/Berlin or Asia/Shanghai"
        ) from None


_LEGEND = (
    "On each chart, ▲ and ▼ mark the decisions that scaled up or down and ✕ those made "
    "without a usable forecast; hover over one to read why, click it to show the reason "
    "below the chart and highlight it in the table. Capacity is replicas × what one pod "
    "serves; in ForecastOnly mode it is what the decisions would have provided."
)


def _nav(scalers: Sequence[str], records: Mapping[str, Sequence[DecisionRecord]]) -> str:
    """Every scaler in the log: those on this page link to their section."""
    anchors = {name: index for index, name in enumerate(records)}
    items = []
    for name in scalers:
        if name in anchors:
            count = len(records[name])
            items.append(
                f'<li><a href="#scaler-{anchors[name]}">{html.escape(name)}</a> '
                f"({count:,} decision{'s' if count != 1 else ''})</li>"
            )
        else:
            items.append(f"<li>{html.escape(name)} (not on this page)</li>")
    return f'<ul class="scalers">{"".join(items)}</ul>'


def _section(
    index: int,
    name: str,
    records: Sequence[DecisionRecord],
    tz: str | None,
    zone: tzinfo,
    cut: str,
    logged: bool,
) -> str:
    """One scaler's chart and table; ``logged`` tells whether the log has any decision of
    it (a mistyped ``?scaler=`` had "no decisions in this window", as if a wider one would
    show some)."""
    heading = f'<section id="scaler-{index}"><h2>{html.escape(name)}</h2>'
    if not records:
        empty = (
            f"No decisions of {html.escape(name)} in this window."
            if logged
            else f"The decision log has no decisions of {html.escape(name)} at all."
        )
        return f'{heading}<p class="empty">{empty}</p></section>'
    newest = records[-1]
    sentences = [explain(record, tz) for record in records]
    row_ids = [f"decision-{index}-{n}" for n in range(len(records))]
    counts = Counter(_family(record) for record in records)
    summary = (
        f"{html.escape(newest.target)}, mode {html.escape(newest.mode)}, model "
        f"{html.escape(newest.model_version or 'none')}: {len(records):,} decisions, "
        f"{counts['ScaleUp']:,} up, {counts['ScaleDown']:,} down, "
        f"{counts['FallbackReactive']:,} without a usable forecast. Each pod serves "
        f"{newest.capacity_per_replica:,g} {html.escape(newest.load_unit)}.{cut}"
    )
    figure = _figure(records, sentences, row_ids, zone)
    table = f"table-{index}"
    return f"""{heading}
<p>{summary}</p>
<div id="chart-{index}" class="chart" data-panel="why-{index}"></div>
<script>drawChart("chart-{index}", {figure});</script>
<p id="why-{index}" class="why">Click a marker to read why that decision was made.</p>
{_filters(table, records, zone)}
{_table(table, records, sentences, row_ids, zone)}
</section>"""


def _figure(
    records: Sequence[DecisionRecord],
    sentences: Sequence[str],
    row_ids: Sequence[str],
    zone: tzinfo,
) -> str:
    """Plotly's JSON for the chart: loads above, replicas and decision markers below.

    The axis reads in the page's zone (see :func:`_time_axis`). The JSON escapes ``<`` and
    ``>``, so it is safe inside a ``<script>``.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    points = _line_points(records)
    line_x, ticks = _time_axis([at for at, _ in points], zone)
    x = [position for position, (_, r) in zip(line_x, points, strict=True) if r is not None]

    def line(value: Callable[[DecisionRecord], float | None]) -> list[float | None]:
        return [value(r) if r is not None else None for _, r in points]

    def shown(value: Callable[[DecisionRecord], float | None]) -> list[str | None]:
        """The hover's numbers, as the table and the account write them (plotly's own
        ``,.1f`` read a load of 0.04 rps as 0.0)."""
        return [format_number(v) if v is not None else None for v in line(value)]

    unit = records[-1].load_unit
    quantiles = "/".join(sorted({_percent(r.quantile) for r in records}))
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32], vertical_spacing=0.05
    )
    fig.add_trace(
        go.Scatter(
            x=line_x,
            y=line(lambda r: r.forecast_peak),
            name=f"forecast {quantiles}, peak over the lead window",
            legendgroup="forecast",
            line={"color": _COLOURS["forecast"], "width": 1, "shape": "hv"},
            text=shown(lambda r: r.forecast_peak),
            hovertemplate=f"forecast {quantiles} %{{text}} {unit}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    area_x, area_y = _area(line_x, line(lambda r: r.forecast_peak))
    fig.add_trace(
        go.Scatter(
            x=area_x,
            y=area_y,
            legendgroup="forecast",  # shown and hidden with the forecast's line
            showlegend=False,
            mode="lines",
            line={"width": 0, "shape": "hv"},
            fill="toself",
            fillcolor="rgba(255, 127, 14, 0.15)",
            hoverinfo="skip",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=line_x,
            y=line(lambda r: r.observed_load),
            name="load observed",
            line={"color": _COLOURS["load"], "width": 1.5},
            text=shown(lambda r: r.observed_load),
            hovertemplate=f"load %{{text}} {unit}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=line_x,
            y=line(lambda r: r.replicas * r.capacity_per_replica),
            customdata=line(lambda r: r.replicas),
            text=shown(lambda r: r.replicas * r.capacity_per_replica),
            name="capacity of the replicas decided",
            line={"color": _COLOURS["capacity"], "width": 1.5, "shape": "hv"},
            hovertemplate=f"capacity %{{text}} {unit} (%{{customdata}} pods)<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=line_x,
            y=line(lambda r: r.replicas),
            name="replicas decided",
            line={"color": _COLOURS["replicas"], "width": 1.5, "shape": "hv"},
            hoverinfo="skip",  # the markers on it carry the explanations
        ),
        row=2,
        col=1,
    )
    marked = [n for n, r in enumerate(records) if _family(r) in MARKERS]
    styles = [MARKERS[_family(records[n])] for n in marked]
    fig.add_trace(
        go.Scatter(
            x=[x[n] for n in marked],
            y=[records[n].replicas for n in marked],
            mode="markers",
            meta="decisions",  # how the page's script tells this trace apart
            name="decisions (hover or click)",
            marker={
                "symbol": [symbol for symbol, _ in styles],
                "color": [colour for _, colour in styles],
                "size": 11,
                "line": {"width": 1, "color": "white"},
            },
            hovertext=[
                _hover(
                    wall_time(records[n].at, zone, "%Y-%m-%d %H:%M:%S"), records[n], sentences[n]
                )
                for n in marked
            ],
            hoverinfo="text",
            customdata=[row_ids[n] for n in marked],
        ),
        row=2,
        col=1,
    )
    fig.update_layout(
        template="plotly_white",
        height=560,
        margin={"l": 70, "r": 20, "t": 30, "b": 50},
        hovermode="closest",
        hoverlabel={"align": "left", "bgcolor": "white", "font": {"size": 12}},
        legend={"orientation": "h", "y": 1.06, "x": 0},
    )
    fig.update_yaxes(title_text=unit, rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="replicas", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(type="date", **ticks)
    fig.update_xaxes(title_text=f"time ({zone})", row=2, col=1)
    return fig.to_json()


GAP = 5
"""Decisions further apart than this many times their usual spacing have a gap between
them (the controller down, or not leading), which the lines do not bridge."""


def _line_points(
    records: Sequence[DecisionRecord],
) -> list[tuple[datetime, DecisionRecord | None]]:
    """The line traces' points: each decision, and in each gap a point without values.

    Plotly joins consecutive points, so a night without decisions was drawn as a straight
    line of load, forecast and capacity from the last decision before it to the first
    after, as if they had been observed. The point without values breaks the lines; it
    stands where the next decision was due.
    """
    times = [r.at for r in records]
    spacings = sorted(later - earlier for earlier, later in pairwise(times))
    usual = spacings[(len(spacings) - 1) // 2] if spacings else timedelta(0)
    points: list[tuple[datetime, DecisionRecord | None]] = []
    for record, after in zip(records, [*times[1:], None], strict=True):
        points.append((record.at, record))
        if after is not None and usual > timedelta(0) and after - record.at > GAP * usual:
            points.append((record.at + usual, None))
    return points


def _area(x: Sequence[str], y: Sequence[float | None]) -> tuple[list[str], list[float | None]]:
    """The outline of the area under a step line with gaps: one closed shape per stretch.

    ``fill="tozeroy"`` fills across the gaps of a line, so an hour without a usable
    forecast (or without decisions) read as covered by the last forecast before it;
    plotly closes each stretch of a ``fill="toself"`` trace on its own, down to zero here.
    """
    area_x: list[str] = []
    area_y: list[float | None] = []
    stretch: list[tuple[str, float]] = []
    for position, value in [*zip(x, y, strict=True), (None, None)]:
        if value is not None and position is not None:
            stretch.append((position, value))
            continue
        if stretch:
            area_x += [stretch[0][0], *(at for at, _ in stretch), stretch[-1][0], stretch[-1][0]]
            area_y += [0.0, *(peak for _, peak in stretch), 0.0, None]
            stretch = []
    return area_x, area_y


_TICK_MINUTES = (15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)
"""Tick spacings, when the page sets the ticks: the first that gives at most ten."""


def _time_axis(moments: Sequence[datetime], zone: tzinfo) -> tuple[list[str], dict[str, Any]]:
    """The chart's x values of ``moments`` (in order), and its tick settings if the zone's
    UTC offset changes.

    plotly.js has no time zones: it places a time by its wall clock and ignores an offset.
    When clocks fall back, wall times repeat an hour and the axis would run backwards, so
    every time is given at the offset of the first decision: until the offset changes,
    that is the zone's wall time and plotly's ticks read right. After a change they would
    be an hour off, so then the ticks are set here, at round wall times as the zone's
    clocks read them (they stay put when zooming in, a lesser harm twice a year).
    """
    fixed = timezone(cast(timedelta, moments[0].astimezone(zone).utcoffset()))  # aware

    def position(moment: datetime) -> str:
        return moment.astimezone(fixed).isoformat(timespec="seconds")

    x = [position(moment) for moment in moments]
    if len({moment.astimezone(zone).utcoffset() for moment in moments}) == 1:
        return x, {}
    first, last = moments[0].astimezone(UTC), moments[-1]
    minutes = (last - first) / timedelta(minutes=1)
    step = next((m for m in _TICK_MINUTES if minutes / m <= 10), _TICK_MINUTES[-1])
    # Offsets are whole quarter hours, so local quarter hours are UTC ones.
    moment = first.replace(minute=first.minute // 15 * 15, second=0, microsecond=0)
    values: list[str] = []
    labels: list[str] = []
    day = None
    while moment <= last:
        local = moment.astimezone(zone)
        if (local.toordinal() * 1440 + local.hour * 60 + local.minute) % step == 0:
            values.append(position(moment))
            label = wall_time(moment, zone, "%H:%M")
            labels.append(label if local.date() == day else f"{label}<br>{local:%Y-%m-%d}")
            day = local.date()
        moment += timedelta(minutes=15)
    return x, {"tickmode": "array", "tickvals": values, "ticktext": labels}


def wall_time(moment: datetime, zone: tzinfo, form: str) -> str:
    """``moment`` as ``zone``'s clocks read it (strftime ``form``); in the hour they repeat
    when falling back, the wall time names two moments, so the UTC offset follows."""
    local = moment.astimezone(zone)
    text = local.strftime(form)
    if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
        text += " " + local.isoformat(timespec="seconds")[19:]  # after YYYY-MM-DDTHH:MM:SS
    return text


def _plotly_js() -> str:
    """Plotly's script, imported on first use: the controller serves ``/ui`` now and then,
    and plotly would otherwise sit in its memory (about 40 MiB) from start-up."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _hover(when: str, record: DecisionRecord, sentence: str) -> str:
    """The hover label: time and reason in bold, then the sentence in lines of 80.

    Plotly reads labels as a little HTML, so the text is escaped first.
    """
    lines = [html.escape(line, quote=False) for line in textwrap.wrap(sentence, 80)]
    title = html.escape(f"{when} {record.reason}", quote=False)
    return "<br>".join([f"<b>{title}</b>", *lines])


def _filters(table: str, records: Sequence[DecisionRecord], zone: tzinfo) -> str:
    """Reason (a family or one code), applied or not, and a local time range.

    The script reads the times typed in ``zone`` (``data-zone``) and compares moments, so
    a range across a change of UTC offset is the stretch of time it names.
    """
    codes = sorted({r.reason for r in records})
    groups = []
    for family in sorted({code.partition("/")[0] for code in codes}):
        options = [f'<option value="{html.escape(family)}">every {html.escape(family)}</option>']
        options += [
            f'<option value="{html.escape(code)}">{html.escape(code)}</option>'
            for code in codes
            if code.partition("/")[0] == family and code != family
        ]
        groups.append(f'<optgroup label="{html.escape(family)}">{"".join(options)}</optgroup>')
    first, last, after = (
        f"{moment.astimezone(zone):%Y-%m-%dT%H:%M}"
        # "until" is exclusive and minutes are what the field holds: its latest choice must
        # be the minute after the last decision, or that decision could never be kept.
        for moment in (records[0].at, records[-1].at, records[-1].at + timedelta(minutes=1))
    )
    zone_name = html.escape(str(zone))
    return f"""<form class="filters" data-table="{table}" data-zone="{zone_name}"
onsubmit="return false">
<label>reason <select name="reason"><option value="">any</option>{"".join(groups)}</select></label>
<label>applied <select name="applied"><option value="">any</option>
<option value="yes">applied</option><option value="no">not applied</option></select></label>
<label>from <input type="datetime-local" name="from" min="{first}" max="{last}"></label>
<label>until <input type="datetime-local" name="until" min="{first}" max="{after}"></label>
<output>{len(records):,} of {len(records):,} decisions</output>
</form>"""


def _table(
    table: str,
    records: Sequence[DecisionRecord],
    sentences: Sequence[str],
    row_ids: Sequence[str],
    zone: tzinfo,
) -> str:
    """Every decision, with the data the filters read in ``data-`` attributes; ``data-at``
    is the wall time with its UTC offset, a moment even in an hour that clocks repeat."""
    unit = html.escape(records[-1].load_unit)
    rows = []
    for r, sentence, row_id in zip(records, sentences, row_ids, strict=True):
        change = (
            f"{r.current_replicas:,} → {r.replicas:,}"
            if r.replicas != r.current_replicas
            else f"{r.replicas:,}"
        )
        rows.append(
            f'<tr id="{row_id}" data-reason="{html.escape(r.reason)}" '
            f'data-applied="{"yes" if r.applied else "no"}" '
            f'data-at="{r.at.astimezone(zone).isoformat(timespec="seconds")}">'
            f"<td>{wall_time(r.at, zone, '%Y-%m-%d %H:%M:%S')}</td><td>{change}</td>"
            f"<td>{html.escape(r.reason)}</td>"
            f'<td class="num">{format_number(r.observed_load)}</td>'
            f'<td class="num">{format_number(r.forecast_peak)}</td>'
            f'<td class="num">{format_number(r.replicas * r.capacity_per_replica)}</td>'
            f'<td class="num">{"-" if r.hpa_replicas is None else f"{r.hpa_replicas:,}"}</td>'
            f"<td>{html.escape(applied_status(r))}</td>"
            f'<td class="explain">{html.escape(sentence)}</td></tr>'
        )
    return f"""<table id="{table}" class="decisions"><thead><tr>
<th>time ({html.escape(str(zone))})</th><th>replicas</th><th>reason</th><th>load ({unit})</th>
<th>forecast peak</th><th>capacity</th><th>HPA alone</th><th>applied</th><th>why</th>
</tr></thead><tbody>
{"".join(rows)}
</tbody></table>"""


def _family(record: DecisionRecord) -> str:
    return record.reason.partition("/")[0]


def _percent(quantile: float) -> str:
    """``p90``, ``p97.5``: the quantile as explain() names it."""
    return f"p{round(quantile * 100, 3):g}"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222;
       padding: 0 1em; }
section { margin-top: 2.5em; }
.chart { width: 100%; height: 560px; }
.why { background: #f6f6f6; border-left: 4px solid #9467bd; padding: 0.6em 0.9em; }
.empty { color: #555; font-style: italic; }
form.filters { display: flex; flex-wrap: wrap; gap: 1em; align-items: center; margin: 1em 0; }
table.decisions { border-collapse: collapse; font-size: 13px; width: 100%; }
table.decisions th { position: sticky; top: 0; background: #fff; text-align: left; }
table.decisions td, table.decisions th { padding: 3px 8px; border-bottom: 1px solid #e4e4e4;
       vertical-align: top; }
table.decisions td.num { text-align: right; white-space: nowrap; }
table.decisions tr.selected { background: #fff3c4; }
"""

_SCRIPT = """
function showDecision(chart, rowId) {
  var row = document.getElementById(rowId);
  document.getElementById(chart.dataset.panel).textContent =
    row.querySelector('td.explain').textContent;
  document.querySelectorAll('tr.selected').forEach(function (r) {
    r.classList.remove('selected');
  });
  row.classList.add('selected');
}
function drawChart(id, figure) {
  var chart = document.getElementById(id);
  var config = {displaylogo: false, showSendToCloud: false, responsive: true};  // offline: no cloud
  Plotly.newPlot(chart, figure.data, figure.layout, config)
    .then(function () {
      chart.on('plotly_click', function (event) {
        var point = event.points[0];
        if (point.data.meta === 'decisions') showDecision(chart, point.customdata);
      });
    });
}
// The UTC offset of a zone at a moment, in ms, by the browser's rules for the zone.
function offsetAt(zone, ms) {
  var name = new Intl.DateTimeFormat('en-US', {timeZone: zone, timeZoneName: 'longOffset'})
    .formatToParts(ms).filter(function (p) { return p.type === 'timeZoneName'; })[0].value;
  var m = /([+-])([0-9]{2}):([0-9]{2})/.exec(name);  // "GMT+01:00", or "GMT" at offset 0
  return m ? (m[1] === '-' ? -1 : 1) * (m[2] * 36e5 + m[3] * 6e4) : 0;
}
// The moment a wall time typed in the page's zone names. The offset of the day before is
// tried first, so in the hour clocks repeat when falling back it is the first of the two;
// one skipped when springing forward is read at the new offset.
function momentOf(zone, wall) {
  var naive = Date.parse(wall + 'Z'), day = 864e5;
  var first = naive - offsetAt(zone, naive - day);
  return offsetAt(zone, first) === naive - first ? first : naive - offsetAt(zone, naive + day);
}
function filterTable(form) {
  var rows = document.getElementById(form.dataset.table).tBodies[0].rows;
  var f = form.elements, shown = 0;
  var from = f.from.value ? momentOf(form.dataset.zone, f.from.value) : -Infinity;
  var until = f.until.value ? momentOf(form.dataset.zone, f.until.value) : Infinity;
  for (var i = 0; i < rows.length; i++) {
    var d = rows[i].dataset, at = Date.parse(d.at);
    var keep = (!f.reason.value || d.reason === f.reason.value ||
                d.reason.indexOf(f.reason.value + '/') === 0) &&
               (!f.applied.value || d.applied === f.applied.value) &&
               at >= from && at < until;
    rows[i].hidden = !keep;
    if (keep) shown++;
  }
  form.querySelector('output').textContent =
    shown.toLocaleString('en') + ' of ' + rows.length.toLocaleString('en') + ' decisions';
}
document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('form.filters').forEach(function (form) {
    form.addEventListener('input', function () { filterTable(form); });
    form.addEventListener('change', function () { filterTable(form); });
  });
});
"""
