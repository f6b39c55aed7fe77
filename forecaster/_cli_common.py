"""Helpers shared by the command modules."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear line on stderr and exit; used for every user-fixable error."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
