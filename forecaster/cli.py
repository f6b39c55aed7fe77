"""Command-line entry points for the forecaster side: generate, ingest, train, forecast, backtest.

Each command is a thin shell over a library function so analysts get the same behaviour in a
notebook. Errors the user can fix are reported as one line on stderr with a non-zero exit.
"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


def fail(message: str, code: int = 2) -> None:
    """Print one clear line on stderr and exit; used for every user-fixable error."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
