"""The ``surgecast`` console command: the forecaster's commands and the controller's."""

from __future__ import annotations

import typer

from controller import (
    _cli_controller,
    _cli_decisions,
    _cli_demo,
    _cli_outlook,
    _cli_replay,
    _cli_review,
)
from forecaster import __version__
from forecaster.cli import app as forecaster_app

app = typer.Typer(
    name="surgecast",
    help="Predictive autoscaling for Kubernetes: forecast traffic peaks and scale before them.",
    no_args_is_help=True,
    add_completion=False,
)
app.registered_commands += forecaster_app.registered_commands
app.registered_commands += _cli_replay.app.registered_commands
app.registered_commands += _cli_demo.app.registered_commands
app.registered_commands += _cli_review.app.registered_commands
app.registered_commands += _cli_outlook.app.registered_commands
app.add_typer(_cli_controller.app, name="controller")
app.add_typer(_cli_decisions.app, name="decisions")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        is_eager=True,
        callback=_print_version,
    ),
) -> None:
    """Predictive autoscaling for Kubernetes: forecast traffic peaks and scale before them."""
