"""``surgecast outlook``: the controller's capacity outlook, offline, from a model store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import matplotlib

matplotlib.use("Agg")  # headless: charts are files, never windows
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import typer  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from controller.outlook import (  # noqa: E402
    Risk,
    ahead_label,
    amount,
    project,
    risks,
    wall_clock,
)
from controller.policy import PolicySpec  # noqa: E402
from forecaster._cli_common import fail, load_models  # noqa: E402
from forecaster.training import forecast  # noqa: E402

app = typer.Typer()
CHART_SUFFIXES = (".png", ".html")
CHART_SERIES = 12
"""Series charted by default: one panel each, twelve fit a page (see ``--chart-series``)."""


@dataclass(frozen=True)
class SeriesOutlook:
    """One stored series' outlook: its coming hours and those the bounds cannot carry."""

    unique_id: str
    start: datetime
    """The end of its training data: the outlook's "now"."""

    hours: pd.DataFrame
    risks: list[Risk]


@app.command("outlook")
def outlook_command(
    model_dir: str = typer.Option(
        ..., "--model", help="Model store written by surgecast train (directory or URL)."
    ),
    capacity: float = typer.Option(
        ...,
        "--capacity-per-replica",
        min=0.0,
        help="Load one replica serves, in the series' unit (requests per interval).",
    ),
    max_replicas: int = typer.Option(..., "--max-replicas", min=1, help="The most replicas."),
    days: int = typer.Option(7, "--days", min=1, max=14, help="How many days ahead."),
    quantile: float = typer.Option(
        0.9, "--quantile", min=0.5, max=0.999, help="The forecast quantile the peak is read at."
    ),
    events_path: Path | None = typer.Option(
        None, "--events", help="Event calendar covering the coming days (deadlines...)."
    ),
    tz: str | None = typer.Option(
        None, "--tz", help="Time zone of the hours shown (default: the training's, else UTC)."
    ),
    version: str | None = typer.Option(
        None, "--version", help="A stored version (default: the latest)."
    ),
    chart: Path | None = typer.Option(
        None, "--out", "-o", help="Chart of forecast and capacity: .png, or .html (interactive)."
    ),
    chart_series: int = typer.Option(
        CHART_SERIES,
        "--chart-series",
        min=1,
        help="Chart at most this many series: those with the most hours at risk.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the hours at risk as JSON."),
) -> None:
    """Which coming hours need more than MAX replicas of CAPACITY each, days ahead.

    Forecasts every stored series from the end of its training data, hour by hour: the
    highest upper quantile in each hour against max × capacity, as the controller's
    CapacityAtRisk condition does. Prints each hour at risk with its forecast, the
    replicas missing and how far ahead it is.
    """
    if capacity <= 0:
        fail("--capacity-per-replica must be greater than 0")
    if chart is not None and chart.suffix not in CHART_SUFFIXES:
        fail(f"--out {chart}: the chart is written as .png or .html")
    stored, events = load_models(model_dir, version, events_path)
    zone = tz or stored.manifest.get("training", {}).get("tz") or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe", a folder
        fail(f"--tz {zone!r} is not a time zone like Europe/Berlin or Asia/Shanghai")
    step = stored.step
    if step is None:
        fail("the model store records no interval (step), and its models know none")
    horizon = int(pd.Timedelta(days=days, hours=1) / step) + 1
    try:
        frame = forecast(stored.models, horizon, (0.5, quantile), events)
    except ValueError as exc:  # a calendar without the models' events, for one
        fail(str(exc))
    spec = PolicySpec(
        min_replicas=0,
        max_replicas=max_replicas,
        capacity_per_replica=capacity,
        startup_delay=timedelta(0),
    )
    outlooks = []
    for uid, one in frame.groupby("unique_id", sort=True):
        start = pd.Timestamp(one["ds"].min()).tz_localize("UTC").to_pydatetime()
        hours = project(one, quantile, start, days)
        outlooks.append(SeriesOutlook(str(uid), start, hours, risks(hours, spec, start)))
    if as_json:
        typer.echo(json.dumps([_as_dict(o, zone) for o in outlooks], indent=2))
    else:
        for one in outlooks:
            typer.echo(_table(one, zone, days, capacity, max_replicas, quantile))
    if chart is not None:
        draw = _chart_png if chart.suffix == ".png" else _chart_html
        charted = _most_at_risk(outlooks, chart_series)
        if len(charted) < len(outlooks):
            typer.echo(
                f"the chart shows the {len(charted)} of {len(outlooks)} series with the most"
                " hours at risk (--chart-series to change)",
                err=True,
            )
        try:
            draw(charted, chart, zone, capacity * max_replicas, quantile)
        except OSError as exc:  # no such folder, no permission, a full disk
            fail(f"--out {chart}: {exc.strerror or exc}")
        # On stderr, as the other commands' notes: stdout may be --json for jq.
        typer.echo(f"chart written to {chart}", err=True)


def _most_at_risk(outlooks: list[SeriesOutlook], limit: int) -> list[SeriesOutlook]:
    """The ``limit`` series with the most hours at risk (then the highest peak), in that
    order: a chart of a whole fleet, one panel per series, took minutes to draw and was
    too tall to read, and the series worth a look are those at risk."""

    def rank(one: SeriesOutlook) -> tuple[int, float]:
        peak = one.hours["peak"].dropna()
        return -len(one.risks), -(float(peak.max()) if len(peak) else 0.0)

    return sorted(outlooks, key=rank)[:limit]


def _table(
    one: SeriesOutlook, tz: str, days: int, capacity: float, max_replicas: int, quantile: float
) -> str:
    first = pd.Timestamp(one.hours["ds"].iloc[0]).tz_localize("UTC").tz_convert(tz)
    head = (
        f"{one.unique_id}: {len(one.risks)} hour(s) at risk in the {days} days from"
        f" {first:%Y-%m-%d %H:%M} ({tz}); max {max_replicas} x {amount(capacity)} ="
        f" {amount(max_replicas * capacity)}"
    )
    if not one.risks:
        return head
    rows = pd.DataFrame(
        {
            "hour": [wall_clock(r.start, tz, "%a %Y-%m-%d %H:%M") for r in one.risks],
            "ahead": [ahead_label(r.ahead).removeprefix("in ") for r in one.risks],
            f"peak q{quantile:g}": [amount(r.peak) for r in one.risks],
            "capacity": [amount(r.capacity) for r in one.risks],
            "replicas short": [r.shortfall for r in one.risks],
        }
    )
    return f"{head}\n{rows.to_string(index=False)}\n"


def _as_dict(one: SeriesOutlook, tz: str) -> dict[str, object]:
    return {
        "unique_id": one.unique_id,
        "from": pd.Timestamp(one.start).tz_convert(tz).isoformat(),
        "at_risk": [
            {
                "hour": r.start.tz_convert(tz).isoformat(),
                "ahead_seconds": r.ahead.total_seconds(),
                "peak": r.peak,
                "capacity": r.capacity,
                "replicas_short": r.shortfall,
            }
            for r in one.risks
        ],
    }


def _stairs(one: SeriesOutlook, tz: str) -> tuple[pd.DatetimeIndex, pd.DataFrame]:
    """The hours as stairs on local wall-clock time (the x axis): each hour's ``expected``
    and ``peak`` from its start to its end. Steps through the hours' starts alone end at
    the last start, and the last hour of the outlook was not drawn."""
    starts = pd.DatetimeIndex(one.hours["ds"])
    edges = starts.append(starts[-1:] + pd.Timedelta(hours=1))
    x = edges.tz_localize("UTC").tz_convert(tz).tz_localize(None)
    values = one.hours[["expected", "peak"]]
    return x, pd.concat([values, values.iloc[-1:]], ignore_index=True)


def _chart_png(
    outlooks: list[SeriesOutlook], path: Path, tz: str, capacity: float, quantile: float
) -> None:
    """Per series: the band from the hourly median to the hourly peak, the capacity line,
    and each hour at risk shaded red.

    Series ids are URL paths and vhosts, drawn as text: matplotlib read a pair of ``$`` in
    one as mathematics (``/odata/$metadata/$batch`` came out a formula, and ``/a/$\\evil$``
    made the save raise).
    """
    with plt.rc_context({"text.parse_math": False}):
        fig, axes = plt.subplots(len(outlooks), 1, figsize=(12, 3.6 * len(outlooks)), squeeze=False)
        for ax, one in zip(axes[:, 0], outlooks, strict=True):
            x, values = _stairs(one, tz)
            ax.fill_between(
                x,
                values["expected"],
                values["peak"],
                step="post",
                alpha=0.35,
                label=f"forecast: hourly mean of the median to the highest q{quantile:g}",
            )
            ax.step(x, values["peak"], where="post", linewidth=0.8)
            ax.axhline(capacity, color="black", linestyle="--", linewidth=1, label="max × capacity")
            for n, (start, end) in enumerate(_risk_spans(one, tz)):
                ax.axvspan(
                    start, end, color="red", alpha=0.3, label="hour at risk" if n == 0 else None
                )
            ax.set_title(f"{one.unique_id}: {len(one.risks)} hour(s) at risk")
            ax.set_ylabel("load per interval")
            ax.set_xlabel(f"local time ({tz})")
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
            ax.legend(loc="upper left", fontsize="small")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def _chart_html(
    outlooks: list[SeriesOutlook], path: Path, tz: str, capacity: float, quantile: float
) -> None:
    """The same chart, interactive (hover for each hour's numbers); plotly.js is inlined so
    the file opens offline.

    Traces, shapes and notes are handed to the figure in one call each: plotly's
    ``add_vrect``, ``add_hline`` and ``add_trace`` copy everything added before, and a
    series with a week of hours at risk took minutes to draw, a few of them a quarter hour.
    """
    fig = make_subplots(
        rows=len(outlooks),
        cols=1,
        subplot_titles=[f"{o.unique_id}: {len(o.risks)} hour(s) at risk" for o in outlooks],
    )
    traces, rows, shapes, notes = [], [], [], []
    for row, one in enumerate(outlooks, start=1):
        x, values = _stairs(one, tz)
        first = row == 1
        traces += [
            go.Scatter(
                x=x,
                y=values["expected"],
                name="hourly mean of the median",
                line={"shape": "hv", "color": "#4c78a8"},
                showlegend=first,
            ),
            go.Scatter(
                x=x,
                y=values["peak"],
                name=f"highest q{quantile:g} in the hour",
                fill="tonexty",
                line={"shape": "hv", "color": "#4c78a8"},
                showlegend=first,
            ),
        ]
        rows += [row, row]
        xref, yref = ("x", "y") if first else (f"x{row}", f"y{row}")
        shapes.append(
            {
                "type": "line",
                "xref": f"{xref} domain",
                "x0": 0,
                "x1": 1,
                "yref": yref,
                "y0": capacity,
                "y1": capacity,
                "line": {"dash": "dash"},
            }
        )
        notes.append(
            {
                "text": "max × capacity",
                "xref": f"{xref} domain",
                "x": 1,
                "xanchor": "right",
                "yref": yref,
                "y": capacity,
                "yanchor": "bottom",
                "showarrow": False,
            }
        )
        for start, end in _risk_spans(one, tz):
            shapes.append(
                {
                    "type": "rect",
                    "xref": xref,
                    "x0": start,
                    "x1": end,
                    "yref": f"{yref} domain",
                    "y0": 0,
                    "y1": 1,
                    "fillcolor": "red",
                    "opacity": 0.25,
                    "line": {"width": 0},
                }
            )
    fig.add_traces(traces, rows=rows, cols=[1] * len(rows))
    fig.update_xaxes(title_text=f"local time ({tz})")
    fig.update_layout(
        height=380 * len(outlooks),
        title="Capacity outlook",
        shapes=shapes,
        annotations=[*fig.layout.annotations, *notes],
    )
    fig.write_html(path, include_plotlyjs=True, full_html=True)


def _risk_spans(one: SeriesOutlook, tz: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Runs of consecutive hours at risk as (start, end) on local wall-clock time: one band
    per surge, not one per hour."""
    spans: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for risk in one.risks:
        start = risk.start.tz_convert(tz).tz_localize(None)
        end = (risk.start + pd.Timedelta(hours=1)).tz_convert(tz).tz_localize(None)
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans
