"""Helpers shared by the command modules."""

from __future__ import annotations

from typing import NoReturn

import pandas as pd
import typer


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear line on stderr and exit; used for every user-fixable error."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def steps(option: str, text: str, step: pd.Timedelta) -> int:
    """A horizon given as a number of intervals (``48``) or a duration (``2h``)."""
    if text.isdigit():
        return int(text)
    try:
        count = pd.Timedelta(text) / step
    except ValueError:
        fail(f"{option} {text!r} is neither a number of intervals nor a duration like 2h")
    if count < 1 or count != int(count):
        fail(f"{option} {text!r} is not a whole, positive number of {step} intervals")
    return int(count)
