"""``surgecast review``: the decision log as a web page, written to a file or served."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

import typer

from controller._cli_decisions import (
    DB_ENV,
    DB_HELP,
    DEFAULT_DB,
    TIME_EXAMPLE,
    _moment,
    _open,
    _until,
)
from controller.http import RouteServer
from controller.review import review_route
from controller.runner import wait_for_termination
from controller.spec import parse_duration
from forecaster._cli_common import fail, zone_option

app = typer.Typer()


@app.command("review")
def review_command(
    scaler: str | None = typer.Argument(
        None, metavar="NS/NAME", help="One PredictiveScaler (default: every scaler in the log)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the page to this file."),
    serve: bool = typer.Option(
        False, "--serve", help="Serve the page until Ctrl-C; every load reads the log afresh."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to serve on (default: this machine only)."
    ),
    port: int = typer.Option(8081, "--port", help="Port to serve on (0: any free port)."),
    since: str = typer.Option(
        "24h", "--since", help=f"A duration back from now (24h) or a time ({TIME_EXAMPLE})."
    ),
    until: str | None = typer.Option(
        None, "--until", help="A duration back from now or a time (default: now)."
    ),
    tz: str | None = typer.Option(
        None, "--tz", help="Time zone of the times shown and typed (default: UTC)."
    ),
    db: str = typer.Option(DEFAULT_DB, "--db", envvar=DB_ENV, help=DB_HELP),
) -> None:
    """Chart each scaler's load, forecast, capacity and replicas, every decision explained.

    One self-contained HTML page, nothing fetched, with a filterable decision table.
    """
    if out is None and not serve:
        fail("give -o PAGE.html to write the page, --serve to serve it, or both")
    if serve and not 0 <= port <= 65535:
        fail(f"--port {port} is not from 0 (any free port) to 65535")
    # Like `surgecast generate`, no directory is made: a mistyped path then shows at once,
    # before the log is read, rather than leaving a page somewhere unexpected.
    if out is not None and not out.parent.is_dir():
        fail(f"cannot write {out}: no directory {out.parent}")
    zone = zone_option(tz)
    now = datetime.now(UTC)  # the command's one clock read, for checking --since/--until
    start = _since(since, zone, now)
    end = _until(until, _moment("--since", since, zone, now), since, zone, now)
    log = _open(db, scaler)
    # The file and the server share the route, so they show the very same page.
    route = review_route(
        log, clock=lambda: datetime.now(UTC), since=start, until=end, scaler=scaler, tz=tz
    )
    try:
        if out is not None:
            try:
                out.write_bytes(route("/ui")[2])
            except OSError as exc:  # a directory, no permission, a full disk
                fail(f"cannot write {out}: {exc.strerror}")
            typer.echo(f"wrote {out}")
        if serve:
            server = RouteServer({"/": route, "/ui": route}, host=host, port=port).start()
            typer.echo(f"serving http://{host}:{server.port}/ui (Ctrl-C to stop)")
            wait_for_termination()
            server.stop()
    finally:
        log.close()


def _since(text: str, zone: tzinfo, now: datetime) -> timedelta | datetime:
    """A duration stays relative, so a served page's window moves with the clock.

    It is counted back from ``now`` once here, for the errors of :func:`_moment`: a
    duration reaching before the year 1 would otherwise fail at every request.
    """
    start = _moment("--since", text, zone, now)
    try:
        return parse_duration(text)
    except ValueError:
        return start
